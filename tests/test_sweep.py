"""Sweeps without Ray: the spec's validation, the objectives' exact maths, the local executor,
an Optuna search and a driver that dies. The Ray executor has tests/test_sweep_ray.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pglab.cli import main
from pglab.store import Store
from pglab.sweep import Sweep, parse_spec
from pglab.sweep.objective import bootstrap_ci, curve, intermediate, iqm, run_score, trial_score

ROOT = Path(__file__).resolve().parents[1]
TINY = {"num_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 1}
GRID = {
    "algo": "ppo",
    "env_id": "CartPole-v1",
    "settings": TINY,
    "budget": 1024,
    "grid": {"learning_rate": [3e-4, 1e-3], "gae_lambda": [0.8, 0.95]},
    "seeds": 2,
    "objective": "auc",
}


# -- the spec ---------------------------------------------------------------------------------
def test_spec_expands_a_grid_in_order_and_fills_the_budget():
    spec = parse_spec(GRID)
    assert spec.kind == "grid" and spec.trials == 4 and spec.seeds == (0, 1)
    points = spec.grid_points()
    assert points[0] == {"learning_rate": 3e-4, "gae_lambda": 0.8}
    assert points[3] == {"learning_rate": 1e-3, "gae_lambda": 0.95}
    settings = spec.run_settings(points[1])
    assert settings["total_steps"] == 1024 and settings["num_envs"] == 4
    assert settings["env_id"] == "CartPole-v1" and settings["gae_lambda"] == 0.95
    assert parse_spec({"algo": "ppo", "seeds": [3, 7]}).seeds == (3, 7)
    assert parse_spec({"algo": "ppo", "seeds": 5}).kind == "seeds"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour:"),
        ({"algo": "dqn"}, "algo:"),
        ({"grid": {"learning_rat": [1e-3]}}, "grid.learning_rat:"),
        ({"grid": {"learning_rate": [3e-4, 5.0]}}, "grid.learning_rate:"),
        ({"grid": {"learning_rate": []}}, "grid.learning_rate:"),
        ({"grid": {"total_steps": [10, 20]}}, "grid.total_steps:"),
        ({"grid": {"batch_size": [64, 4096]}}, "grid.batch_size: 4096 is larger"),
        ({"seeds": 0}, "seeds:"),
        ({"seeds": [1, 1]}, "seeds:"),
        ({"objective": "best"}, "objective:"),
        ({"objective": "steps_to_threshold"}, "threshold:"),
        ({"threshold": 100}, "threshold:"),
        ({"budget": 0}, "budget:"),
        ({"max_concurrent": 0}, "max_concurrent:"),
        ({"settings": {"gamma": 2.0}}, "settings.gamma:"),
        ({"env_id": "NoSuchEnv-v0"}, "env_id:"),
        ({"trials": 3}, "trials:"),
        ({"search": {"learning_rate": {"low": 1e-4, "high": 1e-2}}}, "grid:"),
    ],
)
def test_a_bad_spec_names_the_field(change, field):
    with pytest.raises(ValueError) as err:
        parse_spec({**GRID, **change})
    assert str(err.value).startswith(field), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("search", "field"),
    [
        ({"learning_rate": {"low": 0.0, "high": 1e-2, "log": True}}, "search.learning_rate.low:"),
        ({"learning_rate": {"low": 1e-2, "high": 1e-3}}, "search.learning_rate:"),
        ({"learning_rate": {"low": 1e-4, "high": 3.0}}, "search.learning_rate.high:"),
        ({"learning_rate": {"low": 1e-4}}, "search.learning_rate:"),
        ({"activation": {"low": 1, "high": 2}}, "search.activation:"),
        ({"activation": {"choices": ["tanh", "gelu"]}}, "search.activation:"),
        ({"n_epochs": {"low": 1.5, "high": 4}}, "search.n_epochs.low:"),
        ({"batch_size": {"low": 64, "high": 4096}}, "search.batch_size: 4096"),
    ],
)
def test_a_bad_search_names_the_field(search, field):
    base = {k: v for k, v in GRID.items() if k != "grid"}
    with pytest.raises(ValueError) as err:
        parse_spec({**base, "search": search, "trials": 4})
    assert str(err.value).startswith(field), str(err.value)


def test_a_bad_spec_starts_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GRID, "grid": {"learning_rate": [3e-4, -1.0]}}))
    code = main(["sweep", str(bad), "--executor", "ray", "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("pglab sweep: error: grid.learning_rate:") and "Traceback" not in err
    assert Store(tmp_path / "s.sqlite").list_runs() == []
    assert not (tmp_path / "sweeps").exists()
    bad.write_text("{not json")
    assert main(["sweep", str(bad)]) == 2
    assert "spec: not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GRID))
    assert main(["sweep", str(good), "--address", "127.0.0.1:1"]) == 2
    assert "address: only used with --executor ray" in capsys.readouterr().err
    assert main(["sweep", str(good), "--executor", "ray", "--address", "nohost"]) == 2
    assert "address: 'nohost' is not allowed" in capsys.readouterr().err


# -- objectives: exact values -------------------------------------------------------------------
def _rows(xs, ys):
    return [
        {"time/env_steps": x, **({} if y is None else {"rollout/return_last20": y})}
        for x, y in zip(xs, ys)
    ]


def test_run_scores_by_hand():
    x, y = curve(_rows([50, 100, 200], [None, 10.0, 20.0]))
    assert x.tolist() == [100.0, 200.0] and y.tolist() == [10.0, 20.0]
    assert run_score(x, y, "final_iqm", 400) == 20.0
    # area: [0,100] held at 10 -> 1000, [100,200] trapezoid 15 -> 1500, [200,400] held 20 -> 4000
    assert run_score(x, y, "auc", 400) == pytest.approx(6500 / 400)
    x, y = np.array([100.0, 200.0, 300.0]), np.array([10.0, 50.0, 200.0])
    assert run_score(x, y, "steps_to_threshold", 1000, threshold=195.0) == 300.0
    assert run_score(x, y, "steps_to_threshold", 1000, threshold=500.0) == 1000.0  # censored
    assert run_score(np.array([]), np.array([]), "final_iqm", 100) is None


def test_iqm_and_bootstrap_ci():
    assert iqm([1, 2, 3, 4, 100, 5, 6, 7]) == 4.5  # drops 1, 2 and 7, 100
    assert iqm([1.0, 2.0, 9.0]) == 4.0  # n < 4: the mean
    assert bootstrap_ci([5.0]) is None
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert 1.0 <= lo < iqm([1, 2, 3, 4, 5, 6]) < hi <= 6.0
    assert bootstrap_ci([1.0, 2.0, 3.0, 4.0]) == bootstrap_ci([1.0, 2.0, 3.0, 4.0])  # seeded


def test_trial_score_and_intermediate_cut():
    a = (np.array([100.0, 200.0]), np.array([10.0, 30.0]))
    b = (np.array([100.0, 200.0]), np.array([20.0, 50.0]))
    score = trial_score({"a": a, "b": b}, "final_iqm", 200)
    assert score.value == 40.0 and score.n == 2 and score.per_run == {"a": 30.0, "b": 50.0}
    assert score.ci is not None and 30.0 <= score.ci[0] <= score.ci[1] <= 50.0
    assert intermediate([a, b], "final_iqm", 150) == 15.0  # each curve cut at 150 steps
    steps = trial_score({"a": a}, "steps_to_threshold", 200, threshold=25.0)
    assert steps.value == 200.0 and steps.ci is None


# -- the local executor ---------------------------------------------------------------------------
def test_local_grid_sweep_lands_each_trial_as_a_launch(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    sweep = Sweep(parse_spec({**GRID, "max_concurrent": 2}), store)
    result = sweep.run()
    assert result["status"] == "finished" and len(result["trials"]) == 4
    runs = store.list_runs()
    assert len(runs) == 8 and {r.status for r in runs} == {"finished"}
    assert all(r.group.startswith(f"sweep {sweep.id} · ") for r in runs)
    for trial in result["trials"]:
        mine = [r for r in runs if r.id in trial["run_ids"]]
        assert {r.launch for r in mine} == {trial["launch"]} and len(mine) == 2
        assert {r.seed for r in mine} == {0, 1}
        assert mine[0].config["learning_rate"] == trial["settings"]["learning_rate"]
        assert trial["status"] == "finished" and trial["n"] == 2
        assert trial["objective"] is not None
    assert len({t["launch"] for t in result["trials"]}) == 4
    values = [t["objective"] for t in result["trials"]]
    assert result["best"]["objective"] == max(values)
    record = json.loads(sweep.record_path.read_text())
    assert record["status"] == "finished" and record["launch"] == sweep.id


def test_optuna_search_keeps_its_study_beside_the_store(tmp_path):
    import optuna

    store = Store(tmp_path / "runs.sqlite")
    spec = {
        "algo": "ppo",
        "settings": TINY,
        "budget": 640,
        "search": {"learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}},
        "trials": 3,
        "seeds": 2,
        "objective": "final_iqm",
        "max_concurrent": 2,
    }
    sweep = Sweep(parse_spec(spec), store)
    result = sweep.run()
    assert len(result["trials"]) == 3
    study = optuna.load_study(study_name=sweep.id, storage=result["optuna_storage"])
    assert result["optuna_storage"] == f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    assert len(study.trials) == 3
    for ot, trial in zip(study.trials, result["trials"]):
        assert ot.user_attrs["launch"] == trial["launch"]
        assert ot.params["learning_rate"] == trial["settings"]["learning_rate"]
        assert 1e-4 <= ot.params["learning_rate"] <= 3e-3
        # the seeds' objective at each tenth of the budget both seeds passed (64 steps a tenth)
        assert ot.intermediate_values and all(s % 64 == 0 for s in ot.intermediate_values)
        if ot.state == optuna.trial.TrialState.COMPLETE:
            assert ot.value == pytest.approx(trial["objective"])
        runs = [store.get_run(r) for r in trial["run_ids"]]
        assert {r.launch for r in runs} == {trial["launch"]}


def test_a_dead_driver_leaves_its_runs_interrupted(tmp_path):
    spec = tmp_path / "long.json"
    spec.write_text(json.dumps({**GRID, "budget": 5_000_000, "grid": {"gae_lambda": [0.9]}}))
    env = {**os.environ, "PGLAB_STORE": str(tmp_path / "runs.sqlite")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pglab", "sweep", str(spec)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = Store(tmp_path / "runs.sqlite").list_runs()
            if len(runs) == 2 and all(r.env_steps > 0 for r in runs):
                break
            time.sleep(0.3)
        else:
            pytest.fail("the sweep's runs never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    runs = Store(tmp_path / "runs.sqlite").list_runs()
    assert {r.status for r in runs} == {"interrupted"}
    assert all(r.env_steps > 0 for r in runs)


# -- user presets in the store ------------------------------------------------------------------
def test_user_presets_round_trip_and_validate(tmp_path):
    from pglab.presets import get_preset, presets_for, user_presets

    store = Store(tmp_path / "runs.sqlite")
    store.save_preset("fast-ppo", "ppo", "CartPole-v1", {"learning_rate": 1e-3, "env_id": "x"})
    (preset,) = user_presets(tmp_path / "runs.sqlite")
    assert preset.settings == {"learning_rate": 1e-3} and preset.env_id == "CartPole-v1"
    assert preset.config().learning_rate == 1e-3
    for name, settings, field in [
        ("fast-ppo", {}, "name: a user preset 'fast-ppo' exists already"),
        ("ppo-cartpole-zoo", {}, "name: 'ppo-cartpole-zoo' is a library preset"),
        ("no spaces", {}, "name: 'no spaces' is not allowed"),
        ("ok", {"gamma": 3.0}, "gamma:"),
    ]:
        with pytest.raises(ValueError) as err:
            store.save_preset(name, "ppo", "CartPole-v1", settings)
        assert str(err.value).startswith(field), str(err.value)
    store.save_preset("fast-ppo", "ppo", "CartPole-v1", {"n_epochs": 4}, replace=True)
    assert user_presets(tmp_path / "runs.sqlite")[0].settings == {"n_epochs": 4}
    assert user_presets(Store(tmp_path / "other.sqlite").path) == []  # per store
    # the conftest points PGLAB_STORE at tmp_path / runs.sqlite: Train's listing sees it
    assert [p.name for p in presets_for("ppo", "CartPole-v1")] == ["ppo-cartpole-zoo", "fast-ppo"]
    assert get_preset("fast-ppo").settings == {"n_epochs": 4}
    store.delete_preset("fast-ppo")
    assert user_presets(tmp_path / "runs.sqlite") == []
    assert user_presets(tmp_path / "missing.sqlite") == []


def test_cli_json_last_line(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**GRID, "grid": {"gae_lambda": [0.8, 0.95]}, "seeds": [4]}))
    assert main(["sweep", str(spec), "--json", "--store", str(tmp_path / "s.sqlite")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("sweep S") and "2 trial(s) x 1 seed(s)" in lines[0]
    result = json.loads(lines[-1])
    assert result["launch"].startswith("S") and len(result["trials"]) == 2
    for trial in result["trials"]:
        assert set(trial) >= {"settings", "run_ids", "objective", "status", "launch", "ci"}
        assert trial["settings"]["gae_lambda"] in (0.8, 0.95) and len(trial["run_ids"]) == 1
        assert trial["ci"] is None  # one seed: no interval
    assert result["best"]["objective"] == max(t["objective"] for t in result["trials"])
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "pglab", "runs", "--json", "--store", str(tmp_path / "s.sqlite")],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    rows = runs if isinstance(runs, list) else runs["runs"]
    assert {r["seed"] for r in rows} == {4}
    # each trial's run trained in a process of its own, not the sweep's
    assert all(r["worker_pid"] not in (None, os.getpid()) and r["worker_host"] for r in rows)


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_pause_resume_and_stop_the_whole_sweep(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    spec = parse_spec({**GRID, "budget": 5_000_000, "grid": {"gae_lambda": [0.8, 0.9, 0.95]}})
    sweep = Sweep(spec, store)  # 6 runs on 2 processes: 4 wait queued
    sweep.start()
    assert _wait(lambda: sum(r.env_steps > 0 for r in store.list_runs()) >= 2)
    sweep.pause()
    assert sweep.status == "paused"
    assert _wait(lambda: {r.status for r in store.list_runs()} == {"paused"})
    time.sleep(1.0)  # a pause lands between updates: the one under way still finishes
    steps = {r.id: r.env_steps for r in store.list_runs()}
    time.sleep(1.0)
    assert {r.id: r.env_steps for r in store.list_runs()} == steps  # nothing trains
    sweep.resume()
    assert _wait(lambda: sum(r.status == "running" for r in store.list_runs()) == 2)
    t0 = time.monotonic()
    sweep.stop()
    sweep.join(30)
    assert time.monotonic() - t0 < 10
    result = sweep.result()
    assert result["status"] == "stopped"
    assert {t["status"] for t in result["trials"]} == {"stopped"}
    assert {r.status for r in store.list_runs()} == {"stopped"}
    assert json.loads(sweep.record_path.read_text())["status"] == "stopped"
