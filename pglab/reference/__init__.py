"""Reference bands: the expected curve of each preset, from a multi-seed study shipped as data.

Each preset ``NAME`` has ``data/NAME.csv`` (one row per grid point: ``env_steps, n, median,
p10, p90, mean, mean_lo, mean_hi`` of ``rollout/return_last20`` across seeds) and
``data/NAME.json`` (how it was made: seeds, steps, command, date), written by
:mod:`pglab.reference.make_reference`. The band a run is held against is p10..p90: where
80% of the study's seeds lay, i.e. what a normal single run of that preset looks like.

No Streamlit here: :func:`reference_band` is what the pages and scripts call;
``pglab.ui.reference_traces`` turns a band into faint plotly traces.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).with_name("data")


@dataclass(frozen=True)
class ReferenceBand:
    """A preset's study band; arrays share the ``env_steps`` grid."""

    preset: str
    metric: str
    env_steps: np.ndarray
    median: np.ndarray
    p10: np.ndarray
    p90: np.ndarray
    meta: dict[str, Any]

    @property
    def seeds(self) -> int:
        return int(self.meta.get("seeds", 0))

    @property
    def label(self) -> str:
        return f"{self.preset} reference ({self.seeds} seeds, p10-p90)"


def available() -> list[str]:
    """Presets with a shipped band, sorted."""
    return sorted(p.stem for p in DATA.glob("*.json") if (DATA / f"{p.stem}.csv").exists())


@lru_cache(maxsize=32)
def reference_band(preset: str) -> ReferenceBand | None:
    """The shipped band of ``preset`` (None if the study did not cover it)."""
    csv, meta = DATA / f"{preset}.csv", DATA / f"{preset}.json"
    if not (csv.exists() and meta.exists()):
        return None
    table = pd.read_csv(csv)
    info = json.loads(meta.read_text())
    return ReferenceBand(
        preset=preset,
        metric=info.get("metric", "rollout/return_last20"),
        env_steps=table["env_steps"].to_numpy(dtype=np.float64),
        median=table["median"].to_numpy(dtype=np.float64),
        p10=table["p10"].to_numpy(dtype=np.float64),
        p90=table["p90"].to_numpy(dtype=np.float64),
        meta=info,
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def match_preset(algo: str, config: Mapping[str, Any]) -> str | None:
    """The preset a run's config was made from: same algorithm and env, and every setting
    of the preset equal in the config (``total_steps`` aside: a longer or shorter run of a
    preset is still that preset). None if no preset matches."""
    from pglab.presets import PRESETS

    for p in PRESETS.values():
        if p.algo != algo or p.env_id != config.get("env_id"):
            continue
        if all(_same(config.get(k), v) for k, v in p.settings.items() if k != "total_steps"):
            return p.name
    return None


def band_for_run(algo: str, config: Mapping[str, Any]) -> ReferenceBand | None:
    """The reference band of the preset a run came from, if it has one."""
    name = match_preset(algo, config)
    return reference_band(name) if name else None
