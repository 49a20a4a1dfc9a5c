"""The Compare page's Streamlit side: run frames (cached per finished run), launch choices,
the one-click ladder, reference bands and plain download names. Numbers: :mod:`pglab.compare`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from pglab.ui.common import ACTIVE, _registry_for
from pglab.ui.live import live_frame


# -- run frames for Compare ----------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def _stored_frame(store_path: str, run_id: str, ended_at: float | None) -> pd.DataFrame:
    """A finished run's metrics; ``ended_at`` in the key so a re-written run is re-read."""
    return _registry_for(store_path).store.metrics(run_id)


def run_frames(registry: Any, records: Sequence[Any]) -> dict[str, pd.DataFrame]:
    """Metrics per run id: cached for ended runs, read incrementally for active ones."""
    path = str(registry.store.path)
    return {
        r.id: live_frame(registry, r.id)
        if r.status in ACTIVE
        else _stored_frame(path, r.id, r.ended_at)
        for r in records
    }


def group_key(r: Any, by: str) -> str:
    """Group label of a run under ``by`` (see :data:`pglab.compare.GROUP_BY`)."""
    from pglab import compare

    return compare.group_key(r, by)[1]


# -- launches --------------------------------------------------------------------------------------
def launch_options(records: Sequence[Any]) -> dict[str, str]:
    """``{launch id: label}``, newest launch first. The label names what the launch holds
    (its groups, env, run count) but no status, which would go stale in a widget label."""
    from pglab import compare

    out: dict[str, list[Any]] = {}
    for r in records:  # newest first
        out.setdefault(compare.launch_of(r), []).append(r)
    labels = {}
    for launch, runs in out.items():
        groups = list(dict.fromkeys(r.group or r.name for r in reversed(runs)))
        what = groups[0] if len(groups) == 1 else f"{len(groups)} groups: {groups[0]}, ..."
        envs = sorted({r.env_id for r in runs})
        labels[launch] = f"{what} · {', '.join(envs)} · {len(runs)} runs · {launch}"
    return labels


def ladder_launches(records: Sequence[Any]) -> list[str]:
    """Launch ids that hold a whole ladder (every rung's group), newest first."""
    from pglab.presets import ladder

    rungs = [label for label, _, _ in ladder("", 1)]
    groups: dict[str, set[str]] = {}
    envs: dict[str, str] = {}
    for r in records:  # newest first
        if r.launch:
            groups.setdefault(r.launch, set()).add(r.group or "")
            envs.setdefault(r.launch, r.env_id)
    return [
        launch
        for launch, have in groups.items()
        if {f"{label} ({envs[launch]})" for label in rungs} <= have
    ]


# -- reference bands and downloads ------------------------------------------------------------------
def reference_bands_for(records: Sequence[Any]) -> list[Any]:
    """The shipped reference bands of the presets these runs were made from (each once)."""
    from pglab.reference import band_for_run

    out: dict[str, Any] = {}
    for r in records:
        band = band_for_run(r.algo, r.config)
        if band is not None:
            out.setdefault(band.preset, band)
    return list(out.values())


def download_name(*parts: str, ext: str) -> str:
    """A plain file name: ``pglab-compare-rollout-return_last20.csv`` (letters, digits, ``-``,
    ``_`` and one dot; no spaces, no "·")."""
    words = [re.sub(r"[^A-Za-z0-9_]+", "-", p).strip("-") for p in ("pglab", *parts)]
    return "-".join(w for w in words if w) + "." + ext


def download_payloads(
    fig: Any, result: Mapping[str, Any], curves: pd.DataFrame, metric: str
) -> list[tuple[str, Any, str, str]]:
    """(label, data or a callable making it, file name, mime) of each Compare download: the
    figure as standalone HTML (plotly.js embedded: works offline), the summary as CSV and
    JSON, the aligned group curves as CSV and Parquet."""
    from pglab import compare

    name = metric.replace("/", "-")
    table = compare.summary_table(result)
    return [
        ("Figure (HTML)", lambda: fig.to_html(include_plotlyjs=True),
         download_name("compare", name, ext="html"), "text/html"),
        ("Summary (CSV)", table.to_csv(index=False), download_name("summary", name, ext="csv"),
         "text/csv"),
        ("Summary (JSON)", json.dumps(result, indent=1),
         download_name("summary", name, ext="json"), "application/json"),
        ("Curves (CSV)", curves.to_csv(index=False), download_name("curves", name, ext="csv"),
         "text/csv"),
        ("Curves (Parquet)", lambda: curves.to_parquet(index=False),
         download_name("curves", name, ext="parquet"), "application/vnd.apache.parquet"),
    ]  # fmt: skip


def compare_downloads(
    fig: Any, result: Mapping[str, Any], curves: pd.DataFrame, metric: str
) -> None:
    """One row of download buttons for :func:`download_payloads`."""
    payloads = download_payloads(fig, result, curves, metric)
    for col, (text, data, file_name, mime) in zip(st.columns(len(payloads)), payloads):
        col.download_button(
            text, data, file_name, mime, key=f"cmp:dl:{file_name}", icon=":material/download:"
        )


def compare_runs_table(records: Sequence[Any], groups: Sequence[Any]) -> pd.DataFrame:
    """The runs of a comparison as they are now: group, seed, status, steps; dropped repeats
    of a seed say so."""
    from pglab import compare

    group_of, why = {}, {}
    for g in groups:
        group_of.update(dict.fromkeys(g.run_ids, g.name))
        for run_id, reason in g.dropped:
            group_of[run_id], why[run_id] = g.name, reason
    rows = [
        {
            "group": group_of.get(r.id, "-"),
            "seed": r.seed,
            "status": r.status,
            "env steps": f"{r.env_steps:,} / {r.total_steps:,}",
            "run": r.id,
            "launch": compare.launch_of(r),
            "counted": "no: " + why[r.id] if r.id in why else "yes",
        }
        for r in records
    ]
    return pd.DataFrame(rows)


def show_table(table: pd.DataFrame, key: str, room_px: int = 940) -> None:
    """A table whose columns are sized to their longest cell (about 7 px a character) and
    scaled to fit ``room_px`` (the page's content width at 1440 px is ~980), so no column is cut off."""
    widths = {
        col: 7 * max([len(str(col)), *(len(str(v)) for v in table[col])]) + 30
        for col in table.columns
    }
    scale = min(1.0, room_px / max(1, sum(widths.values())))
    config = {col: st.column_config.Column(width=int(w * scale)) for col, w in widths.items()}
    st.dataframe(table, hide_index=True, key=key, column_config=config)
