"""The SQLite run store: runs, metrics, statuses, dead-process recovery, checkpoints, export."""

from __future__ import annotations

import json
import math
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pglab.algos import make_trainer
from pglab.cli import main
from pglab.engine import run_foreground
from pglab.store import (
    SCHEMA_VERSION,
    Store,
    default_store_path,
    parse_config_json,
    process_marker,
)

torch.set_num_threads(1)

TINY = {
    "env_id": "CartPole-v1",
    "total_steps": 256,
    "num_envs": 2,
    "n_steps": 16,
    "grad_diagnostics": False,
}


@pytest.fixture
def store():
    s = Store()
    yield s
    s.close()


def _new_run(store: Store, **kw) -> str:
    args = {
        "algo": "a2c",
        "env_id": "CartPole-v1",
        "config": {"env_id": "CartPole-v1", "total_steps": 1000},
        "seed": 3,
        "device": "cpu",
    }
    args.update(kw)
    return store.create_run(**args)


def _set_owner(path: Path, run_id: str, pid: int, marker: str | None) -> None:
    """Make another process the owner of a run, as if that process had created it."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET pid = ?, proc_start = ? WHERE id = ?", (pid, marker, run_id))


def test_default_path_follows_env_var(tmp_path, monkeypatch):
    # conftest points PGLAB_STORE at a temp file: the default store must be that file
    assert default_store_path() == Path(os.environ["PGLAB_STORE"])
    assert Store().path == Path(os.environ["PGLAB_STORE"])
    monkeypatch.delenv("PGLAB_STORE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / ".pglab" / "runs.sqlite"


def test_create_list_status_timestamps(store):
    a = _new_run(store, name="first", group="g1")
    time.sleep(0.01)
    b = _new_run(store, seed=4)
    runs = store.list_runs()
    assert [r.id for r in runs] == [b, a]  # newest first
    ra = store.get_run(a)
    assert ra.name == "first" and ra.group == "g1" and ra.seed == 3 and ra.algo == "a2c"
    assert ra.status == "queued" and ra.started_at is None and ra.ended_at is None
    assert ra.total_steps == 1000 and ra.env_steps == 0 and ra.final_return is None
    assert ra.config == {"env_id": "CartPole-v1", "total_steps": 1000}
    assert store.get_run(b).name.startswith("a2c-CartPole-v1-s4")

    store.set_status(a, "running")
    started = store.get_run(a).started_at
    assert started is not None and store.get_run(a).ended_at is None
    store.set_status(a, "paused")
    store.set_status(a, "running")
    assert store.get_run(a).started_at == started  # first start is kept
    store.set_status(a, "failed", "loss/policy became nan at update 3")
    ra = store.get_run(a)
    assert ra.status == "failed" and ra.error == "loss/policy became nan at update 3"
    assert ra.ended_at >= started
    with pytest.raises(ValueError, match="status"):
        store.set_status(a, "exploded")
    with pytest.raises(ValueError, match="not in the store"):
        store.set_status("deadbeef", "running")
    assert store.get_run("deadbeef") is None


def test_metrics_table_and_cursor(store):
    rid = _new_run(store)
    rows = [
        {"time/updates": 1.0, "time/env_steps": 32.0, "loss/policy": 0.5},
        {
            "time/updates": 2.0,
            "time/env_steps": 64.0,
            "loss/policy": -0.25,
            "rollout/return_last20": 21.5,
        },
    ]
    store.append_metrics(rid, rows[:1])
    assert list(store.metrics(rid).columns) == ["update", *rows[0]]
    store.append_metrics(rid, rows[1:])  # a column appears: the cached table must grow one
    store.append_metrics(rid, [])
    frame = store.metrics(rid)
    assert list(frame["update"]) == [1, 2]
    assert list(frame["loss/policy"]) == [0.5, -0.25]
    assert math.isnan(frame["rollout/return_last20"][0])  # absent, not zero
    assert frame["rollout/return_last20"][1] == 21.5
    assert store.metric_rows(rid) == rows
    assert store.metric_rows(rid, since=1) == rows[1:]
    assert store.metric_rows(rid, since=5) == []
    rec = store.get_run(rid)
    assert rec.env_steps == 64 and rec.final_return == 21.5
    # rows without time/updates continue the numbering
    store.append_metrics(rid, [{"loss/policy": 1.0}])
    assert list(store.metrics(rid)["update"]) == [1, 2, 3]
    fresh = Store(store.path)  # no cache: the incrementally grown table must equal a fresh read
    pd.testing.assert_frame_equal(store.metrics(rid), fresh.metrics(rid))
    fresh.close()
    mine = store.metrics(rid)
    mine["loss/policy"] = 0.0  # callers get copies: the cache is untouched
    assert list(store.metrics(rid)["loss/policy"]) == [0.5, -0.25, 1.0]
    # an unknown run has an empty table with an update column
    empty = store.metrics("deadbeef")
    assert list(empty.columns) == ["update"] and len(empty) == 0


def test_config_json_round_trip_and_validation(store):
    _, cfg = parse_config_json(json.dumps({"algo": "a2c", **TINY}))
    rid = _new_run(store, config=cfg.to_dict())
    text = store.config_json(rid)
    assert json.loads(text)["algo"] == "a2c"
    algo, back = parse_config_json(text)
    assert algo == "a2c" and back == cfg
    assert back.n_steps == 16 and back.num_envs == 2

    with pytest.raises(ValueError, match="learning_rate"):
        parse_config_json(json.dumps({"algo": "a2c", "learning_rate": 5.0}))
    with pytest.raises(ValueError, match="not_a_field"):
        parse_config_json(json.dumps({"algo": "a2c", "not_a_field": 1}))
    with pytest.raises(ValueError, match="algo"):
        parse_config_json(json.dumps({"learning_rate": 0.01}))
    with pytest.raises(ValueError, match="algo"):
        parse_config_json(json.dumps({"algo": "dqn"}))
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_config_json("{algo: ppo")
    with pytest.raises(ValueError, match="object"):
        parse_config_json("[1, 2]")


def test_checkpoint_round_trip_weights_only(store):
    rid = _new_run(store)
    trainer = make_trainer("a2c", TINY, seed=0)
    with torch.no_grad():  # make the weights unlike any fresh init
        for p in trainer.policy.parameters():
            p.add_(torch.randn_like(p))
    path = store.save_checkpoint(rid, trainer.state_dict())
    assert path == Path(store.path).parent / "checkpoints" / f"{rid}.pt"
    state = store.load_checkpoint(rid)
    other = make_trainer("a2c", TINY, seed=1)
    other.load_state_dict(state)
    for a, b in zip(trainer.policy.parameters(), other.policy.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(trainer.value.parameters(), other.value.parameters()):
        assert torch.equal(a, b)
    trainer.close()
    other.close()
    assert store.load_checkpoint(_new_run(store)) is None

    # weights_only=True refuses a file that would run arbitrary code when unpickled
    torch.save({"policy": {}, "evil": Path("/")}, path)
    with pytest.raises(pickle.UnpicklingError):
        store.load_checkpoint(rid)
    with pytest.raises(ValueError, match="not a run id"):
        store.checkpoint_path("../../etc/passwd")


def test_delete_run(store):
    rid = _new_run(store)
    keep = _new_run(store)
    store.append_metrics(rid, [{"time/updates": 1.0, "loss/policy": 0.0}])
    store.save_checkpoint(rid, {"w": torch.zeros(2)})
    store.set_status(rid, "running")
    with pytest.raises(ValueError, match="stop it"):
        store.delete_run(rid)  # owned by this live process
    store.set_status(rid, "stopped")
    store.delete_run(rid)
    assert store.get_run(rid) is None and store.metric_rows(rid) == []
    assert not store.checkpoint_path(rid).exists()
    assert [r.id for r in store.list_runs()] == [keep]
    with pytest.raises(ValueError, match="not in the store"):
        store.delete_run(rid)


def test_open_marks_runs_of_dead_processes_interrupted(store):
    path = store.path
    ours = _new_run(store)
    store.set_status(ours, "running")
    done = _new_run(store)
    store.set_status(done, "finished")
    dead = _new_run(store)
    store.set_status(dead, "running")
    reused = _new_run(store)
    store.set_status(reused, "paused")
    alive = _new_run(store)
    store.set_status(alive, "running")

    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    _set_owner(path, dead, exited.pid, None)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _set_owner(path, alive, sleeper.pid, process_marker(sleeper.pid))
        # a live pid whose start marker differs: the pid was reused by another process
        _set_owner(path, reused, sleeper.pid, "other-boot:12345")

        second = Store(path)  # e.g. the Streamlit server opening while a CLI train runs
        status = {r.id: r.status for r in second.list_runs()}
        assert status == {
            ours: "running",
            done: "finished",
            dead: "interrupted",
            reused: "interrupted",
            alive: "running",
        }
        assert "ended" in second.get_run(dead).error
        assert second.get_run(dead).ended_at is not None
        second.close()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert Store(path).get_run(alive).status == "interrupted"


def test_newer_schema_is_refused(store):
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ValueError, match="schema version"):
        Store(store.path)


def test_store_uses_wal(store):
    _new_run(store)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "metrics", "schema_version"} <= tables


def test_cli_runs_and_export(tmp_path, capsys):
    path = tmp_path / "cli" / "runs.sqlite"
    rec = run_foreground("a2c", TINY, seed=0, device="cpu", store=Store(path), name="tiny")
    assert rec.status == "finished"
    n_updates = TINY["total_steps"] // (TINY["num_envs"] * TINY["n_steps"])

    assert main(["runs", "--json", "--store", str(path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [rec.id]
    assert listed[0]["status"] == "finished" and listed[0]["env_steps"] == 256
    assert listed[0]["config"]["n_steps"] == 16

    assert main(["runs", "--store", str(path)]) == 0
    table = capsys.readouterr().out
    assert rec.id in table and "finished" in table and "256/256" in table

    expected = Store(path).metrics(rec.id)
    assert len(expected) == n_updates and list(expected["update"]) == list(range(1, 9))
    csv_path = tmp_path / "m.csv"
    assert (
        main(
            ["export", rec.id[:5], "--format", "csv", "--out", str(csv_path), "--store", str(path)]
        )
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), expected, check_dtype=False)
    pq_path = tmp_path / "m.parquet"
    assert (
        main(["export", "tiny", "--format", "parquet", "--out", str(pq_path), "--store", str(path)])
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_parquet(pq_path), expected)
    capsys.readouterr()
    assert main(["export", rec.id, "--format", "config", "--out", "-", "--store", str(path)]) == 0
    algo, cfg = parse_config_json(capsys.readouterr().out)
    assert algo == "a2c" and cfg.to_dict() == rec.config

    assert main(["export", "zzzz", "--format", "csv", "--store", str(path)]) == 2
    assert "no run 'zzzz'" in capsys.readouterr().err


_WRITER_SCRIPT = """
import sys
from pglab.store import Store
store = Store(sys.argv[1])
for k in range(1, 201):
    store.append_metrics(sys.argv[2], [{"time/updates": float(k), "x": float(k)}])
"""


def test_concurrent_writers_never_see_locked(store):
    """Eight writer threads, a reader thread and a writer in another process, one database."""
    ids = [_new_run(store, seed=i) for i in range(9)]
    errors: list[BaseException] = []

    def write(rid: str, i: int) -> None:
        own = Store(store.path) if i % 2 else store  # separate Store objects and shared ones
        try:
            own.set_status(rid, "running")
            for k in range(1, 101):
                own.append_metrics(rid, [{"time/updates": float(k), "x": float(i * 1000 + k)}])
            own.set_status(rid, "finished")
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.release_thread()

    def read() -> None:
        try:
            for _ in range(50):
                for rid in ids:
                    store.metrics(rid)
                store.list_runs()
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.release_thread()

    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER_SCRIPT, str(store.path), ids[8]],
        cwd=Path(__file__).resolve().parents[1],
        stderr=subprocess.PIPE,
    )
    threads = [threading.Thread(target=write, args=(rid, i)) for i, rid in enumerate(ids[:8])]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert errors == []
    for i, rid in enumerate(ids[:8]):
        assert [r["x"] for r in store.metric_rows(rid)] == [i * 1000 + k for k in range(1, 101)]
        assert store.get_run(rid).status == "finished"
    assert len(store.metric_rows(ids[8])) == 200


def _open_handles(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_connections_of_ended_threads_are_closed(store):
    """Streamlit runs each rerun in a new thread: a reader per rerun must not leak handles."""
    store.list_runs()
    before = _open_handles(store.path)
    for _ in range(30):
        t = threading.Thread(target=store.list_runs)  # no release_thread(), like a page
        t.start()
        t.join()
    # sqlite may hold one closed handle back while others lock the file (POSIX lock rules)
    assert _open_handles(store.path) <= before + 3
    store.close()
    assert _open_handles(store.path) == 0


def test_runs_without_a_group_are_grouped_by_config(tmp_path):
    """Seeds of one config trained one by one (the CLI) share a group; other configs do not."""
    store = Store(tmp_path / "g.sqlite")
    cfg = {"env_id": "CartPole-v1", "total_steps": 1000, "gamma": 0.99}
    a = store.create_run(algo="ppo", env_id="CartPole-v1", config=cfg, seed=0, device="cpu")
    b = store.create_run(algo="ppo", env_id="CartPole-v1", config=cfg, seed=1, device="cpu")
    c = store.create_run(
        algo="ppo", env_id="CartPole-v1", config={**cfg, "gamma": 0.9}, seed=0, device="cpu"
    )
    d = store.create_run(
        algo="ppo", env_id="CartPole-v1", config=cfg, seed=2, device="cpu", group="mine"
    )
    groups = {r.id: r.group for r in store.list_runs()}
    assert groups[a] == groups[b] != groups[c]
    assert groups[a].startswith("ppo · CartPole-v1 · config ") and groups[d] == "mine"


def test_schema_1_store_is_migrated_in_place(tmp_path):
    """A store written by schema 1 (no launch/worker columns) opens, keeps its runs, gains them."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, algo TEXT NOT NULL,
            env_id TEXT NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL,
            device TEXT NOT NULL, status TEXT NOT NULL, error TEXT, run_group TEXT,
            created_at REAL NOT NULL, started_at REAL, ended_at REAL, version TEXT NOT NULL,
            pid INTEGER, proc_start TEXT, host TEXT, env_steps INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER NOT NULL DEFAULT 0, final_return REAL);
        CREATE TABLE metrics (run_id TEXT NOT NULL, update_idx INTEGER NOT NULL,
            data TEXT NOT NULL, PRIMARY KEY (run_id, update_idx)) WITHOUT ROWID;
        INSERT INTO runs VALUES ('abcd1234', 'old', 'ppo', 'CartPole-v1', '{}', 3, 'cpu',
            'finished', NULL, 'g', 1.0, 1.0, 2.0, '0.0.1', NULL, NULL, NULL, 10, 10, 9.5);
        """
    )
    conn.commit()
    conn.close()
    store = Store(path)
    old = store.get_run("abcd1234")
    assert old is not None and old.seed == 3 and old.final_return == 9.5 and old.launch is None
    new_id = store.create_run(algo="ppo", env_id="CartPole-v1", config={}, seed=0, device="cpu")
    new = store.get_run(new_id)
    assert new.launch == f"L{new_id}" and new.worker_pid == os.getpid()
    version = sqlite3.connect(path).execute("SELECT MAX(version) FROM schema_version").fetchone()
    assert version[0] == 2
