"""A trial's objective: one score per run, then the IQM over seeds with a bootstrap CI.

Per run, from its metric rows (``x`` = ``time/env_steps``, ``y`` = ``rollout/return_last20``):

- ``final_iqm``: the last ``y`` (the mean return of the last 20 episodes at the end).
- ``auc``: the mean return over the budget, ``(1/B) * integral_0^B y(x) dx`` with ``y`` linear
  between reported points, held at its first value before the first point and at its last
  value after the last point (trapezoids). Rewards learning early as well as well.
- ``steps_to_threshold``: the first ``x`` with ``y >= threshold``; ``B`` (the budget) if never,
  i.e. right-censored at the budget, so an unsolved run scores the worst it could.

Across the seeds of a trial: the interquartile mean (rliable's IQM, ``scipy.stats.trim_mean(x,
0.25)``: drop ``floor(n/4)`` scores at each end, average the rest; the plain mean for n < 4) and
a percentile bootstrap 95% CI of that IQM over seeds (seeds resampled with replacement;
``None`` when fewer than two seeds have a score). Only runs that finished are scored, so an
interrupted seed never pulls a trial's score with a curve cut short; ``n`` says how many did.

Pruning uses the same score on each run's curve cut at ``x <= step`` (the budget taken as
``step`` for ``auc`` and the censoring), aggregated over the trial's seeds first.

:func:`iqm` and :func:`bootstrap_ci` are :mod:`pglab.stats`'s (the Compare page's statistics),
in the shape the sweep's tables want.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pglab import stats

X_KEY, Y_KEY = "time/env_steps", "rollout/return_last20"
N_BOOT = 2000


def curve(rows: Sequence[dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: env steps and ``return_last20`` of the updates that report a finite return."""
    xs, ys = [], []
    for row in rows:
        x, y = row.get(X_KEY), row.get(Y_KEY)
        if x is None or y is None or not math.isfinite(y):
            continue
        xs.append(float(x))
        ys.append(float(y))
    return np.asarray(xs), np.asarray(ys)


def run_score(
    x: np.ndarray,
    y: np.ndarray,
    objective: str,
    budget: float,
    threshold: float | None = None,
) -> float | None:
    """One run's score (see the module docstring); None when the run reported no return."""
    if objective == "steps_to_threshold":
        assert threshold is not None
        hit = np.nonzero(y >= threshold)[0]
        return float(x[hit[0]]) if hit.size else float(budget)
    if y.size == 0:
        return None
    if objective == "final_iqm":
        return float(y[-1])
    if objective == "auc":
        inside = x <= budget
        xs = np.concatenate([[0.0], x[inside], [budget]])
        ys = np.concatenate([[y[0]], y[inside], [y[inside][-1] if inside.any() else y[0]]])
        area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
        return area / budget if budget > 0 else float(y[0])
    raise ValueError(f"objective: {objective!r} is not allowed")


def iqm(scores: Sequence[float]) -> float:
    """Interquartile mean of the seeds' scores (:func:`pglab.stats.iqm`)."""
    if len(scores) == 0:
        raise ValueError("iqm: no scores")
    return float(stats.iqm(np.asarray(scores, dtype=float)))


def bootstrap_ci(
    scores: Sequence[float], level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the IQM over the seeds (:func:`pglab.stats.bootstrap_ci`);
    None for fewer than 2 scores."""
    if len(scores) < 2:
        return None
    est = stats.bootstrap_ci(
        np.asarray(scores, dtype=float), "iqm", reps=n_boot, confidence=level, seed=seed
    )
    return est.lo, est.hi


@dataclass(frozen=True)
class Score:
    """A trial's objective: ``value`` (IQM over seeds), its CI and the seeds scored."""

    value: float | None
    ci: tuple[float, float] | None
    n: int
    per_run: dict[str, float]

    def to_json(self) -> dict[str, object]:
        return {
            "value": self.value,
            "ci_low": self.ci[0] if self.ci else None,
            "ci_high": self.ci[1] if self.ci else None,
            "n": self.n,
            "per_run": self.per_run,
        }


def trial_score(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    objective: str,
    budget: float,
    threshold: float | None = None,
) -> Score:
    """IQM and bootstrap CI over the runs in ``curves`` (run id -> ``(x, y)``)."""
    per_run = {}
    for run_id, (x, y) in curves.items():
        s = run_score(x, y, objective, budget, threshold)
        if s is not None:
            per_run[run_id] = s
    scores = list(per_run.values())
    if not scores:
        return Score(None, None, 0, {})
    ci = bootstrap_ci(scores)
    if ci is not None and objective == "steps_to_threshold":
        ci = (max(0.0, ci[0]), min(float(budget), ci[1]))  # steps live in [0, budget]
    return Score(iqm(scores), ci, len(scores), per_run)


def intermediate(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    objective: str,
    step: float,
    threshold: float | None = None,
) -> float | None:
    """The trial's objective on every seed's curve cut at ``x <= step`` (for the pruner)."""
    scores = []
    for x, y in curves:
        keep = x <= step
        s = run_score(x[keep], y[keep], objective, step, threshold)
        if s is not None:
            scores.append(s)
    return iqm(scores) if scores else None
