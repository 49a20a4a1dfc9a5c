"""Run frames for the Compare page: stored metric tables, cached per finished run, and groups."""

from __future__ import annotations

from collections.abc import Sequence
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
    """Group label of a run for Compare: its launch group, algorithm, or the run itself."""
    if by == "algorithm":
        return f"{r.algo} · {r.env_id}"
    if by == "each run":
        return r.name
    return r.group or r.name
