"""The live charts' component (pglab.ui.livecharts): the folder it serves, the specs it
sends, and when the Train page redraws them (pglab.ui.live.charts_due)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from pglab.ui import livecharts
from pglab.ui.live import CHART_REFRESH_S, charts_due, render_charts


def test_frontend_dir_holds_the_page_its_script_and_the_installed_plotly(tmp_path):
    served = livecharts.frontend_dir(tmp_path)
    assert {p.name for p in served.iterdir()} == {"index.html", "livecharts.js", "plotly.min.js"}
    assert served.parent == tmp_path / "pglab"
    assert (served / "plotly.min.js").read_bytes() == livecharts._plotly_js().read_bytes()
    html = (served / "index.html").read_text()
    assert 'src="plotly.min.js"' in html and 'src="livecharts.js"' in html
    assert livecharts.frontend_dir(tmp_path) == served  # made once, then found
    assert len(list((tmp_path / "pglab").iterdir())) == 1  # no temporary folder left behind


def _decode(v) -> np.ndarray:
    assert v["dtype"] == "f4"
    return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.float32)


def test_spec_json_sends_float32_arrays_and_no_nan_text():
    x = np.array([0.0, 1.5, 3e7])
    y = np.array([1.0, np.nan, -2.25], dtype=np.float32)
    spec = livecharts.spec_json(
        [{"x": x, "y": y, "name": "run", "line": {"width": np.float64(2.0)}}],
        {"title": {"text": "t"}, "shapes": [{"y0": float("nan"), "y1": np.float32(1)}]},
    )
    fig = json.loads(spec)  # strict JSON: a NaN token would not parse in the browser
    assert "NaN" not in spec
    trace = fig["data"][0]
    np.testing.assert_array_equal(_decode(trace["x"]), x.astype(np.float32))
    np.testing.assert_array_equal(_decode(trace["y"]), y)  # NaN stays a gap, inside the bytes
    assert trace["line"]["width"] == 2.0 and trace["name"] == "run"
    assert fig["layout"]["shapes"][0] == {"y0": None, "y1": 1.0}
    # the same figure gives the same string: the browser skips a chart whose string is unchanged
    again = livecharts.spec_json(
        [{"x": x.copy(), "y": y.copy(), "name": "run", "line": {"width": 2.0}}],
        {"title": {"text": "t"}, "shapes": [{"y0": float("nan"), "y1": 1.0}]},
    )
    assert again == spec


@pytest.fixture
def registry(tmp_path):
    from pglab.engine import Registry
    from pglab.store import Store

    store = Store(tmp_path / "runs.sqlite")
    reg = Registry(store, max_concurrent=2)
    yield reg
    reg.clear()
    store.close()


def test_charts_are_due_when_a_run_ends_or_after_the_period_with_new_rows(registry, monkeypatch):
    import streamlit as st

    from pglab.algos import make_config

    st.session_state.clear()
    config = make_config("reinforce", {"env_id": "CartPole-v1", "total_steps": 2_000})
    run = registry.launch("reinforce", config, seed=0)
    assert charts_due(registry, [run])  # nothing drawn yet
    assert registry.wait(run, 60) == "finished"
    render_charts(registry, [run])
    assert not charts_due(registry, [run])  # drawn with every row, and nothing changed since

    clock = [1_000.0]
    monkeypatch.setattr("pglab.ui.live.time.monotonic", lambda: clock[0])
    render_charts(registry, [run])
    clock[0] += CHART_REFRESH_S + 1
    assert not charts_due(registry, [run])  # the period passed, but no new rows: no redraw
    drawn = st.session_state["live:drawn"]
    st.session_state["live:drawn"] = (drawn[0], drawn[1], {run: drawn[2][run] - 1})
    assert charts_due(registry, [run])  # a row the charts lack, after the period
    clock[0] = drawn[1] + 1
    assert not charts_due(registry, [run])  # ... but not before it
    st.session_state["live:drawn"] = (((run, True),), drawn[1], drawn[2])
    assert charts_due(registry, [run])  # drawn while active, ended since: at once
