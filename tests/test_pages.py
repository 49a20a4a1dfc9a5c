"""The pages' behaviour under Streamlit's AppTest: launch from Train, errors, Compare bands, Runs.

Each test has its own store (``PGLAB_STORE``, see conftest.py), and so its own registry.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from pglab.metrics import label
from pglab.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(f"pages/{page}").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _array(v) -> np.ndarray:
    """Plotly 6+ sends numpy arrays as {"dtype", "bdata"} (base64); lists stay lists."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v if v is not None else [], dtype=float)


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figure specs on screen, by their title: st.plotly_chart's, and the live
    panel's (pglab.ui.livecharts: a component whose args hold each chart's spec)."""
    specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    for el in at.get("component_instance"):
        specs += [json.loads(c["spec"]) for c in json.loads(el.proto.json_args)["charts"]]
    return {spec["layout"].get("title", {}).get("text", ""): spec for spec in specs}


def test_train_launch_runs_in_background_and_charts_points():
    at = open_page("train.py")
    at.selectbox(key="train:algo").set_value("ppo").run()
    for name, value in {"num_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 2}.items():
        at.number_input(key=f"hp:ppo:{name}").set_value(value)
    at.number_input(key="train:steps").set_value(1024)
    at.number_input(key="train:seeds").set_value(2)
    at.button(key="train:launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]

    runs = Store().list_runs()
    assert sorted(r.seed for r in runs) == [0, 1]
    assert {r.algo for r in runs} == {"ppo"} and runs[0].config["n_steps"] == 32
    from pglab import ui

    registry = ui.get_registry()
    assert [registry.wait(r.id, 120) for r in runs] == ["finished", "finished"]
    at.run()
    assert not at.exception
    ret = next(spec for title, spec in charts(at).items() if title.startswith("Episode return"))
    smooth = [t for t in ret["data"] if t.get("showlegend", True) is not False]
    assert len(smooth) == 2  # one smoothed curve per seed
    xs = _array(smooth[0]["x"])
    assert len(xs) >= 5 and xs[-1] == 1024
    assert "Entropy" in charts(at)

    at.button(key="watch:go").click().run()  # watch the agent: an animated GIF of one episode
    assert not at.exception and not at.error
    assert any("greedy episode" in c for img in at.image for c in img.captions)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("hp:a2c:gamma", 1.5, "gamma"),
        ("train:seeds", 0, "seeds"),
        ("train:steps", 0, "total_steps"),
    ],
)
def test_invalid_input_names_the_field_and_starts_nothing(key, value, field):
    at = open_page("train.py")
    at.selectbox(key="train:algo").set_value("a2c").run()
    at.number_input(key=key).set_value(value)
    at.button(key="train:launch").click().run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith(f"{field}:"), [e.value for e in at.error]
    assert Store().list_runs() == []


@pytest.mark.parametrize(("typed", "ok"), [("2.5e-4", True), ("fast", False), ("0", False)])
def test_learning_rate_is_typed_in_scientific_notation(typed, ok):
    """Step sizes are text fields: '2.5e-4' keeps every digit; bad text names the field."""
    at = open_page("train.py")
    at.selectbox(key="train:algo").set_value("a2c").run()
    at.text_input(key="hp:a2c:learning_rate").set_value(typed)
    at.number_input(key="train:steps").set_value(40)
    at.button(key="train:launch").click().run()
    assert not at.exception
    runs = Store().list_runs()
    if ok:
        assert not at.error and [r.config["learning_rate"] for r in runs] == [2.5e-4]
        from pglab import ui

        ui.get_registry().wait(runs[0].id, 60)
    else:
        assert at.error and at.error[0].value.startswith("learning_rate:"), at.error
        assert runs == []


def _fake_group(store: Store, group: str, slope: float, seeds: int) -> list[str]:
    ids = []
    for s in range(seeds):
        rid = store.create_run(
            algo="ppo",
            env_id="CartPole-v1",
            config={"total_steps": 1000},
            seed=s,
            device="cpu",
            group=group,
            launch=f"L{group}",
        )
        store.append_metrics(
            rid,
            [
                {
                    "time/env_steps": float(k * 100),
                    "time/updates": float(k),
                    "time/wall_s": 0.1 * k,
                    "rollout/return_last20": slope * k + s,
                    "diag/grad_var": 1.0 / k,
                }
                for k in range(1, 11)
            ],
        )
        store.set_status(rid, "finished")
        ids.append(rid)
    return ids


def test_compare_draws_a_band_per_group_of_seeds():
    store = Store()
    ids = _fake_group(store, "slow", 1.0, 3) + _fake_group(store, "fast", 5.0, 3)
    at = open_page("compare.py")
    assert at.multiselect(key="cmp:launches").value == ["Lfast"]  # the newest launch
    at.multiselect(key="cmp:launches").set_value(["Lslow", "Lfast"]).run()
    assert not at.exception and not at.error
    spec = charts(at)[label("rollout/return_last20")]
    fills = [t for t in spec["data"] if t.get("fill") == "toself"]
    means = [t for t in spec["data"] if t.get("fill") != "toself"]
    assert len(fills) == 2 and len(means) == 2
    assert {t["name"] for t in means} == {"slow (n=3)", "fast (n=3)"}
    fast = next(t for t in means if t["name"].startswith("fast"))
    assert _array(fast["y"])[-1] == pytest.approx(51.0)  # 5 * 10 + mean seed offset 1
    table = at.dataframe[0].value
    assert list(table["group"]) == ["slow", "fast"] and list(table["n"]) == [3, 3]
    assert "None" not in table.to_string()
    runs = at.dataframe[1].value  # the runs as they are now, each counted once
    assert sorted(runs["run"]) == sorted(ids) and set(runs["status"]) == {"finished"}


def test_runs_page_lists_and_deletes_with_confirmation():
    store = Store()
    keep, gone = _fake_group(store, "g", 1.0, 2)
    at = open_page("runs.py")
    assert len(at.dataframe[0].value) == 2
    at.multiselect(key="runs:selected").set_value([gone]).run()
    at.button(key="runs:delete").click().run()
    assert at.warning and store.get_run(gone) is not None  # nothing deleted before confirming
    at.button(key="runs:confirm_yes").click().run()
    assert not at.exception
    assert [r.id for r in store.list_runs()] == [keep]


def test_gradient_lab_measures_estimators_on_the_short_corridor():
    at = open_page("gradient_lab.py")
    assert at.selectbox(key="gl:env").value == "FrozenLake-v1"  # cosines differ there
    at.selectbox(key="gl:env").set_value("pglab/ShortCorridor-v0").run()
    at.multiselect(key="gl:est").set_value(["total", "rtg", "rtg_const"])
    at.number_input(key="gl:m").set_value(8)
    at.number_input(key="gl:k").set_value(4)
    at.slider(key="gl:p").set_value(0.8)
    at.button(key="gl:go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = set(charts(at))
    assert {
        "Cosine similarity of the mean estimates",
        "Signed bias along g: (E ĝ − g)·g / |g|²",
        "Bias norm |E ĝ − g| / |g|",
    } <= titles
    corridor = next(s for t, s in charts(at).items() if t.startswith("Short corridor"))
    marker = next(t for t in corridor["data"] if t.get("name") == "current policy")
    assert _array(marker["x"])[0] == pytest.approx(0.8)
    assert list(at.dataframe[0].value["estimator"]) == ["total", "rtg", "rtg_const"]
    # both sweeps stay on the page; the batch sweep has a log m axis and 1/m reference lines
    at.button(key="gl:sweep_m").click().run()
    at.button(key="gl:sweep_l").click().run()
    assert not at.exception
    figs = charts(at)
    batch = next(f for t, f in figs.items() if t.startswith("Variance vs batch size"))
    assert batch["layout"]["xaxis"]["type"] == "log"
    assert any(str(t.get("name", "")).endswith(": 1/m") for t in batch["data"])
    assert "GAE: signed bias along g against λ" in figs


def test_gradient_lab_bias_demo_shows_the_batch_mean_bias_outside_its_ci():
    """One click: the corridor at m = 2, K = 5000, where rtg_const's -1/m = -0.5 along g is
    outside its CI and the leave-one-out baseline's CI covers 0."""
    at = open_page("gradient_lab.py")
    at.button(key="gl:demo").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not at.warning, [w.value for w in at.warning]
    assert at.number_input(key="gl:m").value == 2 and at.number_input(key="gl:k").value == 5000
    table = at.dataframe[0].value.set_index("estimator")
    assert table.loc["rtg_const", "along_hi"] < 0 and table.loc["rtg_time", "along_hi"] < 0
    lo, hi = table.loc["rtg_loo", ["along_lo", "along_hi"]]
    assert lo <= 0 <= hi


def _rerun_until(at: AppTest, cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)
        at.run()
        assert not at.exception, [e.message for e in at.exception]


def test_reproduce_page_stop_ends_a_running_job():
    at = open_page("reproduce.py")
    at.number_input(key="rep:runs:sb-fig13.1").set_value(1000).run()
    at.button(key="rep:go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    at.button(key="rep:stop").click().run()
    _rerun_until(at, lambda: any("Stopped after" in m.value for m in at.warning))
    assert not at.button(key="rep:go").disabled


def test_reproduce_page_draws_the_figure_with_the_reference_and_a_verdict():
    at = open_page("reproduce.py")
    assert at.info  # nothing run yet
    at.selectbox(key="rep:name").set_value("sb-fig13.2").run()
    at.number_input(key="rep:runs:sb-fig13.2").set_value(5)
    at.button(key="rep:go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    _rerun_until(at, lambda: at.success or at.warning)  # the job runs in the background
    verdict = [m.value for m in (*at.success, *at.warning)]
    assert verdict and "published result" in verdict[0]
    fig = next(f for t, f in charts(at).items() if t.startswith("Sutton & Barto Figure 13.2"))
    shapes = fig["layout"].get("shapes", [])
    assert any(s.get("y0") == -11.6 for s in shapes)  # v* marked
    assert {t["name"] for t in fig["data"]} >= {
        "REINFORCE alpha=2^-13",
        "with baseline alpha_theta=2^-9 alpha_w=2^-6",
    }


def test_chart_period_is_short_in_a_runs_first_minute_only() -> None:
    from types import SimpleNamespace

    from pglab.ui.live import CHART_REFRESH_EARLY_S, CHART_REFRESH_S, chart_period

    now = 1_000_000.0
    young = SimpleNamespace(status="running", started_at=now - 10)
    old = SimpleNamespace(status="running", started_at=now - 600)
    queued = SimpleNamespace(status="queued", started_at=None)  # nothing to draw yet
    ended = SimpleNamespace(status="finished", started_at=now - 5)
    assert CHART_REFRESH_EARLY_S < CHART_REFRESH_S
    assert chart_period([old, young], now) == CHART_REFRESH_EARLY_S
    assert chart_period([old], now) == CHART_REFRESH_S
    assert chart_period([old, queued], now) == CHART_REFRESH_S
    assert chart_period([old, ended], now) == CHART_REFRESH_S
