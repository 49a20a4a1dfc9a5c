"""Runs in processes of their own (Registry(isolation="process"), the lab's): the same records,
controls and failures as a thread, from a child process, with a real store."""

from __future__ import annotations

import os
import signal
import time

import pytest

# the thread engine's tests' runs and wait: the same runs, the same expectations
from test_engine import LONG, SMALL, _until

from pglab.engine import Registry
from pglab.store import Store


@pytest.fixture
def registry(tmp_path):
    reg = Registry(Store(tmp_path / "runs.sqlite"), max_concurrent=2, isolation="process")
    yield reg
    reg.clear()
    reg.store.close()


def _steps(reg: Registry, run_id: str) -> int:
    return reg.progress(run_id)["env_steps"]


def test_runs_train_in_child_processes_and_record_like_threads(registry) -> None:
    ids = [registry.launch("a2c", {**SMALL, "total_steps": 3_000}, seed=s) for s in range(3)]
    assert registry.status(ids[2]) == "queued"  # two slots: the third waits its turn
    for run_id in ids:
        assert registry.wait(run_id, 120) == "finished"
    store = registry.store
    pids = set()
    for run_id in ids:
        rec = store.get_run(run_id)
        assert rec.status == "finished" and rec.error is None and rec.env_steps >= 3_000
        pid = rec.worker_pid
        assert pid != os.getpid()
        pids.add(pid)
        live, cursor = registry.snapshot(run_id)
        stored = store.metric_rows(run_id)
        assert cursor == len(live) == len(stored) > 50
        assert [r["time/updates"] for r in live] == [r["time/updates"] for r in stored]
        assert live[-1]["rollout/return_last20"] == stored[-1]["rollout/return_last20"]
        assert store.load_checkpoint(run_id)["policy"]  # the final checkpoint came across
    assert len(pids) == 3  # a process per run


def test_pause_resume_stop_and_live_weights_reach_the_child(registry) -> None:
    run_id = registry.launch("a2c", LONG)
    _until(lambda: _steps(registry, run_id) > 500, what="the run to train")
    registry.pause(run_id)
    assert registry.status(run_id) == "paused"
    time.sleep(1.0)  # the pause has reached the child; its last rows are flushed
    held = _steps(registry, run_id)
    time.sleep(1.0)
    assert _steps(registry, run_id) == held
    state = registry.policy_state(run_id)  # "Watch the agent" on a paused run: live weights
    assert state is not None and set(state) >= {"policy"}
    registry.resume(run_id)
    _until(lambda: _steps(registry, run_id) > held + 500, what="the run to go on")
    t0 = time.monotonic()
    registry.stop(run_id)
    assert registry.wait(run_id, 30) == "stopped"
    assert time.monotonic() - t0 < 1.5
    rec = registry.store.get_run(run_id)
    assert rec.status == "stopped" and rec.error is None
    assert registry.store.load_checkpoint(run_id) is not None


def test_a_killed_process_fails_its_run_and_spares_the_others(registry) -> None:
    victim = registry.launch("a2c", LONG)
    other = registry.launch("a2c", {**SMALL, "total_steps": 4_000})
    _until(lambda: _steps(registry, victim) > 200, what="the victim to train")
    pid = registry.store.get_run(victim).worker_pid
    os.kill(pid, signal.SIGKILL)
    assert registry.wait(victim, 30) == "failed"
    rec = registry.record(victim)
    assert f"pid {pid}" in rec.error and "exit code -9" in rec.error
    assert len(registry.store.metric_rows(victim)) > 0  # what it sent is kept
    assert registry.wait(other, 120) == "finished"


def test_isolation_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^isolation: 'fork' is not allowed"):
        Registry(Store(), isolation="fork")
