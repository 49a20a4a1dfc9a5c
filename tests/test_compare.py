"""pglab.compare and `python -m pglab compare`: groups by launch, one run per seed, aligned
curves, bootstrap intervals clipped to bounds, the summary, against hand-computed values."""

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from pglab import compare


def run(steps, ret, **extra):
    return pd.DataFrame({"time/env_steps": steps, "rollout/return_last20": ret, **extra})


def test_align_interpolates_inside_each_run_and_is_nan_outside():
    frames = {
        "a": run([0.0, 10.0], [0.0, 100.0]),
        "b": run([5.0, 20.0], [1.0, 4.0]),  # y = 1 + (x - 5) / 5
    }
    out = compare.align(frames, compare.RETURN, grid=np.array([0.0, 5.0, 7.5, 10.0, 20.0]))
    np.testing.assert_allclose(out["a"].to_numpy(), [0.0, 50.0, 75.0, 100.0, np.nan])
    np.testing.assert_allclose(out["b"].to_numpy(), [np.nan, 1.0, 1.5, 2.0, 4.0])
    grid = compare.shared_grid(frames, n_grid=5)
    np.testing.assert_allclose(grid, [0.0, 5.0, 10.0, 15.0, 20.0])


def test_align_skips_missing_values_and_unsorted_rows():
    f = run([20.0, 0.0, 10.0], [4.0, 0.0, np.nan])
    out = compare.align({"r": f}, compare.RETURN, grid=np.array([0.0, 10.0, 20.0]))
    np.testing.assert_allclose(out["r"].to_numpy(), [0.0, 2.0, 4.0])  # NaN row ignored


def test_per_run_summaries():
    f = run(
        [0.0, 10.0, 20.0, 30.0],
        [0.0, 10.0, 20.0, np.nan],
        **{"diag/grad_var": [1.0, 3.0, np.nan, 5.0]},
    )
    assert compare.final_value(f) == 20.0
    assert compare.steps_to_threshold(f, 15.0) == 20.0
    assert compare.steps_to_threshold(f, 0.0) == 0.0
    assert math.isnan(compare.steps_to_threshold(f, 25.0))
    assert math.isnan(compare.steps_to_threshold(f, None))
    assert compare.normalized_auc(f) == pytest.approx(10.0)  # mean of y = x on [0, 20]
    assert compare.normalized_auc(run([5.0], [7.0])) == 7.0
    assert compare.mean_metric(f, "diag/grad_var") == pytest.approx(3.0)
    assert math.isnan(compare.mean_metric(f, "diag/clip_fraction"))


def test_metric_columns_returns_first_and_only_reported():
    f = pd.DataFrame(
        {
            "update": [1, 2],
            "loss/policy": [0.1, 0.2],
            "rollout/return_last20": [1.0, 2.0],
            "diag/clip_fraction": [np.nan, np.nan],
        }
    )
    assert compare.metric_columns({"r": f}) == ["rollout/return_last20", "loss/policy"]


@dataclass(frozen=True)
class Rec:
    """The fields of a RunRecord that grouping reads."""

    id: str
    seed: int
    launch: str
    group: str | None = None
    algo: str = "ppo"
    env_id: str = "CartPole-v1"
    config: dict = field(default_factory=dict)
    env_steps: int = 100
    created_at: float = 0.0
    name: str = ""


def test_groups_by_launch_keep_one_run_per_seed_and_say_which_were_dropped():
    recs = [
        Rec("a0", 0, "L1", "PPO", created_at=1.0),
        Rec("a1", 1, "L1", "PPO", created_at=2.0),
        Rec("a0b", 0, "L1", "PPO", env_steps=50, created_at=3.0),  # seed 0 again, shorter
        Rec("b0", 0, "L2", "PPO", created_at=0.5),  # same label, another launch
        Rec("c0", 0, "L2", "REINFORCE", created_at=0.6),
    ]
    groups = compare.make_groups(recs, "launch")
    assert [g.name for g in groups] == ["PPO [L2]", "REINFORCE", "PPO [L1]"]  # oldest first
    l1 = groups[2]
    assert l1.run_ids == ("a0", "a1") and l1.seeds == (0, 1) and l1.launch == "L1"
    assert l1.dropped == (("a0b", "seed 0 again (kept run a0)"),)
    by_tag = compare.make_groups(recs, "tag")
    assert [(g.name, g.n) for g in by_tag] == [("PPO", 2), ("REINFORCE", 1)]
    # seed 0 three times across launches: the run that got furthest, then the newest
    assert by_tag[0].run_ids == ("a0", "a1") and len(by_tag[0].dropped) == 2
    cfg = [Rec("x", 0, "L1", config={"lr": 1}), Rec("y", 1, "L2", config={"lr": 1}),
           Rec("z", 2, "L3", config={"lr": 2})]  # fmt: skip
    assert [g.n for g in compare.make_groups(cfg, "config")] == [2, 1]
    assert [g.n for g in compare.make_groups(cfg, "run")] == [1, 1, 1]
    with pytest.raises(ValueError, match="group by: 'seed' is not allowed"):
        compare.make_groups(cfg, "seed")


def _group(ids, env="CartPole-v1"):
    return compare.Group("G", "G", tuple(ids), tuple(range(len(ids))), "L1", env)


def test_curve_covers_only_the_span_every_seed_has_unless_asked():
    """Ragged lengths: the common curve stops where the shortest run stops, with n constant;
    span="all" goes on with the runs that remain and says n varies."""
    frames = {
        "a": run([0.0, 100.0], [0.0, 100.0]),
        "b": run([0.0, 50.0], [10.0, 60.0]),
        "c": run([0.0, 100.0], [20.0, 120.0]),
    }
    c = compare.group_curve(frames, _group("abc"), compare.RETURN, n_grid=6, span="common")
    np.testing.assert_allclose(c.x, [0, 10, 20, 30, 40, 50])
    np.testing.assert_allclose(c.mean, c.x + 10.0)
    assert (c.n == 3).all() and not c.varies
    assert (c.low < c.mean).all() and (c.high > c.mean).all()
    full = compare.group_curve(frames, _group("abc"), compare.RETURN, n_grid=5, span="all")
    np.testing.assert_allclose(full.x, [0, 25, 50, 75, 100])
    np.testing.assert_array_equal(full.n, [3, 3, 3, 2, 2])
    assert full.varies
    np.testing.assert_allclose(full.mean[3:], [85.0, 110.0])  # runs a and c only


def test_curve_of_one_seed_has_no_band_and_nan_stretches_are_skipped():
    f = run([0.0, 10.0, 20.0, 30.0], [1.0, np.nan, 3.0, 4.0])  # NaN: no episode ended yet
    c = compare.group_curve({"a": f}, _group("a"), compare.RETURN, n_grid=4)
    np.testing.assert_allclose(c.mean, [1.0, 2.0, 3.0, 4.0])
    assert np.isnan(c.low).all() and np.isnan(c.high).all() and c.n_runs == 1
    assert compare.group_curve({"a": f}, _group("a"), "loss/policy") is None


def test_bands_stay_inside_the_return_range():
    """CartPole returns lie in [0, 500]: seeds at 0 and 500 give a band clipped to it."""
    frames = {k: run([0.0, 10.0], [v, v]) for k, v in {"a": 0.0, "b": 500.0, "c": 500.0}.items()}
    c = compare.group_curve(frames, _group("abc"), compare.RETURN, n_grid=3,
                            bounds=compare.metric_bounds(compare.RETURN, "CartPole-v1"))  # fmt: skip
    assert (c.low >= 0.0).all() and (c.high <= 500.0).all()
    assert compare.metric_bounds("rollout/ep_length_mean", "CartPole-v1") == (0.0, 500.0)
    assert compare.metric_bounds("diag/grad_var", None) == (0.0, math.inf)
    assert compare.metric_bounds(compare.RETURN, "Acrobot-v1") == (-500.0, 0.0)
    assert compare.metric_bounds("loss/policy", "CartPole-v1") is None


def test_auc_over_a_window_and_the_early_grad_variance():
    f = run([0.0, 10.0, 20.0, 40.0], [0.0, 10.0, 20.0, 40.0], **{"diag/grad_var": [8, 4, 2, 1]})
    assert compare.normalized_auc(f, window=(10.0, 30.0)) == pytest.approx(20.0)
    assert math.isnan(compare.normalized_auc(f, window=(10.0, 50.0)))  # run ends before 50
    assert compare.early_median(f, "diag/grad_var", 10.0) == pytest.approx(6.0)
    g = run([0.0, 100.0], [0.0, 0.0], **{"diag/grad_var": [5.0, 5.0]})
    # 20% of the shortest run (40 steps) is 8, widened to the latest first point (0): 8
    assert compare.early_window({"f": f, "g": g}) == pytest.approx(8.0)


def test_summarize_numbers_by_hand():
    steps = [0.0, 50.0, 100.0]
    frames = {
        "p0": run(steps, [0.0, 100.0, 200.0], **{"diag/grad_var": [2.0, 2.0, 2.0]}),
        "p1": run(steps, [0.0, 50.0, 100.0], **{"diag/grad_var": [4.0, 4.0, 4.0]}),
        "p2": run(steps, [0.0, 60.0, 120.0], **{"diag/grad_var": [6.0, 6.0, 6.0]}),
        "q0": run([0.0, 50.0], [0.0, 10.0]),
    }
    p = compare.Group("P", "P", ("p0", "p1", "p2"), (0, 1, 2), "L1", "CartPole-v1")
    q = compare.Group("Q", "Q", ("q0",), (0,), "L2", "CartPole-v1")
    result = compare.summarize(frames, [p, q], threshold=100.0, reps=500)
    assert result["auc_window"] == [0.0, 50.0]  # the range all four runs cover
    gp, gq = result["groups"]
    assert gp["n"] == 3 and gp["run_ids"] == ["p0", "p1", "p2"] and gp["launch"] == "L1"
    assert gp["final_mean"] == pytest.approx(140.0) and gp["final_iqm"] == pytest.approx(140.0)
    lo, hi = gp["final_ci"]
    assert 100.0 <= lo < 140.0 < hi <= 200.0  # inside the range of the three seeds
    assert gp["auc"] == pytest.approx((50 + 25 + 30) / 3)  # mean of y over [0, 50]
    assert gp["steps_to_threshold"] == [50.0, 100.0, 100.0] and gp["reached"] == 3
    assert gp["grad_var_early"] == pytest.approx(4.0)
    assert gq["steps_to_threshold"] == [None] and gq["reached"] == 0
    assert gq["final_ci"] == [None, None] and gq["grad_var_early"] is None  # one seed
    assert "Highest AUC: P" in result["reading"] and "One seed only in Q" in result["reading"]
    table = compare.summary_table(result)
    assert not table.isna().any().any() and "None" not in table.to_string()
    assert table.loc[1, "final mean [95% CI]"] == "10.0"  # one seed: no interval
    assert table.loc[0, "steps to threshold"] == "median 100, 3/3 reached"
    assert table.loc[1, "steps to threshold"] == "0/1 reached"


def test_select_runs_by_launch_group_or_id():
    recs = [Rec("aa11", 0, "L1", "PPO", created_at=1.0, name="ppo s0"),
            Rec("aa22", 1, "L1", "PPO", created_at=1.0, name="ppo s1"),
            Rec("bb33", 0, "L2", "A2C", created_at=2.0, name="a2c s0")]  # fmt: skip
    assert [r.id for r in compare.select_runs(recs, [])] == ["bb33"]  # the newest launch
    assert [r.id for r in compare.select_runs(recs, ["L1"])] == ["aa11", "aa22"]
    assert [r.id for r in compare.select_runs(recs, ["A2C", "aa2"])] == ["bb33", "aa22"]
    old = Rec("cc44", 0, None, "old", created_at=0.1)  # a schema-1 run: no launch recorded
    assert compare.select_runs([*recs, old], ["Lcc44"]) == [old]
    assert compare.make_groups([old])[0].launch == "Lcc44"
    with pytest.raises(ValueError, match="'aa' matches 2 runs"):
        compare.select_runs(recs, ["aa"])
    with pytest.raises(ValueError, match="'zz' is not a launch, group or run"):
        compare.select_runs(recs, ["zz"])


def _store_with_runs(path):
    """A real store: launch L1 'good' (3 seeds, seed 0 twice), launch L2 'bad' (2 seeds)."""
    from pglab.store import Store

    store = Store(path)

    def add(seed, launch, group, slope, n=5):
        rid = store.create_run(algo="ppo", env_id="CartPole-v1", config={"slope": slope},
                               seed=seed, device="cpu", group=group, launch=launch)  # fmt: skip
        store.append_metrics(rid, [{"time/env_steps": 100.0 * k, compare.RETURN: slope * k,
                                    "diag/grad_var": 1.0 / slope} for k in range(n)])  # fmt: skip
        store.set_status(rid, "finished")
        return rid

    ids = [add(s, "L1", "good", 100.0 + s) for s in range(3)]
    ids.append(add(0, "L1", "good", 1.0, n=2))  # a repeated seed 0 that stopped early
    ids += [add(s, "L2", "bad", 10.0) for s in range(2)]
    return store, ids


def test_cli_compare_json_same_numbers_as_the_module(tmp_path, capsys):
    from pglab.cli import main

    store, ids = _store_with_runs(tmp_path / "s.sqlite")
    rc = main(["compare", "L1", "bad", "--store", str(store.path), "--threshold", "300", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    good, bad = data["groups"]
    for g in (good, bad):
        assert set(g) >= {"name", "launch", "n", "run_ids", "metric", "final_mean", "final_ci",
                          "final_iqm", "iqm_ci", "auc", "steps_to_threshold"}  # fmt: skip
    assert (good["name"], good["launch"], good["n"]) == ("good", "L1", 3)
    assert good["run_ids"] == ids[:3] and good["dropped"][0]["run_id"] == ids[3]
    assert good["final_mean"] == pytest.approx(404.0)  # 4 * (100 + 101 + 102) / 3
    assert good["steps_to_threshold"] == [300.0, 300.0, 300.0]
    assert bad["steps_to_threshold"] == [None, None] and bad["final_ci"] == [40.0, 40.0]
    records = compare.select_runs(store.list_runs(), ["L1", "bad"])
    groups = compare.make_groups(records)
    frames = {r.id: store.metrics(r.id) for r in records}
    assert compare.summarize(frames, groups, threshold=300.0)["groups"] == data["groups"]
    assert main(["compare", "--store", str(store.path)]) == 0  # text table: the newest launch
    out = capsys.readouterr().out
    assert "bad" in out and "good" not in out and "None" not in out
    assert main(["compare", "L1", "--metric", "nope", "--store", str(store.path)]) == 2
    assert "--metric: 'nope' is not reported" in capsys.readouterr().err


def test_train_seeds_and_group_form_one_launch_that_a_later_call_joins(tmp_path, capsys):
    from pglab.cli import main
    from pglab.store import Store

    path = tmp_path / "t.sqlite"
    small = ["--algo", "ppo", "--steps", "64", "--set", "num_envs=2", "--set", "n_steps=32",
             "--set", "batch_size=32", "--store", str(path), "--json"]  # fmt: skip
    assert main(["train", *small, "--seeds", "0-1", "--group", "mine"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["seed"] for r in first["runs"]] == [0, 1] and first["group"] == "mine"
    assert main(["train", *small, "--seed", "2", "--group", "mine"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["launch"] == first["launch"] and second["group"] == "mine"
    runs = Store(path).list_runs()
    assert {r.launch for r in runs} == {first["launch"]} and sorted(r.seed for r in runs) == [
        0,
        1,
        2,
    ]
    assert main(["train", *small, "--seeds", "0-2,1"]) == 2
    assert "--seeds: '0-2,1' names a seed twice" in capsys.readouterr().err


def test_parse_seeds():
    from pglab.cli.train import parse_seeds

    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5] and parse_seeds("3") == [3]
    assert parse_seeds("0-1,7") == [0, 1, 7]
    for bad, msg in (("4-1", "runs backwards"), ("a", "not a seed list"), ("0-99", "out of range")):
        with pytest.raises(ValueError, match=msg):
            parse_seeds(bad)


def test_downloads_have_plain_names_and_the_html_works_offline():
    import io

    from pglab import ui

    assert ui.download_name("curves", "rollout/return_last20 · x", ext="csv") == (
        "pglab-curves-rollout-return_last20-x.csv"
    )
    frames = {"a": run([0.0, 10.0], [1.0, 2.0]), "b": run([0.0, 10.0], [3.0, 4.0])}
    g = _group("ab")
    curves = compare.group_curves(frames, [g], compare.RETURN, n_grid=3)
    result = compare.summarize(frames, [g], reps=100)
    fig = ui.band_figure(curves, title="t")
    payloads = ui.download_payloads(fig, result, compare.curves_frame(curves), compare.RETURN)
    for *_, file_name, _mime in payloads:
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[a-z]+", file_name), file_name
    html = payloads[0][1]()
    assert not re.search(r"<script[^>]*src=", html)  # nothing loaded from a CDN
    assert len(html) > 1_000_000  # plotly.js is inside
    back = pd.read_parquet(io.BytesIO(payloads[4][1]()))
    assert list(back.columns) == ["group", "time/env_steps", "n", "stat", "value", "ci_low",
                                  "ci_high"]  # fmt: skip
    np.testing.assert_allclose(back["value"], [2.0, 2.5, 3.0])
    assert json.loads(payloads[2][1])["groups"][0]["n"] == 2


def test_reference_band_of_a_preset_and_the_runs_that_match_it():
    from pglab import reference, ui
    from pglab.presets import get_preset

    assert "ppo-cartpole-zoo" in reference.available()
    band = reference.reference_band("ppo-cartpole-zoo")
    assert band.seeds >= 10 and band.meta["env_id"] == "CartPole-v1"
    assert (band.p10 <= band.median + 1e-9).all() and (band.median <= band.p90 + 1e-9).all()
    assert (band.p10 >= 0).all() and (band.p90 <= 500).all() and np.all(np.diff(band.env_steps) > 0)
    preset = get_preset("ppo-cartpole-zoo")
    config = preset.config(total_steps=300_000).to_dict()  # a longer run of the preset
    assert reference.match_preset("ppo", config) == "ppo-cartpole-zoo"
    assert reference.match_preset("ppo", {**config, "learning_rate": 5e-4}) is None
    assert reference.band_for_run("ppo", config) is band
    assert reference.reference_band("no-such-preset") is None
    fill, median = ui.reference_traces(band)
    assert fill.fill == "toself" and len(fill.x) == 2 * len(band.env_steps)
    np.testing.assert_allclose(median.y, band.median)


def test_one_click_ladder_is_one_launch_with_a_group_per_rung(tmp_path):
    """The page's ladder through a real registry: 6 rungs x 1 seed, one launch id, groups in
    rung order (tiny budget: one update each)."""
    from pglab import ui
    from pglab.engine import Registry
    from pglab.presets import ladder
    from pglab.store import Store

    registry = Registry(Store(tmp_path / "l.sqlite"), max_concurrent=1)
    launch, ids = ui.launch_ladder(registry, "CartPole-v1", [0], 200)
    for rid in ids:
        assert registry.wait(rid, 120) == "finished"
    records = compare.select_runs(registry.store.list_runs(), [launch])
    groups = compare.make_groups(records)
    assert [g.name for g in groups] == [f"{lab} (CartPole-v1)" for lab, _, _ in ladder("x", 1)]
    assert {g.launch for g in groups} == {launch} and all(g.n == 1 for g in groups)
    assert ui.ladder_launches(registry.store.list_runs()) == [launch]  # the one-click reload
    registry.clear()


def test_compare_page_draws_the_reference_band_and_counts_each_seed_once():
    """AppTest of the page: runs of the ppo-cartpole-zoo preset (seed 0 recorded twice) get
    the preset's reference band behind them; the repeated seed is listed, not counted."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from pglab.presets import get_preset
    from pglab.store import Store

    store = Store()  # $PGLAB_STORE of this test (conftest)
    config = get_preset("ppo-cartpole-zoo").config().to_dict()
    ids = []
    for seed in (0, 1, 0):
        rid = store.create_run(algo="ppo", env_id="CartPole-v1", config=config, seed=seed,
                               device="cpu", group="zoo", launch="Lzoo")  # fmt: skip
        rows = [{"time/env_steps": 1000.0 * k, "time/updates": float(k), "time/wall_s": 0.1 * k,
                 compare.RETURN: 40.0 * k + seed} for k in range(1, 11)]  # fmt: skip
        store.append_metrics(rid, rows)
        store.set_status(rid, "finished")
        ids.append(rid)
    at = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=60).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    spec = next(c.proto.spec for c in at.get("plotly_chart"))
    names = [t.get("name", "") for t in json.loads(spec)["data"]]
    assert names[0].startswith("ppo-cartpole-zoo reference (10 seeds")  # drawn first: behind
    assert "zoo (n=2)" in names
    summary, runs = at.dataframe[0].value, at.dataframe[1].value
    assert list(summary["n"]) == [2] and list(summary["dropped"]) == [1]
    counted = dict(zip(runs["run"], runs["counted"]))
    assert counted[ids[2]] == "yes" and counted[ids[0]].startswith("no: seed 0 again")
