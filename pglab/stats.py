"""Statistics across seeds: mean and IQM with percentile-bootstrap 95% intervals (rliable's rules).

Pure numpy, no Streamlit and no scipy. The conventions are those of rliable (Agarwal et al.
2021, "Deep RL at the Edge of the Statistical Precipice", https://arxiv.org/abs/2108.13264,
https://github.com/google-research/rliable):

- IQM, the interquartile mean: sort the n scores, drop ``k = floor(0.25 n)`` from each end,
  average the rest (``scipy.stats.trim_mean(x, 0.25)``, which is rliable's
  ``metrics.aggregate_iqm``). For n < 4 nothing is dropped and the IQM is the mean.
- Interval: percentile bootstrap. Draw ``reps`` resamples of the runs with replacement,
  compute the statistic on each, take the 2.5% and 97.5% quantiles. *Stratified* for a
  score matrix ``[runs, tasks]``: runs are resampled within each task (column) separately
  (rliable's ``StratifiedBootstrap``); with one task it is the plain bootstrap.
- Fewer than two finite values: no interval (NaN), never a band drawn from one seed.
- ``bounds=(lo, hi)``: a metric's possible range (CartPole returns lie in [0, 500]); the
  interval is clipped to it.

The ``rliable`` package itself was tried first: it installs with our pins, but its
``library`` module fails to import (``arch`` 7.2 calls a pandas 3 helper with the old
signature), and it would add scipy, statsmodels, matplotlib and seaborn to the lab's runtime.
:mod:`tests.test_stats` checks these functions against rliable's published formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
REPS = 2000  # bootstrap resamples: the 2.5% quantile of 2000 draws moves by ~1% of the CI
STATS = ("mean", "iqm")


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean along ``axis``: drop ``floor(n/4)`` values at each end, average the rest.

    Same as ``scipy.stats.trim_mean(x, 0.25, axis)`` (rliable's ``aggregate_iqm``). No NaN
    handling: pass finite values only.
    """
    a = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = a.shape[axis]
    if n == 0:
        return math.nan
    k = int(0.25 * n)
    out = np.take(a, np.arange(k, n - k), axis=axis).mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def _stat_fn(stat: str) -> Callable[[np.ndarray], np.ndarray]:
    """``values [..., n] -> [...]`` for a statistic name."""
    if stat == "mean":
        return lambda v: np.mean(v, axis=-1)
    if stat == "iqm":
        return lambda v: iqm(v, axis=-1)
    raise ValueError(f"stat: {stat!r} is not allowed (one of {', '.join(STATS)})")


@dataclass(frozen=True)
class Estimate:
    """A point estimate across runs with its bootstrap interval (NaN when n < 2)."""

    stat: str
    point: float
    lo: float
    hi: float
    n: int

    def to_json(self) -> dict[str, float | int | str | None]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {"stat": self.stat, "point": num(self.point), "lo": num(self.lo),
                "hi": num(self.hi), "n": self.n}  # fmt: skip


def clip(
    lo: np.ndarray | float, hi: np.ndarray | float, bounds: tuple[float, float] | None
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """``(lo, hi)`` clipped to ``bounds`` (``None`` or an infinite side: no clipping)."""
    if bounds is None:
        return lo, hi
    b_lo, b_hi = bounds
    return np.clip(lo, b_lo, b_hi), np.clip(hi, b_lo, b_hi)


def _check(reps: int, confidence: float) -> None:
    if not isinstance(reps, int) or reps < 10:
        raise ValueError(f"reps: {reps!r} is out of range (an integer >= 10)")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence: {confidence!r} is out of range (in [0.5, 1))")


def bootstrap_ci(
    values: np.ndarray,
    stat: str = "mean",
    *,
    reps: int = REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
) -> Estimate:
    """Point estimate and percentile-bootstrap interval of ``stat`` over the runs in ``values``.

    ``values [n]``; NaN entries are dropped (a run without that number). ``seed`` fixes the
    resamples so a table reads the same on every rerun.
    """
    return stratified_bootstrap_ci(
        np.asarray(values, dtype=np.float64).reshape(-1, 1),
        stat,
        reps=reps,
        confidence=confidence,
        seed=seed,
        bounds=bounds,
    )


def stratified_bootstrap_ci(
    scores: np.ndarray,
    stat: str = "iqm",
    *,
    reps: int = REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
) -> Estimate:
    """``stat`` of all scores of ``scores [runs, tasks]`` with a stratified-bootstrap interval.

    Each resample draws ``runs`` rows with replacement *within each task column*
    independently, then applies ``stat`` to the whole resampled matrix (rliable's
    ``get_interval_estimates`` with ``StratifiedBootstrap`` and the ``percentile`` interval).
    Rows with a NaN are dropped; ``n`` is the number of runs kept.
    """
    _check(reps, confidence)
    fn = _stat_fn(stat)
    m = np.asarray(scores, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"scores: expected a [runs, tasks] matrix, got shape {m.shape}")
    m = m[np.all(np.isfinite(m), axis=1)]
    n, tasks = m.shape
    if n == 0:
        return Estimate(stat, math.nan, math.nan, math.nan, 0)
    point = float(fn(m.reshape(-1)))
    if n < 2:
        return Estimate(stat, point, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n, tasks))
    samples = m[idx, np.arange(tasks)]  # [reps, n, tasks]: column j resampled from column j
    boot = fn(samples.reshape(reps, n * tasks))
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    lo, hi = clip(float(lo), float(hi), bounds)
    return Estimate(stat, point, float(lo), float(hi), n)


def curve_ci(
    values: np.ndarray,
    stat: str = "mean",
    *,
    reps: int = 1000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per grid point of ``values [G, runs]``: (point, lo, hi, n) of ``stat`` across runs.

    NaN = the run has no data there; each point uses the runs that do. The same run
    resamples serve every point with the same set of runs (one draw per pattern of present
    runs, so a curve is bootstrapped in a few vectorised passes, not G loops). ``lo``/``hi``
    are NaN where fewer than two runs have data; ``point`` is NaN where none has.
    """
    _check(reps, confidence)
    fn = _stat_fn(stat)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"values: expected a [grid, runs] matrix, got shape {v.shape}")
    g = v.shape[0]
    point = np.full(g, np.nan)
    lo = np.full(g, np.nan)
    hi = np.full(g, np.nan)
    present = np.isfinite(v)
    n = present.sum(axis=1)
    tail = (1.0 - confidence) / 2.0
    rng = np.random.default_rng(seed)
    patterns, which = np.unique(present, axis=0, return_inverse=True)
    which = np.asarray(which).reshape(-1)
    for p, cols in enumerate(patterns):
        rows = np.nonzero(which == p)[0]
        k = int(cols.sum())
        if k == 0:
            continue
        sub = v[np.ix_(rows, np.nonzero(cols)[0])]  # [rows, k]
        point[rows] = fn(sub)
        if k < 2:
            continue
        idx = rng.integers(0, k, size=(reps, k))
        boot = fn(sub[:, idx])  # [rows, reps]
        q = np.quantile(boot, [tail, 1.0 - tail], axis=1)
        lo[rows], hi[rows] = q[0], q[1]
    lo, hi = clip(lo, hi, bounds)
    return point, lo, hi, n
