"""The RLHF Lab page: renders, launches runs in the engine, draws live charts, the
reward-vs-KL chart, the win-rate table and completions (Streamlit's AppTest, real store)."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/rlhf.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_page_launches_and_shows_runs():
    at = _page()
    assert at.title[0].value == "RLHF Lab"
    assert any("held-out" in m.label for m in at.metric)
    at.selectbox(key="rlhf:world").set_value(
        "6 words, 3 tokens, 2 prompts (216 responses a prompt)"
    )  # the small world keeps the test quick
    at.number_input(key="rlhf:steps").set_value(320)
    at.multiselect(key="rlhf:methods").set_value(["grpo", "dpo"])
    at.button(key="rlhf:launch").click().run()
    assert not at.exception, [e.message for e in at.exception]
    ids = at.session_state["rlhf:runs"]
    assert len(ids) == 2
    from pglab import ui

    registry = ui.get_registry()
    for i in ids:
        assert registry.wait(i, 120) == "finished"
    time.sleep(0.1)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Gold reward vs KL" in s for s in charts)
    assert any("DPO reward margins" in s for s in charts)
    assert any("clip fraction" in s for s in charts)
    frames = [d.value for d in at.dataframe]
    table = next(f for f in frames if "win rate" in f.columns)
    assert list(table["method"])[:3] == ["SFT", "grpo", "dpo"]
    assert table["win rate"].iloc[0] == 50.0
    comps = [f for f in frames if "response" in f.columns]
    assert len(comps) == 2  # before and after
    assert {"response", "pi_SFT", "pi_theta", "pi*", "gold r*"} <= set(comps[1].columns)
    registry.clear()


def test_bad_setting_is_one_message():
    at = _page()
    at.selectbox(key="rlhf:world").set_value(
        "6 words, 3 tokens, 2 prompts (216 responses a prompt)"
    )
    at.number_input(key="rlhf:beta").set_value(0.0).run()
    assert not at.exception
    assert any("beta: 0.0 is out of range" in e.value for e in at.error)


def test_gym_pages_ignore_rlhf_runs():
    """An RLHF run (no Gymnasium env) active or stored must not break Train or Compare."""
    from pglab import ui

    AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    registry = ui.get_registry()
    run_id = registry.launch("rlhf", {"total_steps": 10_000_000}, seed=0)
    try:
        for page in ("train.py", "compare.py", "runs.py"):
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
            at.switch_page(f"pages/{page}").run()
            assert not at.exception, (page, [e.message for e in at.exception])
    finally:
        registry.stop(run_id)
        registry.clear()
