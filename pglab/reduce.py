"""Curves for the screen: TensorBoard's debiased EMA and a min/max envelope, Streamlit-free.

The live charts draw what a chart a few hundred pixels wide can show, whatever the length of
the run: each trace is reduced on the server to at most ``max_points`` points, so a 3M-step
run costs the browser what a 30k-step run does. The full-resolution rows stay in the run
store and in exports; only the drawing is reduced.

- :func:`ema`: the smoothing of TensorBoard's scalar dashboard (and W&B's "exponential
  moving average"), with its debiasing, so the first points are not dragged towards 0.
- :func:`envelope`: per bucket of consecutive points, the points holding the bucket's
  minimum and maximum, in order. Every spike and every dip survives; the line between them
  is the same band the full data draws at that width (M4 / min-max decimation, Jugel et al.
  2014, https://doi.org/10.14778/2732951.2732953).
- :func:`thin`: evenly spaced points (plus the last) for a line that is already smooth.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["ema", "envelope", "reduce_trace", "thin"]


@njit(cache=True, nogil=True)
def _ema(y, weight, out):  # pragma: no cover - compiled
    last = 0.0
    n_accum = 0
    for i in range(y.shape[0]):
        v = y[i]
        if not np.isfinite(v):
            out[i] = v
            continue
        last = last * weight + (1.0 - weight) * v
        n_accum += 1
        out[i] = last / (1.0 - weight**n_accum) if weight < 1.0 else last


def ema(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average of ``y`` ``[n]`` -> ``[n]``.

    ``m_k = w m_{k-1} + (1 - w) y_k`` from ``m_0 = 0``, reported as ``s_k = m_k / (1 - w^k)``
    (k counts the finite values so far; the division undoes the pull towards the start value
    0). ``w = 0`` returns ``y``; non-finite values pass through and do not enter the average.
    A constant series stays constant. Same rule as TensorBoard's ``smoothing weight``
    (tensorboard/components/vz_line_chart2/line-chart.ts).
    """
    if not 0.0 <= weight <= 0.99:
        raise ValueError(f"smoothing: {weight!r} is out of range (in [0, 0.99])")
    y = np.ascontiguousarray(y, dtype=np.float64)
    if weight == 0.0 or y.size == 0:
        return y.copy()
    out = np.empty_like(y)
    _ema(y, float(weight), out)
    return out


@njit(cache=True, nogil=True)
def _envelope_idx(y, n_buckets, out):  # pragma: no cover - compiled
    n = y.shape[0]
    k = 0
    out[k] = 0
    k += 1
    for b in range(n_buckets):
        lo = (b * n) // n_buckets
        hi = ((b + 1) * n) // n_buckets
        i_min = lo
        i_max = lo
        for i in range(lo + 1, hi):
            if y[i] < y[i_min]:
                i_min = i
            if y[i] > y[i_max]:
                i_max = i
        first, second = (i_min, i_max) if i_min <= i_max else (i_max, i_min)
        if first != out[k - 1]:
            out[k] = first
            k += 1
        if second != out[k - 1]:
            out[k] = second
            k += 1
    if out[k - 1] != n - 1:
        out[k] = n - 1
        k += 1
    return k


def envelope(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of ``(x, y)`` ``[n]`` that keep every bucket's extremes.

    The ``n`` points are cut into ``(max_points - 2) // 2`` buckets of consecutive points;
    each bucket keeps the point of its minimum and of its maximum (in x order), plus the
    first and last point of the series. So the global min and max, and every local extreme
    at bucket resolution, are in the output. ``n <= max_points``: returned unchanged
    (idempotent). ``y`` must be finite (drop NaNs first).
    """
    if max_points < 4:
        raise ValueError(f"max_points: {max_points!r} is out of range (>= 4)")
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    if n <= max_points:
        return x, y
    n_buckets = (max_points - 2) // 2
    idx = np.empty(2 * n_buckets + 2, dtype=np.int64)
    k = _envelope_idx(np.ascontiguousarray(y), n_buckets, idx)
    idx = idx[:k]
    return x[idx], y[idx]


def thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced points of ``(x, y)`` (always the first and the last), at most
    ``max_points``; for a line that is already smooth, such as an EMA."""
    n = len(y)
    if n <= max_points:
        return np.asarray(x), np.asarray(y)
    idx = np.unique(np.linspace(0, n - 1, max(2, max_points)).astype(np.int64))
    return np.asarray(x)[idx], np.asarray(y)[idx]


def reduce_trace(
    x: np.ndarray, y: np.ndarray, smoothing: float, max_points: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """The two lines a live chart draws for one run: ``(raw, smoothed)``.

    ``raw`` is the :func:`envelope` of the finite points, with two thirds of ``max_points``
    when there is a smoothed line, and all of it otherwise; ``smoothed`` is the :func:`ema`
    of the full-resolution data, :func:`thin`-ned to the remaining third, or None when
    ``smoothing`` is 0. The EMA is computed before any reduction, so it is the same line
    the full data would give.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(x)
    x, y = x[ok], y[ok]
    if smoothing <= 0.0:
        return envelope(x, y, max_points), None
    raw_points = max(4, (2 * max_points) // 3)
    return envelope(x, y, raw_points), thin(x, ema(y, smoothing), max(2, max_points - raw_points))
