"""The Train page's live panel (progress, Stop/Pause, charts) and the runs table; the page
wraps :func:`render_live` in ``st.fragment(run_every=...)``. Worker threads never call
``st.*``: the panel pulls new points from the registry on each rerun."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from pglab.ui.charts import caption_for, line_figure, show_chart
from pglab.ui.common import ACTIVE, COLORS


# -- live metrics --------------------------------------------------------------------------------
class _LiveBuffers:
    """Columnar copies of each run's metric rows, grown incrementally with a cursor.

    Shared across sessions (a run's curve is the same for every viewer); guarded by a lock
    because several sessions' fragments may pull at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[int, dict[str, list[float]], int]] = {}

    def frame(self, registry: Any, run_id: str) -> pd.DataFrame:
        with self._lock:
            cursor, cols, n = self._runs.get(run_id, (0, {}, 0))
            try:  # the registry's memory for its own runs, the store for older ones
                rows, cursor = registry.snapshot(run_id, cursor)
            except ValueError:  # deleted meanwhile
                rows = []
            for row in rows:
                for name in row.keys() - cols.keys():
                    cols[name] = [math.nan] * n
                for name, col in cols.items():
                    col.append(row.get(name, math.nan))
                n += 1
            self._runs[run_id] = (cursor, cols, n)
            return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in cols.items()})

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)


@st.cache_resource(show_spinner=False)
def _buffers_for(store_path: str) -> _LiveBuffers:
    return _LiveBuffers()


def live_frame(registry: Any, run_id: str) -> pd.DataFrame:
    """All metric rows of ``run_id`` so far (columns = metric names), read incrementally."""
    return _buffers_for(str(registry.store.path)).frame(registry, run_id)


# (title, metrics, log scale): the live panel's small multiples after the return chart.
LIVE_CHARTS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("Policy loss", ("loss/policy",), False),
    ("Value loss", ("loss/value",), False),
    ("Gradient variance (log)", ("diag/grad_var",), True),
    ("Gradient SNR (log)", ("diag/grad_snr",), True),
    ("Approx. KL", ("diag/approx_kl",), False),
    ("Clip fraction", ("diag/clip_fraction",), False),
    ("Entropy", ("policy/entropy",), False),
    ("Explained variance", ("diag/explained_variance",), False),
    ("Steps per second", ("time/sps",), False),
)


def fmt_eta(eta_s: float | None) -> str:
    if eta_s is None or not math.isfinite(eta_s):
        return "ETA -"
    if eta_s < 60:
        return f"ETA {eta_s:.0f} s"
    return f"ETA {eta_s / 60:.1f} min"


def _controls(registry: Any, rec: Any, frame: pd.DataFrame) -> None:
    """Progress bar with ETA, status, Pause/Resume and Stop for one run.

    ``ETA = (total_steps - env_steps) / SPS`` with SPS = env steps per training second so far
    (the same rule as ``Registry.progress``, from the rows already read: no extra query).
    """
    frac, steps = rec.fraction, rec.env_steps
    eta = ""
    if rec.status in ("running", "paused") and len(frame) and "time/wall_s" in frame.columns:
        wall = float(frame["time/wall_s"].iloc[-1])
        sps = float(frame["time/env_steps"].iloc[-1]) / wall if wall > 0 else 0.0
        eta = fmt_eta(max(0, rec.total_steps - steps) / sps if sps > 0 else None)
    ret = "-" if rec.final_return is None else f"{rec.final_return:.1f}"
    text = f"**{rec.name}** · {rec.status} · {steps:,}/{rec.total_steps:,} steps · return {ret}"
    bar, pause, stop = st.columns([8, 1, 1], vertical_alignment="bottom")
    bar.progress(min(1.0, max(0.0, float(frac))), text=f"{text} · {eta}" if eta else text)
    if rec.status in ("running", "queued"):
        pause.button("Pause", key=f"pause:{rec.id}", on_click=registry.pause, args=(rec.id,))
    elif rec.status == "paused":
        pause.button("Resume", key=f"resume:{rec.id}", on_click=registry.resume, args=(rec.id,))
    if rec.status in ACTIVE:
        stop.button("Stop", key=f"stop:{rec.id}", on_click=registry.stop, args=(rec.id,))
    if rec.status == "failed":
        st.error(f"{rec.name} failed: {rec.error or 'no reason recorded'}")
    elif rec.status == "interrupted":
        st.warning(f"{rec.name} was interrupted: {rec.error or ''}")


def render_live(registry: Any, run_ids: Sequence[str], key: str = "live") -> bool:
    """Draw progress, controls and the live charts of ``run_ids``; True if any is active."""
    records = [r for r in (safe_record(registry, i) for i in run_ids) if r is not None]
    if not records:
        st.info("No runs to show yet: choose settings above and press **Launch**.")
        return False
    frames = {r.id: live_frame(registry, r.id) for r in records}
    for rec in records:
        _controls(registry, rec, frames[rec.id])
    colors = {r.id: COLORS[k % len(COLORS)] for k, r in enumerate(records)}

    def traces(metric: str, **style: Any) -> list[dict[str, Any]]:
        out = []
        for r in records:
            f = frames[r.id]
            if metric in f.columns and "time/env_steps" in f.columns:
                ok = np.isfinite(f[metric].to_numpy())
                if ok.any():
                    out.append(
                        {
                            "x": f["time/env_steps"].to_numpy()[ok],
                            "y": f[metric].to_numpy()[ok],
                            "name": r.name,
                            "color": colors[r.id],
                            **style,
                        }
                    )
        return out

    from pglab.envs import env_info

    raw = traces("rollout/ep_return_mean", width=1, opacity=0.35, showlegend=False)
    smooth = traces("rollout/return_last20", width=2.5)
    threshold = env_info(records[0].env_id).reward_threshold
    fig = line_figure(
        raw + smooth,
        title="Episode return: raw (faint) and mean of the last 20 episodes",
        y_title="return",
        height=320,
        hline=threshold if len({r.env_id for r in records}) == 1 else None,
    )
    show_chart(fig, f"{key}:return")
    st.caption(caption_for("rollout/return_last20"))
    cols = st.columns(3)
    k = 0
    for title, names, log_y in LIVE_CHARTS:
        data = traces(names[0])
        if not data:
            continue  # a metric the algorithm does not report is absent, not zero
        with cols[k % 3]:
            for d in data:
                d["showlegend"] = False
            show_chart(line_figure(data, title=title, log_y=log_y), f"{key}:{names[0]}")
            st.caption(caption_for(names[0]))
        k += 1
    return any(r.status in ACTIVE for r in records)


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
