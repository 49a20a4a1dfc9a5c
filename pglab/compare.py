"""Comparing groups of runs: align seeds on a shared x grid, mean and 95% band, summary table.

Pure pandas/numpy, no Streamlit: the Compare page, the benchmarks and the tests call the same
functions. Input is one metrics frame per run (``Store.metrics(run_id)``: one row per update,
columns = metric names from :mod:`pglab.metrics`).

Alignment: every run is linearly interpolated onto one grid of ``n_grid`` points spanning the
union of the runs' x ranges; outside a run's own range it contributes NaN (no extrapolation),
so the band at step x uses only seeds that reached x.

Band: for the n seeds of a group at grid point x,

    mean = (1/n) sum_i y_i,   half-width = t_{0.975, n-1} * s / sqrt(n),
    s^2 = (1/(n-1)) sum_i (y_i - mean)^2

(Student-t 95% confidence interval of the mean across seeds; undefined for n < 2 -> NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

STEPS = "time/env_steps"
WALL = "time/wall_s"
RETURN = "rollout/return_last20"
X_AXES: dict[str, str] = {"env steps": STEPS, "wall time (s)": WALL}

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30; beyond 30 the normal 1.96
# is within 2% (no scipy dependency for one table).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int | np.ndarray) -> float | np.ndarray:
    """``t_{0.975, df}``: the 97.5% quantile of Student's t (NaN for df < 1)."""
    d = np.asarray(df, dtype=np.int64)
    table = np.array((math.nan, *_T975))
    out = np.where(d > 30, 1.96, table[np.clip(d, 0, 30)])
    return float(out) if out.ndim == 0 else out


def _xy(frame: pd.DataFrame, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """Finite (x, y) pairs of one run, sorted by x. Empty arrays when the metric is absent."""
    if metric not in frame.columns or x not in frame.columns:
        return np.empty(0), np.empty(0)
    xs = frame[x].to_numpy(dtype=np.float64)
    ys = frame[metric].to_numpy(dtype=np.float64)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def shared_grid(
    frames: Mapping[str, pd.DataFrame], x: str = STEPS, n_grid: int = 200
) -> np.ndarray:
    """``n_grid`` evenly spaced points from the smallest to the largest x of any run."""
    lows, highs = [], []
    for frame in frames.values():
        if x in frame.columns and len(frame):
            col = frame[x].to_numpy(dtype=np.float64)
            col = col[np.isfinite(col)]
            if col.size:
                lows.append(col.min())
                highs.append(col.max())
    if not lows:
        return np.empty(0)
    return np.linspace(min(lows), max(highs), n_grid)


def align(
    frames: Mapping[str, pd.DataFrame],
    metric: str,
    x: str = STEPS,
    grid: np.ndarray | None = None,
    n_grid: int = 200,
) -> pd.DataFrame:
    """Runs interpolated onto one x grid: index = grid, one column per run id.

    Linear interpolation between a run's own points; NaN outside ``[x_first, x_last]`` of that
    run's finite points (a run with one point is defined only at that x).
    """
    if grid is None:
        grid = shared_grid(frames, x, n_grid)
    cols = {}
    for run_id, frame in frames.items():
        xs, ys = _xy(frame, metric, x)
        col = np.full(grid.shape, np.nan)
        if xs.size:
            inside = (grid >= xs[0]) & (grid <= xs[-1])
            col[inside] = np.interp(grid[inside], xs, ys)
        cols[run_id] = col
    return pd.DataFrame(cols, index=pd.Index(grid, name=x))


@dataclass(frozen=True)
class Band:
    """Mean and 95% CI of one group across its seeds on the shared grid (arrays of len(x))."""

    group: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray  # NaN where fewer than 2 seeds cover x
    high: np.ndarray
    n: np.ndarray  # seeds covering each grid point


def band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise statistics of ``values [G, n_runs]`` (NaN = missing): mean, low, high, n."""
    n = np.sum(np.isfinite(values), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(values, axis=1)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(values), values - mean[:, None], 0.0)
        var = np.where(n > 1, np.sum(dev**2, axis=1) / np.maximum(n - 1, 1), np.nan)
        half = t975(np.maximum(n - 1, 0)) * np.sqrt(var / np.maximum(n, 1))
    return mean, mean - half, mean + half, n


def group_bands(
    frames: Mapping[str, pd.DataFrame],
    groups: Mapping[str, str],
    metric: str,
    x: str = STEPS,
    n_grid: int = 200,
) -> list[Band]:
    """One :class:`Band` per group (in first-seen order of ``groups``) for ``metric`` vs ``x``.

    ``groups`` maps run id -> group label; runs not in ``frames`` are ignored. Groups where no
    run has the metric are left out (a metric that does not apply is absent).
    """
    aligned = align({r: frames[r] for r in groups if r in frames}, metric, x, n_grid=n_grid)
    out = []
    for label in dict.fromkeys(groups.values()):
        ids = [r for r, g in groups.items() if g == label and r in aligned.columns]
        values = aligned[ids].to_numpy() if ids else np.empty((len(aligned), 0))
        if not ids or not np.isfinite(values).any():
            continue
        mean, low, high, n = band(values)
        keep = n > 0
        grid = aligned.index.to_numpy()
        out.append(Band(label, grid[keep], mean[keep], low[keep], high[keep], n[keep]))
    return out


# -- per-run summaries ---------------------------------------------------------------------------
def final_value(frame: pd.DataFrame, metric: str = RETURN) -> float:
    """The last finite value of ``metric`` (NaN if it never appears)."""
    if metric not in frame.columns:
        return math.nan
    col = frame[metric].to_numpy(dtype=np.float64)
    col = col[np.isfinite(col)]
    return float(col[-1]) if col.size else math.nan


def steps_to_threshold(frame: pd.DataFrame, threshold: float | None, metric: str = RETURN) -> float:
    """First env step at which ``metric`` >= ``threshold`` (NaN if never, or no threshold)."""
    if threshold is None:
        return math.nan
    xs, ys = _xy(frame, metric, STEPS)
    hit = np.nonzero(ys >= threshold)[0]
    return float(xs[hit[0]]) if hit.size else math.nan


def normalized_auc(frame: pd.DataFrame, metric: str = RETURN, x: str = STEPS) -> float:
    """Area under ``metric`` vs ``x`` divided by the x span: the average over training.

    ``AUC / (x_last - x_first) = (1/(x_last - x_first)) * integral y dx`` by the trapezoid
    rule, so runs of different budgets stay comparable; a single point gives that point.
    """
    xs, ys = _xy(frame, metric, x)
    if xs.size == 0:
        return math.nan
    span = xs[-1] - xs[0]
    if span <= 0:
        return float(ys[-1])
    return float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2.0 / span)


def mean_metric(frame: pd.DataFrame, metric: str) -> float:
    """Mean of the finite values of ``metric`` over all updates (NaN when absent)."""
    if metric not in frame.columns:
        return math.nan
    col = frame[metric].to_numpy(dtype=np.float64)
    col = col[np.isfinite(col)]
    return float(col.mean()) if col.size else math.nan


def _mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, 0
    if v.size == 1:
        return float(v[0]), math.nan, 1
    half = float(t975(v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(v.mean()), half, int(v.size)


def summary_table(
    frames: Mapping[str, pd.DataFrame],
    groups: Mapping[str, str],
    threshold: float | None = None,
) -> pd.DataFrame:
    """One row per group: seeds, final return (mean and CI half-width), steps to threshold,
    normalised AUC of the return curve, mean gradient variance.

    ``final return`` is each run's last ``rollout/return_last20``; ``steps to threshold`` is
    the mean over the seeds that reached it (``reached`` says how many did).
    """
    rows = []
    for label in dict.fromkeys(groups.values()):
        ids = [r for r, g in groups.items() if g == label and r in frames]
        if not ids:
            continue
        finals = [final_value(frames[r]) for r in ids]
        hits = [steps_to_threshold(frames[r], threshold) for r in ids]
        aucs = [normalized_auc(frames[r]) for r in ids]
        gvars = [mean_metric(frames[r], "diag/grad_var") for r in ids]
        f_mean, f_half, _ = _mean_ci(finals)
        reached = [h for h in hits if math.isfinite(h)]
        a_mean, a_half, _ = _mean_ci(aucs)
        g_mean, _, _ = _mean_ci(gvars)
        rows.append(
            {
                "group": label,
                "seeds": len(ids),
                "final return": f_mean,
                "final return ±95%": f_half,
                "steps to threshold": float(np.mean(reached)) if reached else math.nan,
                "reached": f"{len(reached)}/{len(ids)}" if threshold is not None else "-",
                "AUC (mean return)": a_mean,
                "AUC ±95%": a_half,
                "mean grad variance": g_mean,
            }
        )
    return pd.DataFrame(rows)


def metric_columns(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """Metric names present (with a finite value) in any run, in a stable order."""
    seen: dict[str, None] = {}
    for frame in frames.values():
        for col in frame.columns:
            if "/" in col and frame[col].notna().any():
                seen[col] = None
    return sorted(seen, key=lambda name: (name.split("/")[0] != "rollout", name))


# -- estimators (Gradient Lab) -------------------------------------------------------------------
def cosine_matrix(vectors: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise cosine similarity ``<u, v> / (|u| |v|)`` of flattened vectors (NaN for a zero
    vector); index and columns are the names."""
    names = list(vectors)
    mat = np.stack([np.asarray(vectors[n], dtype=np.float64).ravel() for n in names])
    norms = np.linalg.norm(mat, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (mat @ mat.T) / np.outer(norms, norms)
    return pd.DataFrame(cos, index=names, columns=names)


def variance_snr(batch_estimates: np.ndarray) -> tuple[float, float]:
    """Of K batch estimates ``[K, P]``: ``tr Cov`` (ddof 1) and ``|mean|^2 / tr Cov``."""
    g = np.asarray(batch_estimates, dtype=np.float64)
    var = float(np.sum(np.var(g, axis=0, ddof=1)))
    mean2 = float(np.sum(g.mean(axis=0) ** 2))
    return var, (mean2 / var if var > 0 else math.inf)


def bootstrap_variance_snr(
    batch_estimates: np.ndarray, n_boot: int = 400, seed: int = 0
) -> dict[str, float]:
    """95% percentile-bootstrap intervals of :func:`variance_snr` over the K batches.

    Resamples the K rows with replacement ``n_boot`` times; returns ``var_lo``, ``var_hi``,
    ``snr_lo``, ``snr_hi`` (NaN when K < 3: too few batches to say anything).
    """
    g = np.asarray(batch_estimates, dtype=np.float64)
    k = g.shape[0]
    if k < 3:
        return dict.fromkeys(("var_lo", "var_hi", "snr_lo", "snr_hi"), math.nan)
    idx = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))
    samples = g[idx]  # [n_boot, K, P]
    var = np.sum(np.var(samples, axis=1, ddof=1), axis=1)
    mean2 = np.sum(samples.mean(axis=1) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(var > 0, mean2 / var, np.inf)
    v_lo, v_hi = np.percentile(var, [2.5, 97.5])
    s_lo, s_hi = np.percentile(snr, [2.5, 97.5])
    return {
        "var_lo": float(v_lo),
        "var_hi": float(v_hi),
        "snr_lo": float(s_lo),
        "snr_hi": float(s_hi),
    }
