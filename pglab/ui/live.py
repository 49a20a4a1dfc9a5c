"""The Train page's live panel: run controls (:func:`render_controls`, in a fragment the
page reruns every 3 s, so a click reruns only them), health flags and charts
(:func:`render_charts`, drawn by the full reruns the fragment asks for when
:func:`charts_due`).

What reaches the browser is bounded by the screen, not by the run: every trace is reduced on
the server (:mod:`pglab.reduce`: a min/max envelope of the raw rows plus the debiased EMA),
to a per-chart budget of :data:`CHART_POINTS` points shared by the runs on it, sent as
float32. The charts are component iframes (:mod:`pglab.ui.livecharts`): a chart whose
data did not change is the same argument string, which the browser does not draw again,
and a changed one is redrawn in place. Worker threads never call ``st.*``: the page pulls
new rows from the registry on each run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pglab import health, labels, metrics
from pglab.reduce import reduce_trace
from pglab.ui.charts import line_spec, reference_traces
from pglab.ui.common import ACTIVE, CHART_HEIGHT, COLORS
from pglab.ui.livecharts import chart_row, spec_json

# Points per small chart, shared by its runs (each chart is a third of the page wide, ~450 px:
# 400 points of min/max envelope are one to a pixel), and for the full-width return chart.
CHART_POINTS = 400
RETURN_POINTS = 1200
RETURN_HEIGHT = 320
# Charts take new rows this often; the controls at every (3 s) refresh. A chart refresh is a
# full rerun that redraws the ten charts in place (~0.33 CPU s of the browser's on this
# machine; ~0.7-1.1 s as st.plotly_chart elements, rebuilt from nothing), CPU the runs need
# on 2 cores. So the charts refresh every 6 s in a run's first minute, while the curves
# change shape fastest, and every 15 s after it, when a refresh adds a sliver at the right
# edge (TensorBoard reloads every 30 s).
CHART_REFRESH_EARLY_S = 6.0
CHART_EARLY_S = 60.0
CHART_REFRESH_S = 15.0
MAX_WATCHED = 12  # runs drawn at once; the Runs page lists the rest
X_AXES = {
    "env steps": "time/env_steps",
    "updates": "time/updates",
    "training time (s)": "time/wall_s",
}
SMOOTH_KEY, X_KEY = "live:smoothing", "live:x"


# -- live metrics --------------------------------------------------------------------------------
class _Columns:
    """One run's metric rows as growing float arrays (NaN where a row lacks a metric)."""

    def __init__(self) -> None:
        self.cursor = 0
        self.n = 0
        self.cap = 0
        self.cols: dict[str, np.ndarray] = {}

    def extend(self, rows: list[dict[str, float]]) -> None:
        need = self.n + len(rows)
        if need > self.cap:  # amortised doubling: O(1) a row, no copy of the whole history
            self.cap = max(64, 2 * need)
            for name, a in self.cols.items():
                grown = np.full(self.cap, np.nan)
                grown[: self.n] = a[: self.n]
                self.cols[name] = grown
        for row in rows:
            for name, value in row.items():
                col = self.cols.get(name)
                if col is None:
                    col = self.cols[name] = np.full(self.cap, np.nan)
                col[self.n] = value
            self.n += 1

    def view(self) -> dict[str, np.ndarray]:
        return {k: v[: self.n] for k, v in self.cols.items()}


class _LiveBuffers:
    """Columnar copies of each run's metric rows, grown incrementally with a cursor.

    Shared across sessions (a run's curve is the same for every viewer); guarded by a lock
    because several sessions' fragments may pull at once. Readers get read-only views.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, _Columns] = {}

    def columns(self, registry: Any, run_id: str) -> tuple[dict[str, np.ndarray], int]:
        """``({metric: values}, rows so far)`` of ``run_id``."""
        with self._lock:
            c = self._runs.setdefault(run_id, _Columns())
            try:  # the registry's memory for its own runs, the store for older ones
                rows, cursor = registry.snapshot(run_id, c.cursor)
            except ValueError:  # deleted meanwhile
                rows, cursor = [], c.cursor
            if cursor < c.cursor:  # the run's history was trimmed or reset: start over
                c = self._runs[run_id] = _Columns()
                rows, cursor = registry.snapshot(run_id, 0)
            c.extend(rows)
            c.cursor = cursor
            return c.view(), c.n

    def frame(self, registry: Any, run_id: str) -> pd.DataFrame:
        cols, _ = self.columns(registry, run_id)
        return pd.DataFrame({k: v.copy() for k, v in cols.items()})

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)


@st.cache_resource(show_spinner=False)
def _buffers_for(store_path: str) -> _LiveBuffers:
    return _LiveBuffers()


def live_columns(registry: Any, run_id: str) -> dict[str, np.ndarray]:
    """All metric values of ``run_id`` so far, by name, read incrementally (do not modify)."""
    return _buffers_for(str(registry.store.path)).columns(registry, run_id)[0]


def live_frame(registry: Any, run_id: str) -> pd.DataFrame:
    """All metric rows of ``run_id`` so far (columns = metric names), read incrementally."""
    return _buffers_for(str(registry.store.path)).frame(registry, run_id)


# (metric, log scale by default, log scale offered): the small multiples after the return.
LIVE_CHARTS: tuple[tuple[str, bool, bool], ...] = (
    ("loss/policy", False, False),
    ("loss/value", False, True),
    ("diag/grad_var", True, True),
    ("diag/grad_snr", True, True),
    ("diag/approx_kl", False, True),
    ("trpo/kl", False, True),
    ("diag/clip_fraction", False, False),
    ("policy/entropy", False, False),
    ("diag/explained_variance", False, False),
    ("time/sps", False, False),
)


# -- which runs the Train page shows -------------------------------------------------------------
def remember_launch(run_ids: Sequence[str], launch: str | None) -> None:
    """Add a Launch click's runs to this session's list and its launch id to the URL, so a
    reload (a new session) finds them again."""
    runs = [*st.session_state.get("train:runs", []), *run_ids]
    st.session_state["train:runs"] = list(dict.fromkeys(runs))
    if launch:
        old = [x for x in st.query_params.get("launches", "").split(",") if x]
        st.query_params["launches"] = ",".join([*old, launch][-8:])


def watched_runs(registry: Any) -> tuple[list[str], int]:
    """Runs the Train page shows: those launched from it in this browser session (kept in
    the session, and in the URL's ``launches`` across reloads) and any still active, the
    newest :data:`MAX_WATCHED`; and how many more active runs were left out."""
    ids = list(st.session_state.get("train:runs", []))
    launches = {x for x in st.query_params.get("launches", "").split(",") if x}
    if launches and not ids:  # a reload: the session is new, the URL is not
        ids = [r.id for r in reversed(registry.store.list_runs()) if r.launch in launches]
        ids = sorted(ids, key=lambda i: registry.store.get_run(i).created_at)
        st.session_state["train:runs"] = ids
    active = [
        i
        for i in registry.active_ids()
        if i not in ids and getattr(safe_record(registry, i), "algo", "") != "rlhf"
    ]  # RLHF runs have no Gymnasium env: the RLHF Lab page shows them
    shown = [*ids, *active]
    return shown[-MAX_WATCHED:], max(0, len(shown) - MAX_WATCHED)


# -- controls ------------------------------------------------------------------------------------
def fmt_eta(eta_s: float | None) -> str:
    if eta_s is None or not math.isfinite(eta_s):
        return "ETA -"
    if eta_s < 60:
        return f"ETA {eta_s:.0f} s"
    return f"ETA {eta_s / 60:.1f} min"


def progress_text(rec: Any, sps: float | None) -> str:
    """``name · status · 12,345/100,000 steps · return 42.0 · ETA 3 s``.

    The count never reads above its budget: a run's last update may overshoot it, shown as
    ``103,023 steps (budget 100,000)``. A paused or queued run has no ETA.
    """
    steps, total = rec.env_steps, rec.total_steps
    count = (
        f"{steps:,}/{total:,} steps" if steps <= total else f"{steps:,} steps (budget {total:,})"
    )
    status = {"queued": "queued (waiting for a free core)"}.get(rec.status, rec.status)
    parts = [f"**{rec.name}**", status, count]
    if rec.final_return is not None and math.isfinite(rec.final_return):
        parts.append(f"return {rec.final_return:.1f}")
    if rec.status == "running":
        parts.append(fmt_eta(max(0, total - steps) / sps if sps else None))
    return " · ".join(parts)


def _controls(registry: Any, rec: Any, sps: float | None) -> None:
    """Progress bar and text, Pause/Resume and Stop for one run."""
    bar, pause, stop = st.columns([8, 1, 1], vertical_alignment="bottom")
    bar.progress(min(1.0, max(0.0, float(rec.fraction))), text=progress_text(rec, sps))
    if rec.status in ("running", "queued"):
        pause.button("Pause", key=f"pause:{rec.id}", on_click=registry.pause, args=(rec.id,))
    elif rec.status == "paused":
        pause.button("Resume", key=f"resume:{rec.id}", on_click=registry.resume, args=(rec.id,))
    if rec.status in ACTIVE:
        stop.button("Stop", key=f"stop:{rec.id}", on_click=_stop, args=(registry, rec.id))
    if rec.status == "failed":
        st.error(f"{rec.name} failed: {rec.error or 'no reason recorded'}")
    elif rec.status == "interrupted":
        st.warning(f"{rec.name} was interrupted: {rec.error or ''}")


def render_controls(registry: Any, run_ids: Sequence[str], hidden: int = 0) -> bool:
    """Progress and Stop/Pause of ``run_ids``; True if any is active. Cheap: no charts."""
    records = [r for r in (safe_record(registry, i) for i in run_ids) if r is not None]
    if not records:
        st.info("No runs to show yet: choose settings above and press **Launch**.")
        return False
    for rec in records:
        with st.container():  # one block a run, whatever its status shows
            _run_row(registry, rec)
    if hidden:
        st.caption(f"{hidden} more active run(s) are not drawn here: see the Runs page.")
    return any(r.status in ACTIVE for r in records)


def _stop(registry: Any, run_id: str) -> None:
    """Stop, then wait up to 1 s for the run to end (it lands within one env step; the
    checkpoint is saved after), so the rerun the click starts already shows "stopped"."""
    registry.stop(run_id)
    registry.wait(run_id, 1.0)


def _run_row(registry: Any, rec: Any) -> None:
    """One run's controls; SPS = env steps per training second so far (as
    ``Registry.progress``), from the rows already read."""
    sps = None
    if rec.status == "running":
        cols = live_columns(registry, rec.id)
        wall, steps = cols.get("time/wall_s"), cols.get("time/env_steps")
        if wall is not None and len(wall) and wall[-1] > 0:
            sps = float(steps[-1]) / float(wall[-1])
    _controls(registry, rec, sps)


# -- charts --------------------------------------------------------------------------------------
def view_controls() -> tuple[float, str]:
    """Smoothing and x-axis choice of the live charts (session state; defaults 0.6, steps)."""
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    smoothing = c1.slider(
        "Smoothing",
        min_value=0.0,
        max_value=0.99,
        value=0.6,
        step=0.01,
        key=SMOOTH_KEY,
        help="Exponential moving average with TensorBoard's debiasing: "
        "s_k = m_k / (1 - w^k), m_k = w m_(k-1) + (1 - w) y_k. 0 = raw data. "
        "The raw data stays drawn faint behind the smoothed line.",
    )
    x_axis = c2.radio("X axis", list(X_AXES), horizontal=True, key=X_KEY)
    return float(smoothing), str(x_axis)


def _traces(
    records: Sequence[Any],
    columns: dict[str, dict[str, np.ndarray]],
    metric: str,
    x_name: str,
    smoothing: float,
    budget: int,
    colors: dict[str, str],
) -> list[dict[str, Any]]:
    with_data = [
        r for r in records if metric in columns[r.id] and np.isfinite(columns[r.id][metric]).any()
    ]
    out: list[dict[str, Any]] = []
    if not with_data:
        return out
    per_run = max(8, budget // len(with_data))
    for r in with_data:
        cols = columns[r.id]
        if x_name not in cols:
            continue
        (rx, ry), smooth = reduce_trace(cols[x_name], cols[metric], smoothing, per_run)
        faint = smooth is not None
        out.append(
            {"x": rx, "y": ry, "name": r.name, "color": colors[r.id], "legendgroup": r.id,
             "width": 1 if faint else 2, "opacity": 0.3 if faint else 1.0,
             "showlegend": not faint}
        )  # fmt: skip
        if smooth is not None:
            out.append(
                {"x": smooth[0], "y": smooth[1], "name": r.name, "color": colors[r.id],
                 "legendgroup": r.id, "width": 2.2}
            )  # fmt: skip
    return out


def render_health(records: Sequence[Any], columns: dict[str, dict[str, np.ndarray]]) -> None:
    """Health flags of the runs, one box per kind of flag (naming the runs that raise it)."""
    from pglab.envs import env_info

    seen: dict[str, tuple[health.Flag, list[str]]] = {}
    for r in records:
        flags = health.check(
            columns.get(r.id, {}),
            r.algo,
            r.config,
            status=r.status,
            error=r.error,
            reward_threshold=env_info(r.env_id).reward_threshold,
        )
        for f in flags:
            seen.setdefault(f.key, (f, []))[1].append(r.name)
    if not seen:
        st.caption(
            ":material/check_circle: No health flags: KL, clip fraction, explained variance, "
            "entropy, gradient SNR, value loss and return all look normal so far."
        )
        return
    for flag, names in seen.values():
        who = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
        box = st.error if flag.level == "error" else st.warning
        box(f"{who}: {flag.text()}", icon=":material/health_and_safety:")


def chart_period(records: Sequence[Any], now: float | None = None) -> float:
    """Seconds between two chart refreshes: :data:`CHART_REFRESH_EARLY_S` while the newest
    training run is in its first :data:`CHART_EARLY_S` seconds, else :data:`CHART_REFRESH_S`
    (a queued run has nothing to draw yet; once it starts, it is the newest)."""
    now = time.time() if now is None else now
    started = [r.started_at for r in records if r.status in ("running", "paused") and r.started_at]
    young = any(now - t < CHART_EARLY_S for t in started)
    return CHART_REFRESH_EARLY_S if young else CHART_REFRESH_S


def _rows(columns: dict[str, np.ndarray]) -> int:
    return len(next(iter(columns.values()), ()))


def _shown(records: Sequence[Any]) -> tuple[tuple[str, bool], ...]:
    """Which runs the charts show, and whether each is active."""
    return tuple((r.id, r.status in ACTIVE) for r in records)


def charts_due(registry: Any, run_ids: Sequence[str], key: str = "live") -> bool:
    """True when the charts :func:`render_charts` drew last under ``key`` are out of date:
    at once when a run ended (or one joined the list); after :func:`chart_period` seconds
    when a run has new rows (a paused run has none: no redraw)."""
    drawn = st.session_state.get(f"{key}:drawn")
    records = [r for r in (safe_record(registry, i) for i in run_ids) if r is not None]
    if drawn is None:
        return bool(records)
    if _shown(records) != drawn[0]:
        return True
    if time.monotonic() - drawn[1] < chart_period(records):
        return False
    return {r.id: _rows(live_columns(registry, r.id)) for r in records} != drawn[2]


def render_charts(
    registry: Any,
    run_ids: Sequence[str],
    smoothing: float = 0.6,
    x_axis: str = "env steps",
    key: str = "live",
) -> bool:
    """Health flags, the return chart and the diagnostics of ``run_ids``, from every row so
    far; True if any is active. Records what it drew (:func:`charts_due`)."""
    records = [r for r in (safe_record(registry, i) for i in run_ids) if r is not None]
    if not records:
        return False
    from pglab.envs import env_info

    x_name = X_AXES.get(x_axis, "time/env_steps")
    columns = {r.id: live_columns(registry, r.id) for r in records}
    st.session_state[f"{key}:drawn"] = (
        _shown(records),
        time.monotonic(),
        {rid: _rows(c) for rid, c in columns.items()},
    )
    colors = {r.id: COLORS[k % len(COLORS)] for k, r in enumerate(records)}
    algos = {r.algo for r in records}
    algo = next(iter(algos)) if len(algos) == 1 else "*"
    # Each block that varies in length sits in a container of its own, so the elements
    # after it keep their positions (delta paths) from one refresh to the next: a shift
    # makes Streamlit draw the new chart beside the stale old one (duplicates, blanks).
    with st.container():
        render_health(records, columns)

    threshold = env_info(records[0].env_id).reward_threshold
    ret = _traces(
        records, columns, "rollout/ep_return_mean", x_name, smoothing, RETURN_POINTS, colors
    )
    data, layout = line_spec(
        ret,
        title="Episode return",
        x_title=x_axis,
        y_title="return",
        height=RETURN_HEIGHT,
        hline=threshold if len({r.env_id for r in records}) == 1 else None,
        uirevision=f"{key}:return:{x_axis}",
        fixed_margins=True,
    )
    if x_name == "time/env_steps":  # the preset's expected curve, faint, behind the runs
        data = [*(t.to_plotly_json() for t in _reference_traces(records)), *data]
    chart_row([{"id": "return", "spec": spec_json(data, layout)}], f"{key}:return", RETURN_HEIGHT)
    st.caption(labels.chart_caption(algo, "rollout/return_last20"))

    small = []  # (metric, spec, log box) of the metrics the runs report
    for metric, log_default, log_offered in LIVE_CHARTS:
        data = _traces(records, columns, metric, x_name, smoothing, CHART_POINTS, colors)
        if not data:
            continue  # a metric the algorithm does not report is absent, not zero
        for d in data:
            d["showlegend"] = False
        data, layout = line_spec(
            data,
            title=metrics.label(metric),
            x_title=x_axis,
            uirevision=f"{key}:{metric}:{x_axis}",
            fixed_margins=True,
        )
        log = log_default if log_offered else None
        small.append({"id": metric, "spec": spec_json(data, layout), "log": log})
    # Rows of three charts, one iframe a row, each chart's caption under it (Streamlit
    # renders the LaTeX; the iframe has plotly only).
    for start in range(0, len(small), 3):
        row = small[start : start + 3]
        chart_row(row, f"{key}:charts:{start // 3}", CHART_HEIGHT, columns=3)
        for col, chart in zip(st.columns(3), row):
            col.caption(labels.chart_caption(algo, chart["id"]))
    return any(r.status in ACTIVE for r in records)


def _reference_traces(records: Sequence[Any]) -> list[go.Scatter]:
    """Reference bands (:mod:`pglab.reference`) of the presets the shown runs came from, each
    once: the p10-p90 band and median of that preset's multi-seed study, so a teacher sees at
    a glance whether a run is normal."""
    from pglab.reference import band_for_run

    seen, out = set(), []
    for r in records:
        band = safe(band_for_run, r.algo, r.config)
        if band is not None and band.preset not in seen:
            seen.add(band.preset)
            out.extend(reference_traces(band))
    return out


def render_live(
    registry: Any,
    run_ids: Sequence[str],
    key: str = "live",
    smoothing: float = 0.6,
    x_axis: str = "env steps",
) -> bool:
    """Controls and charts together (one fragment): for benchmarks and simple embeddings."""
    active = render_controls(registry, run_ids)
    render_charts(registry, run_ids, smoothing, x_axis, key)
    return active


# -- small helpers -------------------------------------------------------------------------------
def safe_record(registry: Any, run_id: str) -> Any:
    """The run's freshest record, or None if it was deleted."""
    try:
        return registry.record(run_id)
    except ValueError:
        return None


def runs_table(records: Iterable[Any]) -> pd.DataFrame:
    """Runs page / pickers: one row per run record."""
    now = time.time()
    rows = []
    for r in records:
        end = r.ended_at or (now if r.status in ACTIVE and r.started_at else None)
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "group": r.group or "",
                "status": r.status,
                "algo": r.algo,
                "env": r.env_id,
                "seed": r.seed,
                "steps": r.env_steps,
                "budget": r.total_steps,
                "final return": r.final_return,
                "time (s)": (end - r.started_at) if end and r.started_at else None,
                "created": pd.Timestamp(r.created_at, unit="s").strftime("%Y-%m-%d %H:%M"),
            }
        )
    return pd.DataFrame(rows)


def run_label(r: Any) -> str:
    return f"{r.name} · {r.status} · {r.id}"


def safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a ValueError becomes an on-screen error (never a traceback)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        st.error(str(exc))
        return None
