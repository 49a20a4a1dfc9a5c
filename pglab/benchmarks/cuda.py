"""CUDA benchmark: the ``cuda`` device path of every algorithm, checked against the CPU path.

    python -m pglab bench --only cuda            # on a machine with an NVIDIA GPU (< 8 min)

What it does, in one process, and prints as one JSON summary (the last line of its log):

1. ``agreement``: each algorithm (PPO, A2C, TRPO, REINFORCE with a value baseline) runs a few
   updates on CartPole on ``cuda`` and on ``cpu`` for the same seeds. The two devices draw
   different random numbers (CUDA's generator is not the CPU's), so the runs are not the same
   numbers; what must agree is the distribution. Per metric, over the seeds: the difference of
   the means must lie within ``TOLERANCE_SE`` standard errors of that difference plus an
   absolute floor of ``ABS_FLOOR`` (``|mean_cuda - mean_cpu| <= 4 * se + 1e-3``). The first
   update also runs from the *same* parameters and batch: a CPU trainer's rollout is copied
   into a CUDA trainer and both take one update step on it; the gradient norms must agree to
   ``rtol 1e-3`` (float32 on two devices: the same maths, different summation orders).
2. ``ppo_scaling``: PPO (zoo CartPole settings, 4 epochs of 4 minibatches) at 8, 64 and 1024
   envs on cuda and on cpu: SPS over a few timed updates after one warm-up update, and the
   cuda / cpu ratio.

Without CUDA (``torch.cuda.is_available()`` false) it prints a JSON summary that says it was
skipped and why, and returns normally (exit 0). A deadline (``BUDGET_S``) keeps it under
8 minutes: a part that would start after it is reported as skipped for time.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from pglab.algos import make_trainer
from pglab.presets import get_preset

Log = Callable[[str], None]
SEEDS = (0, 1, 2, 3)
TOLERANCE_SE = 4.0
ABS_FLOOR = 1e-3
BUDGET_S = 420.0  # 7 minutes; the parts check it before they start
ENVS = (8, 64, 1024)

# algorithm -> (settings, updates per run, metrics compared)
CHECKS: dict[str, tuple[dict[str, Any], int, tuple[str, ...]]] = {
    "ppo": (
        {**get_preset("ppo-cartpole-zoo").to_settings(), "total_steps": 100_000},
        8,
        ("loss/policy", "loss/value", "policy/entropy", "diag/approx_kl", "diag/grad_norm"),
    ),
    "a2c": (
        {**get_preset("a2c-cartpole-zoo").to_settings(), "total_steps": 100_000},
        40,
        ("loss/value", "policy/entropy", "diag/grad_norm", "value/mean"),
    ),
    "trpo": (
        {**get_preset("trpo-cartpole-zoo").to_settings(), "total_steps": 100_000},
        4,
        ("loss/value", "policy/entropy", "diag/approx_kl", "trpo/line_search_ok"),
    ),
    "reinforce": (
        {"env_id": "CartPole-v1", "baseline": "value", "batch_size": 2000, "vf_iters": 20},
        4,
        ("policy/entropy", "diag/grad_norm", "loss/value", "diag/approx_kl"),
    ),
}


def _last_metrics(algo: str, settings: dict[str, Any], updates: int, seed: int, device: str):
    tr = make_trainer(algo, settings, seed=seed, device=device)
    rows = [tr.update() for _ in range(updates)]
    tr.close()
    return rows[-1]


def _agreement(log: Log, deadline: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for algo, (settings, updates, names) in CHECKS.items():
        if time.perf_counter() > deadline:
            out[algo] = {"skipped": "time budget"}
            continue
        t0 = time.perf_counter()
        rows = {
            dev: [_last_metrics(algo, settings, updates, s, dev) for s in SEEDS]
            for dev in ("cpu", "cuda")
        }
        metrics: dict[str, Any] = {}
        for name in names:
            a = [r[name] for r in rows["cpu"] if name in r]
            b = [r[name] for r in rows["cuda"] if name in r]
            if len(a) < 2 or len(b) < 2:
                continue
            diff = statistics.fmean(b) - statistics.fmean(a)
            se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
            ok = abs(diff) <= TOLERANCE_SE * se + ABS_FLOOR
            metrics[name] = {
                "cpu_mean": statistics.fmean(a),
                "cuda_mean": statistics.fmean(b),
                "diff": diff,
                "se": se,
                "ok": ok,
            }
        out[algo] = {
            "updates": updates,
            "seeds": list(SEEDS),
            "metrics": metrics,
            "ok": all(m["ok"] for m in metrics.values()),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        log(f"  {algo}: {'agrees' if out[algo]['ok'] else 'DIFFERS'} ({out[algo]['wall_s']} s)")
    return out


def _same_batch_ppo(log: Log) -> dict[str, Any]:
    """One PPO update from the same parameters and rollout on both devices."""
    settings = {**CHECKS["ppo"][0], "n_epochs": 1, "grad_diagnostics": False}
    cpu = make_trainer("ppo", settings, seed=0, device="cpu")
    gpu = make_trainer("ppo", settings, seed=0, device="cuda")
    gpu.policy.load_state_dict(cpu.policy.state_dict())
    assert gpu.value is not None and cpu.value is not None
    gpu.value.load_state_dict(cpu.value.state_dict())
    batch = cpu.collect(settings["n_steps"])
    cpu.collect = lambda n: batch  # type: ignore[method-assign]
    gpu.collect = lambda n: type(batch)(  # type: ignore[method-assign]
        **{k: getattr(batch, k).to("cuda") for k in batch.__dataclass_fields__}
    )
    m_cpu, m_gpu = cpu.update(), gpu.update()
    cpu.close()
    gpu.close()
    out = {}
    for name in ("loss/policy", "loss/value", "diag/grad_norm"):
        ok = math.isclose(m_cpu[name], m_gpu[name], rel_tol=1e-3, abs_tol=1e-6)
        out[name] = {"cpu": m_cpu[name], "cuda": m_gpu[name], "ok": ok}
    out_ok = all(v["ok"] for v in out.values())
    log(f"  PPO, same parameters and batch: {'agrees' if out_ok else 'DIFFERS'}")
    return {"metrics": out, "ok": out_ok}


def _ppo_scaling(log: Log, deadline: float, timed_updates: int = 3) -> dict[str, Any]:
    base = get_preset("ppo-cartpole-zoo").to_settings()
    out: dict[str, Any] = {}
    for n in ENVS:
        settings = {
            **base,
            "num_envs": n,
            "n_steps": 32,
            "batch_size": n * 32 // 4,
            "n_epochs": 4,
            "total_steps": 10_000_000,
            "grad_diagnostics": False,
        }
        row: dict[str, Any] = {}
        for dev in ("cpu", "cuda"):
            if time.perf_counter() > deadline:
                row[dev] = None
                continue
            tr = make_trainer("ppo", settings, seed=0, device=dev)
            tr.update()  # warm-up: kernels, allocator, CUDA context
            if dev == "cuda":
                torch.cuda.synchronize()
            t0, s0 = time.perf_counter(), tr.env_steps
            for _ in range(timed_updates):
                tr.update()
            if dev == "cuda":
                torch.cuda.synchronize()
            row[dev] = round((tr.env_steps - s0) / (time.perf_counter() - t0), 1)
            tr.close()
        if row.get("cpu") and row.get("cuda"):
            row["cuda_over_cpu"] = round(row["cuda"] / row["cpu"], 2)
        out[str(n)] = row
        log(f"  PPO at {n} envs: cpu {row['cpu']} sps, cuda {row['cuda']} sps")
    return out


def run(quick: bool, log: Log) -> dict[str, Any]:
    if not torch.cuda.is_available():
        summary: dict[str, Any] = {
            "skipped": True,
            "reason": "no CUDA GPU here (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda})",
        }
        log(json.dumps(summary))
        return summary
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    deadline = t0 + (BUDGET_S / 2 if quick else BUDGET_S)
    summary = {
        "skipped": False,
        "device": torch.cuda.get_device_name(0),
        "tolerance": f"|mean_cuda - mean_cpu| <= {TOLERANCE_SE:g} se + {ABS_FLOOR:g} over "
        f"{len(SEEDS)} seeds; same-batch PPO update rtol 1e-3",
        "same_batch_ppo": _same_batch_ppo(log),
        "agreement": _agreement(log, deadline),
        "ppo_scaling": _ppo_scaling(log, deadline + 60.0),
    }
    summary["ok"] = summary["same_batch_ppo"]["ok"] and all(
        v.get("ok", True) for v in summary["agreement"].values()
    )
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    log(json.dumps(summary))
    return summary
