"""The compiled CartPole rollout (:mod:`pglab.fastrollout`) against the Python env loop.

``python -m pglab bench --only rollout`` (or ``python -m pglab.benchmarks.rollout``): each
row trains the same config and seed with ``rollout="python"`` and ``rollout="auto"``,
alternating in this one process (so both sides meet the same machine load), end to end
(construction included; the kernels are compiled or loaded by :func:`pglab.algos.warm_up`
first), and reports wall seconds, SPS and the process's CPU seconds. Rows: PPO at PureJaxRL's
CartPole config (4 envs x 128 steps, 500k steps) with and without ``grad_diagnostics``, the
zoo PPO and A2C presets (100k) and the four REINFORCE rungs of the ladder (100k). Also the
rollout alone: microseconds per env step of ``collect`` at 1, 4, 8 and 64 envs.
``--quick``: budgets / 5, rollout alone at 4 envs only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from pglab.algos import make_config, make_trainer, warm_up
from pglab.presets import get_preset, ladder

Log = Callable[[str], None]

PUREJAXRL_PPO = {
    "env_id": "CartPole-v1",
    "num_envs": 4,
    "n_steps": 128,
    "batch_size": 128,
    "n_epochs": 4,
    "learning_rate": 2.5e-4,
    "lr_schedule": "linear",
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_coef": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "total_steps": 500_000,
}


def _cases(scale: float) -> list[tuple[str, str, dict[str, Any]]]:
    pj = {**PUREJAXRL_PPO, "total_steps": int(PUREJAXRL_PPO["total_steps"] * scale)}
    cases = [
        ("PPO, PureJaxRL config", "ppo", pj),
        ("PPO, PureJaxRL config, no diagnostics", "ppo", {**pj, "grad_diagnostics": False}),
    ]
    for name in ("ppo-cartpole-zoo", "a2c-cartpole-zoo"):
        preset = get_preset(name)
        cases.append((name, preset.algo, {**preset.settings, "total_steps": int(1e5 * scale)}))
    cases += ladder("CartPole-v1", int(1e5 * scale))[:4]  # the REINFORCE rungs
    return cases


def _one(algo: str, settings: dict[str, Any], rollout: str) -> dict[str, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    tr = make_trainer(algo, make_config(algo, {**settings, "rollout": rollout}), seed=0)
    while not tr.done:
        tr.update()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "sps": round(tr.env_steps / wall)}
    out["final_return"] = round(tr.final_return(), 1)
    tr.close()
    return out


def _collect_us(num_envs: int, n_steps: int, rollout: str, env_steps: int) -> float:
    tr = make_trainer("a2c", {"num_envs": num_envs, "n_steps": n_steps, "rollout": rollout})
    tr.collect(n_steps)
    reps = max(1, env_steps // (num_envs * n_steps))
    t0 = time.perf_counter()
    for _ in range(reps):
        tr.collect(n_steps)
    dt = time.perf_counter() - t0
    tr.close()
    return dt / (reps * num_envs * n_steps) * 1e6


def run(quick: bool, log: Log) -> dict[str, Any]:
    torch.set_num_threads(1)
    warm_up()
    out: dict[str, Any] = {"training": {}, "collect_us_per_env_step": {}}
    for label, algo, settings in _cases(0.2 if quick else 1.0):
        row = {r: _one(algo, settings, r) for r in ("python", "auto")}
        row["speedup_wall"] = round(row["python"]["wall_s"] / row["auto"]["wall_s"], 2)
        row["speedup_cpu"] = round(row["python"]["cpu_s"] / row["auto"]["cpu_s"], 2)
        out["training"][label] = row
        py, au = row["python"], row["auto"]
        log(
            f"  {label:40s} python {py['wall_s']:6.2f} s ({py['sps']:7.0f} sps) | compiled "
            f"{au['wall_s']:6.2f} s ({au['sps']:7.0f} sps) | {row['speedup_wall']:.2f}x wall, "
            f"{row['speedup_cpu']:.2f}x CPU"
        )
    sizes = [(4, 128)] if quick else [(1, 2048), (4, 128), (8, 32), (64, 32)]
    for n, t in sizes:
        us = {r: round(_collect_us(n, t, r, 20_000), 2) for r in ("python", "auto")}
        out["collect_us_per_env_step"][f"{n}x{t}"] = us
        log(
            f"  collect {n:2d} envs x {t:4d} steps: {us['python']:6.2f} -> {us['auto']:5.2f} us/env step"
        )
    return out


if __name__ == "__main__":  # python -m pglab.benchmarks.rollout [--quick]
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv, lambda s: print(s, flush=True))))
