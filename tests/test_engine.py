"""The run engine: background runs, control, queueing, failures, process death, foreground runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import pglab.algos
from pglab.algos.a2c import A2C
from pglab.engine import Registry, run_foreground
from pglab.store import Store

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
# A2C on CartPole with a tiny rollout: ~10 ms an update, so tests see many updates quickly.
SMALL = {
    "env_id": "CartPole-v1",
    "num_envs": 2,
    "n_steps": 16,
    "grad_diagnostics": False,
}
LONG = {**SMALL, "total_steps": 5_000_000}  # never finishes within a test: stopped instead


def _until(cond, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _pglab_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pglab-run-")]


@pytest.fixture
def store():
    s = Store()
    yield s
    s.close()


@pytest.fixture
def registry(store):
    reg = Registry(store, max_concurrent=8)
    yield reg
    reg.clear()
    assert _pglab_threads() == []


# Fault injection: real A2C trainers that break at a chosen update, registered as algorithms
# for the duration of a test (the engine builds trainers by algorithm name).
class PoisonedA2C(A2C):
    """Writes NaN into a policy weight during update 3, as a diverging optimiser would."""

    def _update(self) -> dict[str, float]:
        metrics = super()._update()
        if self.updates + 1 == 3:
            with torch.no_grad():
                next(self.policy.parameters()).view(-1)[0] = float("nan")
        return metrics


class CrashingA2C(A2C):
    """Raises an ordinary exception (a bug) during update 2."""

    def _update(self) -> dict[str, float]:
        if self.updates + 1 == 2:
            raise RuntimeError("boom")
        return super()._update()


@pytest.fixture
def faulty_algos(monkeypatch):
    monkeypatch.setitem(pglab.algos._TRAINERS, "poisoned_a2c", f"{__name__}:PoisonedA2C")
    monkeypatch.setitem(pglab.algos._TRAINERS, "crashing_a2c", f"{__name__}:CrashingA2C")


def test_invalid_launch_is_rejected_before_any_thread(registry, store):
    with pytest.raises(ValueError, match="learning_rate"):
        registry.launch("a2c", {**SMALL, "learning_rate": 5.0})
    with pytest.raises(ValueError, match="n_steps"):
        registry.launch("a2c", {**SMALL, "n_steps": 0})
    with pytest.raises(ValueError, match="algo"):
        registry.launch("dqn", SMALL)
    with pytest.raises(ValueError, match="seed"):
        registry.launch("a2c", SMALL, seed=-1)
    with pytest.raises(ValueError, match="device"):
        registry.launch("a2c", SMALL, device="tpu")
    with pytest.raises(ValueError, match="config"):
        registry.launch("a2c", pglab.algos.make_config("ppo", {}))
    assert _pglab_threads() == []
    assert store.list_runs() == [] and registry.active_ids() == []


def test_start_pause_resume_stop(registry, store):
    rid = registry.launch("a2c", LONG, seed=1, name="ctl", group="g")
    assert _pglab_threads() == [f"pglab-run-{rid}"]
    _until(lambda: len(registry.snapshot(rid)[0]) >= 3, what="3 updates")
    assert registry.status(rid) == "running" and store.get_run(rid).status == "running"
    assert registry.active_ids() == [rid] and registry.any_active()
    prog = registry.progress(rid)
    assert 0 < prog["env_steps"] < prog["total_steps"] == 5_000_000
    assert prog["eta_s"] is not None and prog["eta_s"] > 0

    registry.pause(rid)
    assert registry.status(rid) == "paused" and store.get_run(rid).status == "paused"
    time.sleep(0.3)  # the update in flight finishes, then the worker parks
    n = len(registry.snapshot(rid)[0])
    _until(lambda: len(store.metric_rows(rid)) == n, 5, "the flush on pause")
    time.sleep(0.5)
    assert len(registry.snapshot(rid)[0]) == n  # no training while paused

    registry.resume(rid)
    assert registry.status(rid) == "running" and store.get_run(rid).status == "running"
    _until(lambda: len(registry.snapshot(rid)[0]) > n + 2, what="training after resume")

    t0 = time.monotonic()
    registry.stop(rid)
    assert registry.wait(rid, timeout=2.0) == "stopped"
    assert time.monotonic() - t0 < 2.0
    assert _pglab_threads() == [] and registry.active_ids() == []

    rows, cursor = registry.snapshot(rid)
    assert cursor == len(rows) > n + 2
    assert [r["time/updates"] for r in rows] == list(range(1, len(rows) + 1))
    # the cursor returns only new points, and the store holds exactly the same curve
    assert registry.snapshot(rid, cursor) == ([], cursor)
    assert registry.snapshot(rid, 2) == (rows[2:], cursor)
    assert store.metric_rows(rid) == rows
    rec = registry.record(rid)
    assert rec.status == "stopped" and rec.error is None and rec.ended_at is not None
    assert rec.env_steps == rows[-1]["time/env_steps"] and rec.name == "ctl" and rec.group == "g"
    assert set(store.load_checkpoint(rid)) == {"policy", "value"}


def test_policy_state_of_a_live_run_changes_as_it_trains(registry, store):
    """'Watch the agent' on a run still training: weights copied between updates."""
    rid = registry.launch("a2c", LONG, seed=2)
    _until(lambda: len(registry.snapshot(rid)[0]) >= 2, what="2 updates")
    first = registry.policy_state(rid)
    assert first is not None and set(first) == {"policy", "value"}
    n = len(registry.snapshot(rid)[0])
    _until(lambda: len(registry.snapshot(rid)[0]) > n + 2, what="more updates")
    later = registry.policy_state(rid)
    assert any(not torch.equal(first["policy"][k], later["policy"][k]) for k in first["policy"])
    registry.pause(rid)
    time.sleep(0.3)
    paused = registry.policy_state(rid, timeout=2.0)  # answered while parked, no hang
    assert paused is not None and registry.status(rid) == "paused"
    registry.stop(rid)
    assert registry.wait(rid, timeout=2.0) == "stopped"
    final = registry.policy_state(rid)  # now from the checkpoint
    assert final is not None and torch.equal(
        final["policy"][next(iter(final["policy"]))],
        store.load_checkpoint(rid)["policy"][next(iter(final["policy"]))],
    )


def test_queue_respects_max_concurrent(store):
    registry = Registry(store, max_concurrent=1)
    try:
        first = registry.launch("a2c", LONG)
        second = registry.launch("a2c", {**SMALL, "total_steps": 320})
        third = registry.launch("a2c", LONG)
        assert registry.status(second) == registry.status(third) == "queued"
        assert store.get_run(second).status == "queued"
        assert _pglab_threads() == [f"pglab-run-{first}"]

        registry.stop(third)  # never started: stops at once, nothing to keep
        assert registry.status(third) == "stopped" and store.get_run(third).status == "stopped"
        registry.pause(second)  # paused in the queue: keeps its place but takes no slot
        assert registry.status(second) == "paused"
        registry.resume(second)
        assert registry.status(second) == "queued"

        registry.stop(first)
        assert registry.wait(first, 5) == "stopped"
        assert registry.wait(second, 30) == "finished"
        rows, _ = registry.snapshot(second)
        assert rows[-1]["time/env_steps"] == 320 and len(rows) == 10
        prog = registry.progress(second)
        assert prog["fraction"] == 1.0 and prog["eta_s"] == 0.0
        assert store.metric_rows(third) == [] and store.load_checkpoint(third) is None
    finally:
        registry.clear()
    assert _pglab_threads() == []


def test_eight_concurrent_runs_keep_their_own_metrics(registry, store):
    # each run has its own rollout length, so rows that leaked between runs would show up
    # as wrong env-step increments
    n_updates = 30
    configs = [
        {**SMALL, "n_steps": 8 + i, "total_steps": 2 * (8 + i) * n_updates} for i in range(8)
    ]
    errors: list[BaseException] = []
    stop_reading = threading.Event()

    def reader() -> None:  # a page polling every run while they train
        cursors: dict[str, int] = {}
        try:
            while not stop_reading.is_set():
                for rid in registry.run_ids():
                    _, cursors[rid] = registry.snapshot(rid, cursors.get(rid, 0))
                    store.metrics(rid)
                store.list_runs()
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.release_thread()

    t = threading.Thread(target=reader)
    t.start()
    ids = [registry.launch("a2c", cfg, seed=i) for i, cfg in enumerate(configs)]
    try:
        # every run got its thread at launch, none queued (a count of live threads raced: with
        # the compiled A2C update the first 480-step run can end before the eighth launches)
        assert not registry._queue and all(registry._runs[r].thread is not None for r in ids)
        finals = [registry.wait(rid, 60) for rid in ids]
    finally:
        stop_reading.set()
        t.join()
    assert errors == []
    assert finals == ["finished"] * 8, [registry.record(r).error for r in ids]
    for i, rid in enumerate(ids):
        step = 2 * (8 + i)
        rows, _ = registry.snapshot(rid)
        assert [r["time/updates"] for r in rows] == list(range(1, n_updates + 1))
        assert [r["time/env_steps"] for r in rows] == [step * k for k in range(1, n_updates + 1)]
        assert store.metric_rows(rid) == rows
        rec = store.get_run(rid)
        assert rec.config["n_steps"] == 8 + i and rec.seed == i and rec.error is None
        assert rec.env_steps == step * n_updates


def test_nan_fails_one_run_while_another_finishes(registry, store, faulty_algos):
    bad = registry.launch("poisoned_a2c", LONG)
    crash = registry.launch("crashing_a2c", LONG)
    good = registry.launch("a2c", {**SMALL, "total_steps": 640})
    assert registry.wait(bad, 30) == "failed"
    assert registry.wait(crash, 30) == "failed"
    assert registry.wait(good, 60) == "finished"

    rec = store.get_run(bad)
    assert rec.status == "failed" and rec.ended_at is not None
    assert re.fullmatch(
        r"policy parameter \S+ became NaN/Inf at update 3 - try a smaller learning rate",
        rec.error,
    ), rec.error
    assert [r["time/updates"] for r in store.metric_rows(bad)] == [1.0, 2.0]  # kept
    assert store.load_checkpoint(bad) is None  # a NaN policy is not worth keeping

    err = store.get_run(crash).error
    assert err.startswith("RuntimeError: boom (during update 2, at test_engine.py:")
    assert err.endswith("in _update)")
    assert len(store.metric_rows(crash)) == 1

    assert store.get_run(good).error is None
    assert len(store.metric_rows(good)) == 20
    assert store.load_checkpoint(good) is not None


def test_clear_stops_and_joins_everything(store):
    registry = Registry(store, max_concurrent=2)
    ids = [registry.launch("a2c", LONG, seed=s) for s in range(3)]
    registry.pause(ids[1])
    _until(lambda: len(registry.snapshot(ids[0])[0]) >= 1, what="a first update")
    registry.clear()
    assert _pglab_threads() == []
    assert registry.active_ids() == [] and registry.run_ids() == []
    assert [store.get_run(r).status for r in ids] == ["stopped"] * 3
    # the registry still works after clearing
    rid = registry.launch("a2c", {**SMALL, "total_steps": 64})
    assert registry.wait(rid, 30) == "finished"
    registry.clear()
    assert _pglab_threads() == []


def test_run_foreground_records_like_a_background_run(store):
    seen: list[dict[str, float]] = []
    ended = []
    rec = run_foreground(
        "a2c", {**SMALL, "total_steps": 320}, 0, "cpu", store, seen.append, on_end=ended.append
    )
    assert rec.status == "finished" and rec.error is None and rec.env_steps == 320
    assert len(ended) == 1 and ended[0].env_steps == 320 and ended[0].episodes
    assert rec.started_at is not None and rec.ended_at >= rec.started_at
    assert store.metric_rows(rec.id) == seen and len(seen) == 10
    assert store.load_checkpoint(rec.id) is not None
    # a background registry reads foreground runs from the store
    reg = Registry(store)
    assert reg.snapshot(rec.id) == (seen, 10) and reg.status(rec.id) == "finished"

    def ctrl_c_at_3(metrics: dict[str, float]) -> None:
        if metrics["time/updates"] == 3:
            raise KeyboardInterrupt

    stopped = run_foreground("a2c", LONG, 0, "cpu", store, ctrl_c_at_3)
    assert stopped.status == "stopped"
    assert len(store.metric_rows(stopped.id)) == 3
    assert store.load_checkpoint(stopped.id) is not None

    with pytest.raises(ValueError, match="gamma"):
        run_foreground("a2c", {**SMALL, "gamma": 2.0}, 0, "cpu", store)
    assert len(store.list_runs()) == 2


_TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    from pglab.engine import run_foreground
    from pglab.store import Store
    config = {"env_id": "CartPole-v1", "num_envs": 2, "n_steps": 16,
              "grad_diagnostics": False, "total_steps": 5_000_000}
    run_foreground("a2c", config, 0, "cpu", Store(sys.argv[1]))
    """
)


def test_sigkill_mid_run_leaves_an_interrupted_run(tmp_path):
    path = tmp_path / "killed" / "runs.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRAIN_SCRIPT, str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _until(path.exists, 60, "the subprocess to create its store")
        watcher = Store(path)
        _until(lambda: watcher.list_runs(), 60, "the run to be recorded")
        rid = watcher.list_runs()[0].id
        _until(lambda: len(watcher.metric_rows(rid)) >= 3, 60, "flushed metrics")
        # a second live process opening the store must not take the run for dead
        assert Store(path).get_run(rid).status == "running"
        seen = len(watcher.metric_rows(rid))
        watcher.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()

    after = Store(path)
    rec = after.get_run(rid)
    assert rec.status == "interrupted" and rec.ended_at is not None
    assert "ended before it finished" in rec.error
    rows = after.metric_rows(rid)
    assert len(rows) >= seen
    assert [r["time/updates"] for r in rows] == list(range(1, len(rows) + 1))
    assert rec.env_steps == rows[-1]["time/env_steps"]
    assert len(after.metrics(rid)) == len(rows)
    assert os.path.exists(path)
