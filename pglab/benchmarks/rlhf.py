"""RLHF Lab figures: wall time and samples for each method to reach KL(pi_theta || pi*) <=
0.05 nats (mean over prompts) with the gold reward (beta = 1, default world and budget;
target: each under 2 minutes on 2 cores), and the gold win-rate table of every method at the
default settings (a 64-pair reward model, beta = 0.05) with seeds and bootstrap CIs.

Each run is one thread (``torch.set_num_threads(1)``), run one after another; on a shared
machine the wall times move with the load, the sample counts do not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pglab.rlhf.config import METHODS, RLHFConfig
from pglab.rlhf.report import win_rate_table
from pglab.rlhf.trainer import CRITERION_KL, RLHFTrainer

CRITERION_RUNS: dict[str, dict[str, Any]] = {
    "reinforce": {"method": "reinforce"},
    "rloo": {"method": "rloo"},
    "ppo": {"method": "ppo"},
    "grpo (k1, no std)": {"method": "grpo", "kl_estimator": "k1", "scale_rewards": "none"},
    "grpo (TRL: k3, group std)": {"method": "grpo"},
}
TARGET_S = 120.0


def _to_criterion(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    t = RLHFTrainer(RLHFConfig.from_dict({"reward": "gold", "beta": 1.0, **settings}), seed=seed)
    while not t.done and t.samples_to_criterion is None:
        t.update()
    return {
        "seed": seed,
        "samples": t.samples_to_criterion,
        "wall_s": t.wall_to_criterion,
        "final_kl_to_optimum": t.last["exact/kl_to_optimum"],
        "budget": t.config.total_steps,
    }


def _final(method: str, seed: int) -> dict[str, Any]:
    t = RLHFTrainer(RLHFConfig(method=method), seed=seed)
    peak = t.initial["exact/gold_reward"]
    while not t.done:
        peak = max(peak, t.update()["exact/gold_reward"])
    m = t.exact_metrics()
    return {
        "method": method,
        "seed": seed,
        "win_rate": m["exact/win_rate"],
        "gold_reward": m["exact/gold_reward"],
        "peak_gold_reward": peak,
        "proxy_reward": m["exact/proxy_reward"],
        "kl_to_sft": m["exact/kl_to_sft"],
        "kl_to_optimum": m["exact/kl_to_optimum"],
        "wall_s": t.wall_s,
    }


def run(quick: bool, log: Callable[[str], None]) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n_crit, n_win = (1, 2) if quick else (3, 5)
        log(
            f"time and samples to KL(pi||pi*) <= {CRITERION_KL} (reward=gold, beta=1), {n_crit} seed(s)"
        )
        log(
            f"{'method':<28}{'samples (median)':>18}{'wall s (median)':>17}{'max wall s':>12}{'reached':>9}"
        )
        crit: dict[str, Any] = {}
        for name, settings in CRITERION_RUNS.items():
            rs = [_to_criterion(settings, s) for s in range(n_crit)]
            ok = [r for r in rs if r["samples"] is not None]
            med_n = float(np.median([r["samples"] for r in ok])) if ok else None
            med_t = float(np.median([r["wall_s"] for r in ok])) if ok else None
            max_t = max((r["wall_s"] for r in ok), default=None)
            crit[name] = {"runs": rs, "median_samples": med_n, "median_wall_s": med_t,
                          "max_wall_s": max_t, "reached": f"{len(ok)}/{len(rs)}",
                          "under_target": bool(ok) and len(ok) == len(rs) and max_t < TARGET_S}  # fmt: skip
            log(
                f"{name:<28}{'-' if med_n is None else f'{med_n:.0f}':>18}"
                f"{'-' if med_t is None else f'{med_t:.1f}':>17}"
                f"{'-' if max_t is None else f'{max_t:.1f}':>12}{f'{len(ok)}/{len(rs)}':>9}"
            )
        log(
            f"gold win rate vs pi_SFT at the defaults (64 pairs, beta=0.05), {n_win} seeds, 95% bootstrap CI"
        )
        runs = [_final(m, s) for m in METHODS for s in range(n_win)]
        table = win_rate_table(runs)
        log(
            f"{'method':<12}{'win rate':>10}{'95% CI':>18}{'gold':>8}{'peak gold':>11}{'KL to SFT':>11}  n  seeds"
        )
        for row in table:
            if row["n"] is None:
                log(f"{row['method']:<12}{row['win_rate']:>10.3f}")
                continue
            peak = np.mean([r["peak_gold_reward"] for r in runs if r["method"] == row["method"]])
            row["peak_gold_reward"] = float(peak)
            ci = "-" if np.isnan(row["ci_low"]) else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
            log(
                f"{row['method']:<12}{row['win_rate']:>10.3f}{ci:>18}{row['gold_reward']:>8.2f}"
                f"{peak:>11.2f}{row['kl_to_sft']:>11.2f}  {row['n']}  {row['seeds']}"
            )
        return {"criterion": crit, "win_rate_table": table, "runs": runs, "quick": quick}
    finally:
        torch.set_num_threads(threads)
