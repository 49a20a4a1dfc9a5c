"""The Sweeps page (AppTest, real store): a bad spec is refused, a sweep runs from the page,
the ranked table and plot show, and a promoted trial becomes a preset that Train lists."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pglab.presets import get_preset, presets_for, user_presets
from pglab.store import Store, default_store_path
from pglab.sweep import Sweep, parse_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "algo": "ppo",
    "settings": {"num_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 1},
    "budget": 512,
    "grid": {"learning_rate": [3e-4, 1e-3]},
    "seeds": 2,
    "objective": "final_iqm",
    "name": "page test",
}


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/sweeps.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_bad_spec_is_refused_on_the_page():
    at = _page()
    at.text_area(key="sw:spec").set_value('{"algo": "ppo", "seeds": 0}').run()
    at.button(key="sw:start").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["seeds: 0 is not allowed (an integer in [1, 1000])"]
    assert Store().list_runs() == []


def test_sweep_from_the_page_then_promote_a_trial(tmp_path):
    import json

    at = _page()
    at.text_area(key="sw:spec").set_value(json.dumps(SPEC)).run()
    at.button(key="sw:start").click().run()
    assert not at.exception and not at.error
    store = Store()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if len(runs) == 4 and all(r.status == "finished" for r in runs):
            break
        time.sleep(0.3)
    assert {r.status for r in store.list_runs()} == {"finished"}
    time.sleep(1.0)  # the sweep's loop scores the last trial within a poll
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["trial"]) != [] and table["objective"].notna().all()
    assert table["rank"].tolist() == [1, 2] and (table["objective"].diff().dropna() <= 0).all()
    assert (table["ci_low"] <= table["objective"]).all()

    best = int(table["trial"].iloc[0])
    at.text_input(key="sw:name").set_value("my-best-ppo").run()
    at.button(key="sw:promote").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "my-best-ppo" in at.success[0].value
    preset = get_preset("my-best-ppo")
    assert preset.settings["learning_rate"] == SPEC["grid"]["learning_rate"][best]
    assert preset.settings["total_steps"] == 512 and preset.env_id == "CartPole-v1"
    assert [p.name for p in user_presets(default_store_path())] == ["my-best-ppo"]
    assert "my-best-ppo" in [p.name for p in presets_for("ppo", "CartPole-v1")]
    at.button(key="sw:promote").click().run()  # the same name again: refused, one line
    assert at.error and "exists already" in at.error[0].value

    at.switch_page("pages/train.py").run()
    at.selectbox(key="train:algo").set_value("ppo").run()
    assert not at.exception
    picker = next(s for s in at.selectbox if s.label == "Preset")
    assert "my-best-ppo" in picker.options


def test_record_files_list_cli_sweeps(tmp_path):
    store = Store()
    sweep = Sweep(parse_spec({**SPEC, "grid": {"learning_rate": [1e-3]}}), store)
    sweep.run()
    at = _page()
    options = at.selectbox(key="sw:pick").options
    assert any(sweep.id in o for o in options)
    assert at.dataframe[0].value["status"].tolist() == ["finished"]
