"""Comparing groups of runs: launches as groups, honest intervals, one module for page and CLI.

Pure pandas/numpy, no Streamlit: the Compare page and ``python -m pglab compare`` call the
same functions, so they show the same groups and numbers. Input: run records
(:class:`pglab.store.RunRecord`, or anything with ``id, seed, launch, group, algo, env_id,
config, env_steps, created_at, name``) and one metrics frame per run (``Store.metrics``).

Groups (:func:`make_groups`), by ``by``:

- ``launch`` (default): the runs of one launch with one group label (a Launch click, one
  rung of a ladder, one ``train --seeds`` call);
- ``config``: same algorithm and same full config (seed aside), across launches;
- ``tag``: same group label (``train --group NAME``, the page's group name), across launches;
- ``run``: every run on its own.

A group holds one run per seed: when a seed appears twice the run that got furthest (then
the newest) is kept and the others are listed in ``Group.dropped``.

Curves (:func:`group_curve`): every run of a group is interpolated onto one x grid. With
``span="common"`` (default) the grid covers only the x range where *every* run of the group
has data, so the line and band never change composition along x. With ``span="all"`` it
covers the union and each point uses the runs that reached it; ``n`` is drawn with it.
The line is the mean (or IQM) across seeds, the band its 95% percentile-bootstrap interval
(:mod:`pglab.stats`, rliable's conventions), clipped to the metric's possible range
(:func:`metric_bounds`); no band where fewer than two seeds have data.

Summary (:func:`summarize`), per group: n, the final value (each run's last finite value of
the metric) as mean and IQM with bootstrap 95% CIs, steps to threshold per seed (None where
not reached), AUC (each run's mean of the metric over one env-step window shared by *all*
compared groups, so budgets do not tilt it) and the early gradient variance (each run's
median ``diag/grad_var`` over updates ending in the first ``early window`` env steps, the
same window for all groups: every rung is measured on near-initial policies, not on the
longer episodes a better policy plays later).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pglab import stats

STEPS = "time/env_steps"
WALL = "time/wall_s"
RETURN = "rollout/return_last20"
GRAD_VAR = "diag/grad_var"
X_AXES: dict[str, str] = {"env steps": STEPS, "wall time (s)": WALL}
GROUP_BY: dict[str, str] = {
    "launch": "launch",
    "config": "algorithm + config",
    "tag": "group name",
    "run": "each run",
}
SPANS = ("common", "all")
EARLY_WINDOW = 20_000  # env steps of the early gradient-variance window, at most

# Possible range of an episode's return per env (None: unbounded). CartPole: +1 a step,
# Acrobot / MountainCar: -1 a step, Pendulum: cost <= pi^2 + 0.1 * 8^2 + 0.001 * 2^2 a step.
_PENDULUM_STEP = math.pi**2 + 0.1 * 64 + 0.001 * 4
RETURN_BOUNDS: dict[str, tuple[float, float]] = {
    "CartPole-v1": (0.0, 500.0),
    "CartPole-v0": (0.0, 200.0),
    "Acrobot-v1": (-500.0, 0.0),
    "MountainCar-v0": (-200.0, 0.0),
    "Pendulum-v1": (-200 * _PENDULUM_STEP, 0.0),
    "FrozenLake-v1": (0.0, 1.0),
    "pglab/ShortCorridor-v0": (-100.0, 0.0),
}
_RETURN_METRICS = ("rollout/return_last20", "rollout/ep_return_mean", "rollout/ep_return_min",
                   "rollout/ep_return_max")  # fmt: skip
_NONNEGATIVE_PREFIXES = ("rollout/ep_length", "rollout/ep_return_std", "diag/grad_", "time/")


def metric_bounds(metric: str, env_id: str | None) -> tuple[float, float] | None:
    """The possible range of ``metric`` on ``env_id`` (None if unknown or unbounded).

    Returns: the env's return range (:data:`RETURN_BOUNDS`). Episode lengths:
    ``[0, max_episode_steps]``. Variances, norms, std, times: ``[0, inf)``.
    """
    if metric in _RETURN_METRICS:
        return RETURN_BOUNDS.get(env_id or "")
    if metric.startswith("rollout/ep_length"):
        from pglab.envs import KNOWN_ENVS

        info = KNOWN_ENVS.get(env_id or "")
        top = float(info.max_episode_steps) if info and info.max_episode_steps else math.inf
        return (0.0, top)
    if metric.startswith(_NONNEGATIVE_PREFIXES) or metric == "diag/clip_fraction":
        return (0.0, math.inf)
    return None


# -- alignment -----------------------------------------------------------------------------------
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

    Linear interpolation between a run's own finite points; NaN outside ``[x_first, x_last]``
    of that run (no extrapolation; a run with one point is defined only at that x).
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


def common_span(
    frames: Mapping[str, pd.DataFrame], metric: str, x: str = STEPS
) -> tuple[float, float] | None:
    """``(max first x, min last x)`` of the runs' finite points of ``metric``: the range where
    every run that has the metric has data. None if no run has it or the ranges are disjoint."""
    firsts, lasts = [], []
    for frame in frames.values():
        xs, _ = _xy(frame, metric, x)
        if xs.size:
            firsts.append(xs[0])
            lasts.append(xs[-1])
    if not firsts or max(firsts) > min(lasts):
        return None
    return float(max(firsts)), float(min(lasts))


# -- groups --------------------------------------------------------------------------------------
def config_hash(algo: str, config: Mapping[str, Any]) -> str:
    """8 hex digits of the algorithm and its full config (sorted JSON). ``rollout`` at its
    default (``"auto"``) is left out, so runs stored before that field existed keep their
    hash and group with new runs of the same settings."""
    config = {k: v for k, v in config.items() if not (k == "rollout" and v == "auto")}
    text = json.dumps({"algo": algo, **config}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _label(r: Any) -> str:
    return r.group or r.name


def launch_of(r: Any) -> str:
    """A run's launch id; runs of a schema-1 store (no launch recorded) are each their own,
    ``L<run id>``, as :meth:`pglab.store.Store.create_run` names a launch of one run."""
    return r.launch or f"L{r.id}"


def group_key(r: Any, by: str = "launch") -> tuple[str, str]:
    """(key, label) of a run's group under ``by`` (one of :data:`GROUP_BY`)."""
    if by == "launch":
        return f"{launch_of(r)}|{_label(r)}", _label(r)
    if by == "config":
        h = config_hash(r.algo, r.config)
        return f"{r.algo}|{h}", f"{r.algo} {r.env_id} config {h[:6]}"
    if by == "tag":
        return _label(r), _label(r)
    if by == "run":
        return r.id, r.name
    raise ValueError(f"group by: {by!r} is not allowed (one of {', '.join(GROUP_BY)})")


@dataclass(frozen=True)
class Group:
    """One group of runs, one run per seed (in seed order)."""

    name: str
    key: str
    run_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    launch: str | None  # the launch all runs share; None when they come from several
    env_id: str | None  # None when the runs are on several envs
    dropped: tuple[tuple[str, str], ...] = field(default=())  # (run id, why)

    @property
    def n(self) -> int:
        return len(self.run_ids)


def make_groups(records: Sequence[Any], by: str = "launch") -> list[Group]:
    """Groups of ``records`` under ``by``, ordered by their oldest run (a ladder's rungs in the
    order they were launched). One run per seed: the one with the most env steps (then the
    newest) is kept; the others are in ``dropped``. Labels shared by several groups get the
    launch id (or key) appended, so names are unique."""
    buckets: dict[str, list[Any]] = {}
    labels: dict[str, str] = {}
    for r in records:
        key, label = group_key(r, by)
        buckets.setdefault(key, []).append(r)
        labels[key] = label
    order = sorted(buckets, key=lambda k: min(r.created_at for r in buckets[k]))
    seen: dict[str, int] = {}
    for k in order:
        seen[labels[k]] = seen.get(labels[k], 0) + 1
    out = []
    for key in order:
        runs = buckets[key]
        by_seed: dict[int, list[Any]] = {}
        for r in runs:
            by_seed.setdefault(int(r.seed), []).append(r)
        kept, dropped = [], []
        for seed in sorted(by_seed):
            cands = sorted(by_seed[seed], key=lambda r: (r.env_steps, r.created_at), reverse=True)
            kept.append(cands[0])
            dropped += [(r.id, f"seed {seed} again (kept run {cands[0].id})") for r in cands[1:]]
        launches = {launch_of(r) for r in kept}
        envs = {r.env_id for r in kept}
        name = labels[key]
        if seen[name] > 1:
            suffix = next(iter(launches)) if len(launches) == 1 else key.split("|")[-1]
            name = f"{name} [{suffix}]"
        out.append(
            Group(
                name=name,
                key=key,
                run_ids=tuple(r.id for r in kept),
                seeds=tuple(int(r.seed) for r in kept),
                launch=next(iter(launches)) if len(launches) == 1 else None,
                env_id=next(iter(envs)) if len(envs) == 1 else None,
                dropped=tuple(dropped),
            )
        )
    return out


def select_runs(records: Sequence[Any], tokens: Sequence[str]) -> list[Any]:
    """The runs named by ``tokens``: each a launch id, a group label, a run id (or a unique
    prefix of one) or a run name; no tokens: the newest launch. Raises ``ValueError`` naming
    a token that matches nothing."""
    if not records:
        raise ValueError("runs: the store has no runs yet")
    if not tokens:
        newest = max(records, key=lambda r: r.created_at)
        return [r for r in records if launch_of(r) == launch_of(newest)]
    chosen: dict[str, Any] = {}
    for raw in tokens:
        token = raw.strip()
        hits = [r for r in records if launch_of(r) == token] or [
            r for r in records if r.group == token
        ]
        if not hits:
            hits = [r for r in records if r.id == token or r.name == token]
        if not hits:
            hits = [r for r in records if r.id.startswith(token)] if token else []
            if len(hits) > 1:
                raise ValueError(f"run: {token!r} matches {len(hits)} runs; give more of the id")
        if not hits:
            raise ValueError(f"run: {token!r} is not a launch, group or run in the store")
        chosen.update({r.id: r for r in hits})
    return list(chosen.values())


def default_threshold(groups: Sequence[Group], metric: str) -> float | None:
    """The env's "solved" return when every group is on one env and the metric is a return."""
    from pglab.envs import KNOWN_ENVS

    envs = {g.env_id for g in groups}
    if metric not in _RETURN_METRICS or len(envs) != 1 or None in envs:
        return None
    info = KNOWN_ENVS.get(next(iter(envs)))
    return info.reward_threshold if info else None


# -- curves --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """A group's line and 95% band on its grid (arrays of len(x)).

    ``low``/``high`` are NaN where fewer than two seeds have data; ``n`` counts the seeds at
    each point (constant with ``span="common"``).
    """

    group: str
    stat: str
    x: np.ndarray
    mean: np.ndarray  # the statistic's value (mean or IQM; the name stays for the charts)
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray
    n_runs: int  # runs of the group that have the metric at all

    @property
    def varies(self) -> bool:
        return bool(self.n.size) and int(self.n.min()) != int(self.n.max())


def group_curve(
    frames: Mapping[str, pd.DataFrame],
    group: Group,
    metric: str,
    x: str = STEPS,
    *,
    span: str = "common",
    stat: str = "mean",
    n_grid: int = 200,
    bounds: tuple[float, float] | None = None,
) -> Curve | None:
    """The :class:`Curve` of ``group`` for ``metric`` vs ``x`` (None if no run has it)."""
    if span not in SPANS:
        raise ValueError(f"span: {span!r} is not allowed (one of {', '.join(SPANS)})")
    runs = {
        r: frames[r] for r in group.run_ids if r in frames and _xy(frames[r], metric, x)[0].size
    }
    if not runs:
        return None
    if span == "common":
        rng = common_span(runs, metric, x)
        if rng is None:  # disjoint ranges: fall back to the union, counts drawn
            grid = shared_grid(runs, x, n_grid)
        else:
            grid = np.linspace(rng[0], rng[1], n_grid) if rng[1] > rng[0] else np.array([rng[0]])
    else:
        grid = shared_grid(runs, x, n_grid)
    values = align(runs, metric, x, grid=grid).to_numpy()
    point, lo, hi, n = stats.curve_ci(values, stat, bounds=bounds)
    keep = n > 0
    return Curve(group.name, stat, grid[keep], point[keep], lo[keep], hi[keep], n[keep], len(runs))


def group_curves(
    frames: Mapping[str, pd.DataFrame],
    groups: Sequence[Group],
    metric: str,
    x: str = STEPS,
    *,
    span: str = "common",
    stat: str = "mean",
    n_grid: int = 200,
) -> list[Curve]:
    """:func:`group_curve` of every group, each clipped to its env's :func:`metric_bounds`;
    groups without the metric are left out (a metric that does not apply is absent)."""
    out = []
    for g in groups:
        bounds = metric_bounds(metric, g.env_id)
        c = group_curve(frames, g, metric, x, span=span, stat=stat, n_grid=n_grid, bounds=bounds)
        if c is not None:
            out.append(c)
    return out


def curves_frame(curves: Sequence[Curve], x_name: str = STEPS) -> pd.DataFrame:
    """Aligned group curves as one long table: group, x, n, stat, value, ci_low, ci_high."""
    parts = [
        pd.DataFrame(
            {
                "group": c.group,
                x_name: c.x,
                "n": c.n.astype(np.int64),
                "stat": c.stat,
                "value": c.mean,
                "ci_low": c.low,
                "ci_high": c.high,
            }
        )
        for c in curves
    ]
    if not parts:
        return pd.DataFrame(columns=["group", x_name, "n", "stat", "value", "ci_low", "ci_high"])
    return pd.concat(parts, ignore_index=True)


# -- per-run numbers -----------------------------------------------------------------------------
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


def normalized_auc(
    frame: pd.DataFrame,
    metric: str = RETURN,
    x: str = STEPS,
    window: tuple[float, float] | None = None,
) -> float:
    """Area under ``metric`` vs ``x`` divided by the x span: the average over training.

    ``(1/(b - a)) * integral_a^b y dx`` by the trapezoid rule on the run's own points, over
    ``window = (a, b)`` (default: the run's own range; inside the window the curve is
    linearly interpolated at ``a`` and ``b``). A single point gives that point; NaN if the
    run has no data in the window.
    """
    xs, ys = _xy(frame, metric, x)
    if xs.size == 0:
        return math.nan
    if window is not None:
        a, b = window
        if xs[0] > a or xs[-1] < b:
            return math.nan
        inner = (xs > a) & (xs < b)
        xs, ys = (
            np.r_[a, xs[inner], b],
            np.r_[np.interp(a, xs, ys), ys[inner], np.interp(b, xs, ys)],
        )
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


def early_median(frame: pd.DataFrame, metric: str, until: float) -> float:
    """Median of ``metric`` over the updates that end at or before ``until`` env steps."""
    xs, ys = _xy(frame, metric, STEPS)
    ys = ys[xs <= until]
    return float(np.median(ys)) if ys.size else math.nan


def early_window(frames: Mapping[str, pd.DataFrame], limit: int = EARLY_WINDOW) -> float:
    """The early gradient-variance window, in env steps, shared by all compared runs:
    ``min(limit, 20% of the shortest run)``, widened to the latest first update that
    reports ``diag/grad_var`` so every run has at least one value in it."""
    lasts, firsts = [], []
    for frame in frames.values():
        xs, _ = _xy(frame, GRAD_VAR, STEPS)
        if xs.size:
            firsts.append(xs[0])
            lasts.append(xs[-1])
    if not firsts:
        return math.nan
    return float(max(min(limit, 0.2 * min(lasts)), max(firsts)))


# -- the summary -----------------------------------------------------------------------------------
def _num(v: float) -> float | None:
    return round(float(v), 6) if v is not None and math.isfinite(v) else None


def summarize(
    frames: Mapping[str, pd.DataFrame],
    groups: Sequence[Group],
    metric: str = RETURN,
    threshold: float | None = None,
    *,
    reps: int = stats.REPS,
) -> dict[str, Any]:
    """Everything the summary table and ``compare --json`` show, as plain JSON values.

    Returns ``{"metric", "threshold", "auc_window": [a, b], "early_window", "groups": [...],
    "reading"}``; each group has ``name, launch, n, run_ids, seeds, dropped, metric,
    final_mean, final_ci, final_iqm, iqm_ci, auc, auc_ci, steps_to_threshold, reached,
    grad_var_early`` (None where a number does not exist, e.g. a CI from one seed).
    """
    used = {r: frames[r] for g in groups for r in g.run_ids if r in frames}
    window = common_span(used, metric)
    early = early_window(used)
    out = []
    for k, g in enumerate(groups):
        ids = [r for r in g.run_ids if r in frames]
        bounds = metric_bounds(metric, g.env_id)
        finals = np.array([final_value(frames[r], metric) for r in ids])
        mean = stats.bootstrap_ci(finals, "mean", reps=reps, seed=k, bounds=bounds)
        iqm = stats.stratified_bootstrap_ci(finals[:, None], "iqm", reps=reps, seed=k,
                                            bounds=bounds)  # fmt: skip
        aucs = np.array(
            [normalized_auc(frames[r], metric, window=window) if window else math.nan for r in ids]
        )  # no shared window (disjoint runs): no AUC rather than AUCs over different spans
        auc = stats.bootstrap_ci(aucs, "mean", reps=reps, seed=k, bounds=bounds)
        hits = [_num(steps_to_threshold(frames[r], threshold, metric)) for r in ids]
        gvars = np.array([early_median(frames[r], GRAD_VAR, early) for r in ids])
        gvars = gvars[np.isfinite(gvars)]
        out.append(
            {
                "name": g.name,
                "launch": g.launch,
                "env_id": g.env_id,
                "n": len(ids),
                "run_ids": ids,
                "seeds": list(g.seeds),
                "dropped": [{"run_id": r, "why": why} for r, why in g.dropped],
                "metric": metric,
                "final_mean": _num(mean.point),
                "final_ci": [_num(mean.lo), _num(mean.hi)],
                "final_iqm": _num(iqm.point),
                "iqm_ci": [_num(iqm.lo), _num(iqm.hi)],
                "auc": _num(auc.point),
                "auc_ci": [_num(auc.lo), _num(auc.hi)],
                "steps_to_threshold": hits if threshold is not None else [None] * len(ids),
                "reached": sum(h is not None for h in hits) if threshold is not None else None,
                "grad_var_early": _num(float(np.median(gvars))) if gvars.size else None,
            }
        )
    result = {
        "metric": metric,
        "threshold": threshold,
        "auc_window": [_num(window[0]), _num(window[1])] if window else None,
        "early_window": _num(early),
        "groups": out,
    }
    result["reading"] = reading(result)
    return result


def _ci_text(lo: float | None, hi: float | None) -> str:
    return f"[{lo:.1f}, {hi:.1f}]" if lo is not None and hi is not None else "(no CI: n < 2)"


def reading(result: Mapping[str, Any]) -> str:
    """A sentence or two that reads the summary: which group leads on AUC and on the final
    IQM, and whether its interval clears the runner-up's (if not, the order may be luck)."""
    gs = [g for g in result["groups"] if g["auc"] is not None]
    if not gs:
        return "No group has this metric in a window shared by all groups."
    parts = []
    for key, ci, what in (("auc", "auc_ci", "AUC"), ("final_iqm", "iqm_ci", "final IQM")):
        ranked = sorted((g for g in gs if g[key] is not None), key=lambda g: -g[key])
        if not ranked:
            continue
        top = ranked[0]
        text = f"Highest {what}: {top['name']} ({top[key]:.1f}, 95% CI {_ci_text(*top[ci])}, n={top['n']})"
        if len(ranked) > 1:
            second = ranked[1]
            lo_top, hi_second = top[ci][0], second[ci][1]
            if lo_top is not None and hi_second is not None and lo_top > hi_second:
                text += f", clear of {second['name']} ({second[key]:.1f})"
            else:
                text += f"; its interval overlaps {second['name']}'s ({second[key]:.1f}), so that order may be luck"
        parts.append(text + ".")
    one = [g["name"] for g in result["groups"] if g["n"] < 2]
    few = [g["name"] for g in result["groups"] if 2 <= g["n"] < 5]
    if one:
        parts.append(f"One seed only in {', '.join(one)}: no interval, an anecdote.")
    if few:
        which = "every group" if len(few) == len(result["groups"]) else ", ".join(few)
        parts.append(
            f"Under 5 seeds in {which}: a bootstrap interval is then about the range of the "
            "seeds, so read close orders as a hint, not a result."
        )
    dropped = sum(len(g["dropped"]) for g in result["groups"])
    if dropped:
        parts.append(f"{dropped} run(s) left out as repeated seeds.")
    return " ".join(parts)


def method_note(result: Mapping[str, Any]) -> str:
    """How the summary's AUC, early gradient variance and intervals were measured."""
    parts = []
    if result["auc_window"]:
        a, b = result["auc_window"]
        parts.append(
            f"AUC: each seed's mean {result['metric']} over env steps {a:,.0f} to {b:,.0f}, "
            "the span all groups share."
        )
    if result["early_window"] is not None:
        parts.append(
            "Early grad var: each seed's median diag/grad_var over its updates in the first "
            f"{result['early_window']:,.0f} env steps (the same window for every group, so "
            "all are measured on near-initial policies), median over seeds."
        )
    parts.append("Intervals: 95% percentile bootstrap over seeds; IQM as in rliable.")
    return " ".join(parts)


def summary_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """The summary as a compact display table: text cells ("value [lo, hi]"), "-" where a
    number does not exist (a CI from one seed, a threshold nobody reached)."""

    def est(v: float | None, pair: Sequence[float | None]) -> str:
        if v is None:
            return "-"
        if pair[0] is None or pair[1] is None:
            return f"{v:,.1f}"
        return f"{v:,.1f} [{pair[0]:,.1f}, {pair[1]:,.1f}]"

    rows = []
    thr = result["threshold"]
    for g in result["groups"]:
        hits = [h for h in g["steps_to_threshold"] if h is not None]
        if thr is None:
            reach = "-"
        else:
            med = f"median {np.median(hits):,.0f}, " if hits else ""
            reach = f"{med}{g['reached']}/{g['n']} reached"
        gv = g["grad_var_early"]
        rows.append(
            {
                "group": g["name"],
                "n": g["n"],
                "final IQM [95% CI]": est(g["final_iqm"], g["iqm_ci"]),
                "final mean [95% CI]": est(g["final_mean"], g["final_ci"]),
                "steps to threshold": reach,
                "AUC [95% CI]": est(g["auc"], g["auc_ci"]),
                "early grad var": "-" if gv is None else f"{gv:.3g}",
                "dropped": len(g["dropped"]),
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


def launch_ladder(
    registry: Any, env_id: str, seeds: Sequence[int], total_steps: int
) -> tuple[str, list[str]]:
    """Launch every rung of :func:`pglab.presets.ladder` for ``seeds`` under ONE launch id, so
    the whole ladder is one choice on this page later. Every rung is validated before any
    run starts. Returns (launch id, run ids)."""
    from pglab.algos import make_config
    from pglab.presets import ladder
    from pglab.store import new_launch_id

    rungs = [
        (label, algo, make_config(algo, settings))
        for label, algo, settings in ladder(env_id, int(total_steps))
    ]
    launch = new_launch_id()
    ids = []
    for label, algo, cfg in rungs:
        group = f"{label} ({env_id})"
        for s in seeds:
            ids.append(
                registry.launch(
                    algo,
                    cfg,
                    seed=s,
                    device="cpu",
                    name=f"{group} s{s}",
                    group=group,
                    launch=launch,
                )
            )
    return launch, ids
