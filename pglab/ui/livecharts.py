"""The live panel's charts as a Streamlit component: a row of plotly charts in one iframe,
redrawn in place (``frontend/livecharts.js``).

``st.plotly_chart`` names each figure by its spec, so every live refresh gives each chart
a new element: the browser unmounts it and builds it again from nothing (Plotly.purge and
newPlot, Streamlit's React tree and theme pass around it), ~0.07 CPU s a chart on this
machine, and on 2 cores that is CPU the runs need. The component keeps one iframe per row
(its key is its identity), so an unchanged chart costs the browser nothing and a changed
one is one ``Plotly.react`` on the same div, which keeps the user's zoom.

The iframe loads the plotly.js that ships with the installed plotly package: it is copied,
with the two frontend files, into one folder under the user's cache directory, since
Streamlit serves a component's files from one folder and nothing linked out of it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from pglab.ui.common import PLOTLY_CONFIG

FRONTEND = Path(__file__).with_name("frontend")
FRONTEND_FILES = ("index.html", "livecharts.js")


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def frontend_dir(cache: Path | None = None) -> Path:
    """The folder the component serves: ``index.html``, ``livecharts.js`` and the installed
    plotly's ``plotly.min.js``, copied once into ``<cache>/pglab/livecharts-<hash>`` (the
    hash of the three files' contents, so an upgrade gets a fresh folder)."""
    if cache is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    sources = [FRONTEND / f for f in FRONTEND_FILES] + [_plotly_js()]
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.read_bytes())
    dest = cache / "pglab" / f"livecharts-{digest.hexdigest()[:16]}"
    if not (dest / "livecharts.js").exists():
        tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for src in sources:
            shutil.copyfile(src, tmp / src.name)
        try:
            tmp.rename(dest)
        except OSError:  # another process made it first: theirs has the same contents
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


@st.cache_resource(show_spinner=False)
def _component() -> Any:
    import streamlit.components.v1 as components

    try:
        path = frontend_dir()
    except OSError:  # no writable cache directory: a private temporary one for this process
        path = frontend_dir(Path(tempfile.mkdtemp(prefix="pglab-cache-")))
    return components.declare_component("pglab_live_charts", path=str(path))


def _encode(value: Any) -> Any:
    """JSON-ready ``value``: float arrays become plotly's typed-array form (``dtype``,
    ``bdata``: base64 float32, half the bytes of float64 and no decimal text), numpy
    scalars plain numbers."""
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value, dtype=np.float32)
        return {"dtype": "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN; plotly reads null as a missing value
    return value


def spec_json(data: Sequence[dict[str, Any]], layout: dict[str, Any]) -> str:
    """One chart's figure as the JSON string the component parses (and compares: an
    unchanged string is not drawn again)."""
    return json.dumps(
        {"data": _encode(list(data)), "layout": _encode(layout)},
        separators=(",", ":"),
        allow_nan=False,
    )


def chart_row(charts: Sequence[dict[str, Any]], key: str, height: int, columns: int = 0) -> None:
    """Draw ``charts`` side by side in one iframe under ``key`` (its identity: the same key
    on the next rerun redraws in place). Each chart: ``id``, ``spec`` (:func:`spec_json`)
    and ``log`` (None: no log box; else whether the box starts ticked). ``columns``: grid
    columns (default: one per chart); ``height``: the row's height before it has drawn."""
    args = [
        {"id": c["id"], "spec": c["spec"], "log": c.get("log"), "config": PLOTLY_CONFIG}
        for c in charts
    ]
    _component()(charts=args, columns=columns or len(args), height=height, key=key, default=None)
