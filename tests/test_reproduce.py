"""Textbook reproductions: Sutton & Barto Figures 13.1 and 13.2 match at reduced runs; the
CLI's --list and --json; the curves land in the store under one launch; the page draws them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pglab.cli import main
from pglab.reproduce import EXPERIMENTS, V_STAR, corridor_reinforce, moving_average, reproduce
from pglab.store import Store


@pytest.mark.parametrize("name", ["sb-fig13.1", "sb-fig13.2"])
def test_figure_matches_at_reduced_runs(name):
    rep = reproduce(name, runs=20, seed=1)
    assert rep.matches, rep.figures
    assert rep.runs == 20 and rep.episodes_done == 1000
    assert all(len(c) == 1000 for c in rep.curves.values())
    assert rep.references["v*(s0)"] == V_STAR


def test_corridor_learners_are_seeded_and_learn():
    a = corridor_reinforce([2.0**-13], [None], runs=4, episodes=300, seed=3)
    b = corridor_reinforce([2.0**-13], [None], runs=4, episodes=300, seed=3)
    np.testing.assert_array_equal(a.returns, b.returns)
    c = corridor_reinforce([2.0**-13], [None], runs=4, episodes=300, seed=4)
    assert not np.array_equal(a.returns, c.returns)
    assert a.truncated == 0 and (a.returns <= -1).all()
    # from pi(right) = 0.05 the policy moves towards p* = 0.59
    assert (a.final_p_right > 0.2).all()
    # zero step size: nothing moves, returns stay those of pi(right) = 0.05 (J = -82.1)
    z = corridor_reinforce([0.0], [None], runs=50, episodes=40, seed=0)
    assert np.allclose(z.final_p_right, 1.0 / (1.0 + np.exp(2.94)))  # theta0 = (-1.47, 1.47)
    assert abs(z.returns.mean() + 82.1) < 8.0
    stopped = corridor_reinforce([2.0**-13], [None], 2, 1000, should_stop=lambda: True)
    assert stopped.returns.shape == (1, 2, 0)
    with pytest.raises(ValueError, match="runs"):
        corridor_reinforce([1.0], [None], runs=0, episodes=5)
    assert moving_average([1.0, 3.0, 5.0], 2).tolist() == [1.0, 2.0, 4.0]


def test_cli_list_json_and_store(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PGLAB_STORE", str(tmp_path / "runs.sqlite"))
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in EXPERIMENTS)
    assert main(["reproduce", "sb-fig13.2", "--runs", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"experiment", "matches", "runs", "seeds", "figures", "criterion"} <= set(out)
    assert out["experiment"] == "sb-fig13.2" and out["runs"] == 5
    assert isinstance(out["matches"], bool) and out["figures"]
    runs = Store(tmp_path / "runs.sqlite").list_runs()
    assert len(runs) == 2 and len({r.launch for r in runs}) == 1
    assert all(r.status == "finished" and r.algo == "reproduce" for r in runs)
    assert len(Store(tmp_path / "runs.sqlite").metric_rows(runs[0].id)) == 1000
    assert main(["reproduce", "nope"]) == 2
    assert "name" in capsys.readouterr().err
    assert main(["reproduce", "sb-fig13.1", "--runs", "0"]) == 2
    assert "runs" in capsys.readouterr().err


def test_trained_experiment_runs_in_the_engine_under_one_launch(tmp_path, monkeypatch):
    from pglab import reproduce as R

    monkeypatch.setattr(R, "GAE_GAMMAS", (0.99,))  # 3 of the sweep's 10 settings: test time
    monkeypatch.setattr(R, "GAE_LAMBDAS", (0.0, 0.95, 1.0))
    store = Store(tmp_path / "runs.sqlite")
    rep, ids = R.reproduce_to_store("gae-sweep", store, runs=1, total_steps=512, launch="Ltest0001")
    assert len(ids) == 3 and rep.episodes_done == 3
    recs = [store.get_run(i) for i in ids]
    assert all(r.launch == "Ltest0001" and r.algo == "ppo" and r.status == "finished" for r in recs)
    assert {r.config["gae_lambda"] for r in recs} == {0.0, 0.95, 1.0}
    assert isinstance(rep.matches, bool) and "gamma=0.99: best lambda" in rep.figures
    # stop between runs: the experiment ends early and says it does not match
    rep, ids = R.reproduce_to_store(
        "ppo-table1", store, runs=1, total_steps=512, should_stop=lambda: True
    )
    assert ids == [] and rep.matches is False
    with pytest.raises(ValueError, match="run engine"):
        reproduce("ppo-table1")


def _wait_for(cond, timeout=60.0):
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def test_corridor_job_runs_in_the_background_and_stops_between_chunks(tmp_path):
    from pglab.reproduce import CHUNK, Job

    store = Store(tmp_path / "runs.sqlite")
    job = Job("sb-fig13.1", store, runs=1000).start()  # about 0.1 s a chunk
    assert job.total == 1000
    _wait_for(lambda: job.done >= CHUNK)
    live = [r for r in store.list_runs() if r.launch == job.launch]
    assert len(live) == 3  # the curves are in the store while the loop runs
    job.stop()
    assert job.wait(30) == "stopped" and not job.running
    recs = [store.get_run(i) for i in job.ids]
    assert all(r.status == "stopped" and r.launch == job.launch for r in recs)
    n = len(store.metric_rows(job.ids[0]))
    assert n == job.done == job.result.episodes_done and n % CHUNK == 0 and n < 1000
    assert job.result.matches is False
    # chunked storage changes no number: a full job equals the in-memory reproduction
    full = Job("sb-fig13.2", store, runs=5, seed=2).start()
    assert full.wait(60) == "finished" and full.done == 1000
    ref = reproduce("sb-fig13.2", runs=5, seed=2)
    assert full.result.figures == ref.figures
    rows = store.metric_rows(full.ids[1])
    assert [r["rollout/ep_return_mean"] for r in rows] == ref.curves[list(ref.curves)[1]]
    with pytest.raises(ValueError, match="runs"):
        Job("sb-fig13.1", store, runs=0)


def test_trained_job_stop_ends_the_current_run(tmp_path):
    from pglab.reproduce import TABLE1_LR, Job

    store = Store(tmp_path / "runs.sqlite")
    job = Job("ppo-table1", store, runs=1, total_steps=5_000_000).start()
    _wait_for(lambda: any(r.status == "running" for r in store.list_runs()))
    job.stop()
    assert job.wait(30) == "stopped"
    recs = [r for r in store.list_runs() if r.launch == job.launch]
    assert len(recs) == 1 and recs[0].status == "stopped"  # no further run was started
    assert (
        recs[0].config["learning_rate"] == TABLE1_LR and recs[0].config["variant"] == "kl_penalty"
    )
    assert job.result.matches is False
