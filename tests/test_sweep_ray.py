"""The Ray executor against real Ray: a local runtime (2 CPUs) and a separate head on loopback.

Each test points HOME at its own folder, so Ray's auth token (``~/.ray/auth_token``) of one
runtime never meets another, and stops only what it started: the local runtime through
``ray.shutdown()`` (the executor owns it), the head by its own process group, never
``ray stop`` (which ends every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pglab.store import Store
from pglab.sweep import Sweep, parse_spec
from pglab.sweep.ray_executor import RayExecutor

ROOT = Path(__file__).resolve().parents[1]
# Slow enough per update (32 minibatch steps) that a run is still mid-way when the pause lands,
# with the budget below, even with the compiled PPO epoch (an update of 256 steps is ~2 ms:
# at 16k steps a run ended within the control actor's 0.25 s poll, before the pause landed).
TINY = {"num_envs": 4, "n_steps": 64, "batch_size": 32, "n_epochs": 4}


@pytest.fixture
def ray_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    return {**os.environ}


def test_ray_grid_sweep_in_workers_survives_a_killed_worker_and_stops_in_seconds(tmp_path, ray_env):
    budget = 131_072
    spec = parse_spec(
        {
            "algo": "ppo",
            "env_id": "CartPole-v1",
            "settings": TINY,
            "budget": budget,
            "grid": {"learning_rate": [3e-4, 1e-3], "gae_lambda": [0.8, 0.95]},
            "seeds": 2,
            "objective": "auc",
            "max_concurrent": 2,
        }
    )
    store = Store(tmp_path / "runs.sqlite")
    # a second user of this process's runtime (as two sweeps on the lab's page): it stays up
    # until the last executor closes, so the stop test below reuses its warm workers
    keeper = RayExecutor(store, num_cpus=2)
    try:
        _grid_with_a_kill(spec, store, budget)
        _stop_within_seconds(store)
    finally:
        keeper.close()
    import ray

    assert not ray.is_initialized() and "RAY_AUTH_MODE" not in os.environ


def _grid_with_a_kill(spec, store, budget):
    sweep = Sweep(spec, store, executor="ray")
    sweep.start()
    # Pause the sweep once a run trains, then kill the worker of a run it caught mid-way: the
    # pause makes "mid-way" certain whatever the machine's speed (a paused run has flushed
    # its rows and is short of its budget), then the sweep resumes without that worker.
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and sweep.active:
        if not any(r.status == "running" for r in store.list_runs()):
            time.sleep(0.05)
            continue
        sweep.pause()
        _until(lambda: not any(r.status == "running" for r in store.list_runs()), 10)
        time.sleep(0.5)  # the last rows before the pause reach the store
        for r in store.list_runs():
            if r.status == "paused" and r.worker_pid and 0 < r.env_steps < budget:
                assert r.worker_pid != os.getpid()
                os.kill(r.worker_pid, signal.SIGKILL)
                victim = r
                break
        sweep.resume()
    sweep.join(180)
    assert victim is not None, f"no run to kill (sweep {sweep.status}: {sweep.error})"
    result = sweep.result()
    assert result["status"] == "finished", result["error"]

    runs = {r.id: r for r in store.list_runs()}
    assert len(runs) == 8
    assert all(r.group.startswith(f"sweep {sweep.id} · ") for r in runs.values())
    assert {r.worker_pid for r in runs.values()}.isdisjoint({os.getpid(), None})
    assert all(r.worker_host == socket.gethostname() for r in runs.values())
    killed = runs[victim.id]
    assert killed.status == "interrupted" and "Ray worker" in killed.error
    assert killed.env_steps > 0 and len(store.metric_rows(killed.id)) > 0  # metrics so far kept
    others = [r for r in runs.values() if r.id != victim.id]
    assert {r.status for r in others} == {"finished"}
    assert all(r.env_steps == budget for r in others)
    for trial in result["trials"]:  # each trial a launch of its two seeds
        assert {runs[i].launch for i in trial["run_ids"]} == {trial["launch"]}
        if victim.id in trial["run_ids"]:
            assert trial["status"] == "partial" and trial["n"] == 1
        else:
            assert trial["status"] == "finished" and trial["n"] == 2
    assert result["best"] is not None
    assert store.load_checkpoint(others[0].id) is not None  # streamed back from the worker


def _stop_within_seconds(store):
    """Stopping a sweep (the page's Stop; the CLI's Ctrl-C does the same) ends its Ray tasks
    within seconds, their runs ``stopped`` with their metrics and checkpoints."""
    long = parse_spec({"algo": "ppo", "settings": TINY, "budget": 5_000_000, "seeds": 2})
    sweep = Sweep(long, store, executor="ray")
    sweep.start()
    ids: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and sweep.status != "failed":
        ids = [i for t in sweep.trials for i in t.run_ids]
        if len(ids) == 2 and all(store.get_run(i).env_steps > 0 for i in ids):
            break
        time.sleep(0.1)
    assert len(ids) == 2 and all(store.get_run(i).status == "running" for i in ids), sweep.error
    sweep.pause()  # through the control actor: each worker pauses between two updates
    assert _until(lambda: {store.get_run(i).status for i in ids} == {"paused"})
    sweep.resume()
    assert _until(lambda: {store.get_run(i).status for i in ids} == {"running"})
    t0 = time.monotonic()
    sweep.stop()
    sweep.join(60)
    assert time.monotonic() - t0 < 10
    assert sweep.result()["status"] == "stopped"
    for run_id in ids:
        run = store.get_run(run_id)
        assert run.status == "stopped" and 0 < run.env_steps < 5_000_000
        assert store.load_checkpoint(run_id) is not None


def _until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            rest = stat.read_text().rsplit(")", 1)[1].split()
            if int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
                alive.append(int(stat.parent.name))
    return alive


def _stop_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 2
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    time.sleep(0.5)


def test_sweep_joins_a_separate_head_by_address(tmp_path, ray_env):
    port = _free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    # a new session: `ray start` and the daemons it leaves behind are process group head.pid
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--port", str(port), "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
         "--disable-usage-stats"],
        env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    pgid = head.pid
    try:
        _, err = head.communicate(timeout=120)
        assert head.returncode == 0, err[-2000:]
        assert _group_alive(pgid), "the head's daemons are not in its process group"
        env = {**ray_env, "PGLAB_STORE": str(tmp_path / "runs.sqlite")}
        spec = tmp_path / "seeds.json"
        spec.write_text(json.dumps({"algo": "ppo", "settings": TINY, "budget": 1024, "seeds": 2}))
        cli = [sys.executable, "-m", "pglab", "sweep", str(spec), "--executor", "ray",
               "--address", f"127.0.0.1:{port}", "--json"]  # fmt: skip
        proc = subprocess.Popen(cli, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0
        result = json.loads(out.strip().splitlines()[-1])
        assert result["executor"] == "ray" and result["address"] == f"127.0.0.1:{port}"
        (trial,) = result["trials"]
        assert trial["status"] == "finished" and len(trial["run_ids"]) == 2
        store = Store(tmp_path / "runs.sqlite")
        runs = [store.get_run(i) for i in trial["run_ids"]]
        assert {r.status for r in runs} == {"finished"} and {r.launch for r in runs} == {
            trial["launch"]
        }
        assert all(r.worker_pid not in (None, proc.pid) for r in runs)

        assert _group_alive(pgid), "the sweep must leave the cluster to its owner"
    finally:
        _stop_group(pgid)
    assert _group_alive(pgid) == []
