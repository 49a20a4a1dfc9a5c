"""Tables the page and the bench share: the win-rate table across methods and seeds, and
sample completions with their probabilities under pi_SFT, pi_theta and pi*."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pglab.rlhf.world import World


def bootstrap_ci(
    values: Iterable[float], *, n_boot: int = 2000, seed: int = 0, low: float = -np.inf,
    high: float = np.inf,
) -> tuple[float, float, float]:  # fmt: skip
    """Mean and percentile-bootstrap 95% CI over seeds, clipped to ``[low, high]``; a single
    value has no interval (NaN bounds)."""
    x = np.asarray(list(values), dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(x.mean()), float(np.clip(lo, low, high)), float(np.clip(hi, low, high))


def win_rate_table(runs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per method (first-seen order), SFT first: gold win rate against pi_SFT with its
    bootstrap CI over seeds, and the means of gold reward, KL to pi_SFT and KL to pi*.

    Each run is a mapping with ``method``, ``seed``, ``win_rate``, ``gold_reward``,
    ``kl_to_sft``, ``kl_to_optimum`` (a method/seed seen twice counts once: the last)."""
    by: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in runs:
        by.setdefault(str(r["method"]), {})[int(r["seed"])] = r
    rows: list[dict[str, Any]] = [
        {"method": "SFT", "n": None, "win_rate": 0.5, "ci_low": None, "ci_high": None}
    ]
    for method, seeds in by.items():
        rs = list(seeds.values())
        mean, lo, hi = bootstrap_ci([r["win_rate"] for r in rs], low=0.0, high=1.0)
        rows.append(
            {
                "method": method,
                "n": len(rs),
                "seeds": sorted(seeds),
                "win_rate": mean,
                "ci_low": lo,
                "ci_high": hi,
                "gold_reward": float(np.mean([r["gold_reward"] for r in rs])),
                "kl_to_sft": float(np.mean([r["kl_to_sft"] for r in rs])),
                "kl_to_optimum": float(np.mean([r["kl_to_optimum"] for r in rs])),
            }
        )
    return rows


def completions(
    world: World, prompt: int, logps: Mapping[str, Tensor], gold: Tensor, proxy: Tensor,
    by: str, n: int = 8,
) -> list[dict[str, Any]]:  # fmt: skip
    """The ``n`` most likely responses of ``prompt`` under ``logps[by]``, each with its
    probability under every distribution in ``logps`` (``[P, N]`` log-probs), r* and r."""
    order = torch.argsort(logps[by][prompt], descending=True)[:n]
    out = []
    for i in order.tolist():
        row: dict[str, Any] = {"response": world.decode(world.seqs[i])}
        for name, lp in logps.items():
            row[name] = float(lp[prompt, i].exp())
        row["gold r*"] = float(gold[prompt, i])
        row["reward r"] = float(proxy[prompt, i])
        out.append(row)
    return out
