"""Faults and fuzz: bad input, damaged stores, full disks and killed processes end in one clear
line naming what to change, never a traceback, a runaway allocation or silently lost data."""

from __future__ import annotations

import contextlib
import json
import re
import string
from pathlib import Path

import pytest
import test_browser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pglab.config import MAX_JSON_DEPTH, MAX_STR_LEN, parse_json
from pglab.store import parse_config_json

server = test_browser.server  # the real-server fixture of the browser tests


# -- config JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"algo": 5}', r"^algo: expected a string naming the algorithm .* got a number 5$"),
        ('{"algo": "ppo", "algo": "a2c"}', r"^'algo': given twice in the config JSON"),
        ('{"algo": "ppo", "gamma": 0.9, "gamma": 0.5}', r"^'gamma': given twice"),
        ("[" * 100_000 + "]" * 100_000, rf"nested 100000 levels deep \(at most {MAX_JSON_DEPTH}\)"),
        ('{"algo": "ppo", "learning_rate": ' + "9" * 400 + "}", r"^learning_rate: an integer of 400 digits is beyond the range"),
        ('{"algo": "ppo", "total_steps": ' + "9" * 5000 + "}", r"^total_steps: an integer of 5000 digits"),
        ('{"algo": "ppo", "total_steps": ' + "9" * 30 + "}", r"^total_steps: .* beyond the range"),
        ('{"algo": "ppo", "learning_rate": 1e400}', r"^learning_rate: inf must be a finite number"),
        ('{"algo": "ppo", "gamma": Infinity}', r"^gamma: inf must be a finite number"),
        ('{"algo": "ppo", "gamma": NaN}', r"^gamma: nan must be a finite number"),
        ('{"algo": "ppo", "grad_diagnostics": "maybe"}', r"^grad_diagnostics: 'maybe' is not a valid bool \(true or false\)$"),
        ('{"algo": "ppo", "num_envs": [1]}', r"^num_envs: expected an integer \(in \[1, 256\]\), got a list$"),
        ('{"algo": "ppo", "hidden_size": 12.5}', r"^hidden_size: 12.5 is not a valid int"),
        ('{"algo": "ppo", "nope": 1}', r"^nope: not a setting of ppo"),
        ('"ppo"', r"expected a JSON object"),
        ("{}", r"^algo: missing"),
        ("{nope", r"^config JSON: not valid JSON"),
    ],
)  # fmt: skip
def test_bad_config_json_is_one_line_naming_the_field(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        parse_config_json(text)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600  # PPO lists ~40 fields


def test_long_strings_are_cut_in_the_message() -> None:
    env = "x" * 50_000_000  # 50 MB: past the JSON size limit, and past the string limit
    with pytest.raises(ValueError, match=r"too large \(at most 1,000,000\)") as info:
        parse_config_json(json.dumps({"algo": "ppo", "env_id": env}))
    assert len(str(info.value)) < 300
    with pytest.raises(ValueError, match=rf"^env_id: 'x+'\.\.\. \(5000 characters\) is too long \(at most {MAX_STR_LEN}") as info:  # fmt: skip
        parse_config_json(json.dumps({"algo": "ppo", "env_id": "x" * 5000}))
    assert len(str(info.value)) < 300


def test_bytes_and_bad_utf8() -> None:
    assert parse_config_json(b'{"algo": "ppo", "total_steps": 64}')[1].total_steps == 64
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_config_json(b'{"algo": "\xff"}')


def test_cli_config_file_faults(tmp_path, capsys) -> None:
    from pglab.cli import main

    cases = {
        "dup.json": '{"algo": "ppo", "algo": "a2c"}',
        "deep.json": "[" * 50_000,
        "big.json": '{"algo": "ppo", "learning_rate": ' + "9" * 400 + "}",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    for name in [*cases, "missing.json", "."]:
        rc = main(
            ["train", "--config", str(tmp_path / name), "--store", str(tmp_path / "s.sqlite")]
        )
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("pglab train: error: ") and "\n" not in err, (name, err)
    assert not (tmp_path / "s.sqlite").exists()  # nothing stored for bad input


# -- property-based: any JSON is a valid config or one ValueError line naming a field ---------
_FIELDS = ["algo", "env_id", "total_steps", "learning_rate", "gamma", "num_envs", "n_steps",
           "batch_size", "grad_diagnostics", "target_kl", "activation", "hidden_size", "x"]  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(string.printable, max_size=300)
    | st.sampled_from(["ppo", "a2c", "trpo", "reinforce", "CartPole-v1", "true", "none", "relu"])
)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8)  # fmt: skip
_configs = st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_configs | _values, dup=st.booleans(), nest=st.integers(0, 60))
def test_fuzz_config_json(data, dup: bool, nest: int) -> None:
    text = json.dumps(data)
    if dup and isinstance(data, dict) and data:
        key = next(iter(data))
        text = text[:-1] + f", {json.dumps(key)}: 1}}"
    text = "[" * nest + text + "]" * nest
    try:
        algo, cfg = parse_config_json(text)
    except ValueError as exc:
        msg = str(exc)
        assert "\n" not in msg and len(msg) < 500, msg
        head = msg.split(":", 1)[0]
        assert head in {*_FIELDS, "config JSON", "'algo'", "''"} or head.startswith("'"), msg
        assert "Traceback" not in msg
    else:
        assert algo in {"ppo", "a2c", "trpo", "reinforce"} and cfg.algo == algo


def test_parse_json_depth_limit_is_checked_before_recursion() -> None:
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ValueError, match="nested"):
        parse_json("{" * 1_000_000)  # a RecursionError would escape a plain json.loads
    assert parse_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == {"a": "[" * 42}


# -- the gradient diagnostic under a fixed memory cap ------------------------------------------
def test_grad_moments_match_the_full_samples_across_chunk_boundaries() -> None:
    import torch
    from gymnasium.spaces import Box

    from pglab.diagnostics import grad_moments, grad_samples, grad_stats
    from pglab.policies import CategoricalMLP

    torch.manual_seed(0)
    policy = CategoricalMLP(Box(-1, 1, (3,)), 2, hidden_size=5, n_layers=1)
    lengths = [7, 0, 1, 40, 3, 0, 65, 2]  # empty segments, and ones longer than a piece
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    B = int(seg.numel())
    obs, actions, w = torch.randn(B, 3), torch.randint(0, 2, (B,)), torch.randn(B)
    full = grad_samples(policy, obs, actions, w, seg, len(lengths))
    ref = grad_stats(full)
    for chunk in (1, 2, 3, 5, None):
        got = grad_moments(policy, obs, actions, w, seg, len(lengths), chunk_size=chunk)
        assert torch.allclose(got["mean"], ref["mean"], atol=1e-6)
        assert got["variance"] == pytest.approx(ref["variance"], rel=1e-5)
        assert got["snr"] == pytest.approx(ref["snr"], rel=1e-5)
        assert torch.allclose(got["sq_norms"].float(), full.pow(2).sum(1), rtol=1e-5)
        chunked = grad_samples(policy, obs, actions, w, seg, len(lengths), chunk_size=chunk)
        assert torch.allclose(chunked, full, atol=1e-6)


def test_grad_diagnostic_memory_is_capped_whatever_the_batch() -> None:
    """400 episodes x 68k parameters are 110 MB of samples (and as much again to centre them);
    under a 16 MB cap the diagnostic's peak stays within a few caps."""
    import subprocess
    import sys

    code = """
import resource, torch
from gymnasium.spaces import Box
import pglab.diagnostics as d
from pglab.policies import CategoricalMLP
d.DIAG_MEMORY_BYTES = 16 * 2**20
torch.manual_seed(0)
policy = CategoricalMLP(Box(-1, 1, (4,)), 2, hidden_size=256, n_layers=2)
m, L = 400, 4
seg = torch.arange(m).repeat_interleave(L)
obs, act, w = torch.randn(m * L, 4), torch.randint(0, 2, (m * L,)), torch.randn(m * L)
d.policy_grad_diagnostics(policy, obs[:8], act[:8], w[:8], seg[:8] // 4, 2)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = d.policy_grad_diagnostics(policy, obs, act, w, seg, m)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert out["diag/grad_var"] > 0
print((peak - before) / d.DIAG_MEMORY_BYTES)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip()) < 4  # the m x P samples alone are 7 caps


# -- resource budget -----------------------------------------------------------------------------
def test_budget_refuses_with_the_estimate_and_the_field(monkeypatch) -> None:
    from pglab.engine import validate_launch

    huge = {"num_envs": 256, "n_steps": 8192, "batch_size": 1_048_576, "hidden_size": 1024}
    with pytest.raises(ValueError, match=r"^batch_size: this ppo config needs about [\d.]+ GB of memory at peak \(rollout .*\), over the budget of .*PGLAB_MEMORY_BUDGET_GB"):  # fmt: skip
        validate_launch("ppo", huge)
    # the config of the OOM (3.8 GB, asking 3.4 GB more) now fits: diagnostics capped
    validate_launch("ppo", {"num_envs": 64, "n_steps": 256, "hidden_size": 1024})
    monkeypatch.setenv("PGLAB_MEMORY_BUDGET_GB", "0.1")
    with pytest.raises(ValueError, match=r"^grad_diagnostics: .*PGLAB_MEMORY_BUDGET_GB=0.1; set grad_diagnostics=false$"):  # fmt: skip
        validate_launch("a2c", {"hidden_size": 512})
    validate_launch("a2c", {"hidden_size": 512, "grad_diagnostics": False})
    monkeypatch.setenv("PGLAB_MEMORY_BUDGET_GB", "lots")
    with pytest.raises(ValueError, match=r"^PGLAB_MEMORY_BUDGET_GB: 'lots' is not allowed"):
        validate_launch("a2c", {})


def test_budget_estimates_rows() -> None:
    from pglab.algos import make_config
    from pglab.budget import estimate
    from pglab.store import stored_row_count

    tiny = estimate("a2c", make_config("a2c", {"num_envs": 1, "n_steps": 1, "total_steps": 50_000_000}))  # fmt: skip
    assert tiny.steps_per_update == (1, 1) and tiny.updates == 50_000_000
    assert tiny.rows_per_s == 1500 and tiny.stored_rows == stored_row_count(50_000_000) < 75_000


def test_ppo_one_step_rollout_is_a_clear_validation_error() -> None:
    from pglab.engine import validate_launch

    with pytest.raises(ValueError, match=r"^norm_adv: normalising advantages needs a rollout of at least 2 steps"):  # fmt: skip
        validate_launch("ppo", {"num_envs": 1, "n_steps": 1, "batch_size": 1})


# -- bounded history and store decimation --------------------------------------------------------
def test_metric_history_is_bounded_and_reads_like_a_list() -> None:
    from pglab.engine import MetricHistory

    h = MetricHistory(tail=100, old=50)
    rows = [{"time/updates": float(i + 1)} for i in range(10_000)]
    for k, r in enumerate(rows):
        h.append(r)
        if k < 150:
            assert h[0:] == rows[: k + 1]  # exact while nothing was decimated
    assert len(h) == 10_000 and h[-1] is rows[-1]
    kept = h[0:]
    assert len(kept) <= 151 and kept[0] is rows[0] and kept[-100:] == rows[-100:]
    steps = [r["time/updates"] for r in kept]
    assert steps == sorted(steps)  # in order, spanning the whole run
    assert h[9_950:] == rows[9_950:]  # a live reader's cursor in the tail: exactly the new rows
    assert h[10_000:] == []


def test_keep_row_counts_exactly() -> None:
    from pglab.store import KEEP_ALL_ROWS, keep_row, stored_row_count

    for u in (1, KEEP_ALL_ROWS, KEEP_ALL_ROWS + 1, 3 * KEEP_ALL_ROWS + 7, 9 * KEEP_ALL_ROWS):
        brute = sum(keep_row(i) for i in range(1, u + 1)) + (0 if keep_row(u) else 1)
        assert stored_row_count(u) == brute
    assert keep_row(KEEP_ALL_ROWS + 2) and not keep_row(KEEP_ALL_ROWS + 1)
    assert stored_row_count(50_000_000) == 71_104


TINY = {"env_id": "CartPole-v1", "num_envs": 1, "n_steps": 1, "grad_diagnostics": False}


def test_engine_decimates_stored_rows_and_keeps_the_last(tmp_path, monkeypatch) -> None:
    import pglab.store
    from pglab.engine import Registry
    from pglab.store import Store, keep_row, stored_row_count

    monkeypatch.setattr(pglab.store, "KEEP_ALL_ROWS", 20)
    store = Store(tmp_path / "s.sqlite")
    registry = Registry(store)
    rid = registry.launch("a2c", {**TINY, "total_steps": 301})
    assert registry.wait(rid, 60) == "finished"
    stored = [int(r["time/updates"]) for r in store.metric_rows(rid)]
    assert stored == [u for u in range(1, 302) if keep_row(u) or u == 301]
    assert len(stored) == stored_row_count(301)
    assert len(registry.snapshot(rid)[0]) == 301  # memory keeps every row of a short run
    assert store.get_run(rid).env_steps == 301  # the record follows the newest row
    registry.clear()


# -- checkpoints -------------------------------------------------------------------------------
def test_periodic_checkpoints_survive_a_failure(tmp_path, monkeypatch) -> None:
    import pglab.engine
    from pglab.engine import Registry
    from pglab.store import Store

    monkeypatch.setattr(pglab.engine, "CHECKPOINT_MIN_S", 0.0)
    monkeypatch.setattr(pglab.engine, "CHECKPOINT_EVERY", 10)
    real = pglab.engine.make_trainer
    saved: list[int] = []

    def failing(*args, **kwargs):
        trainer = real(*args, **kwargs)
        update = trainer.update

        def boom():
            if trainer.updates == 25:
                raise RuntimeError("boom")
            return update()

        trainer.update = boom
        return trainer

    monkeypatch.setattr(pglab.engine, "make_trainer", failing)
    store = Store(tmp_path / "s.sqlite")
    save = store.save_checkpoint
    monkeypatch.setattr(store, "save_checkpoint", lambda rid, st: saved.append(1) or save(rid, st))
    registry = Registry(store)
    rid = registry.launch("a2c", {**TINY, "total_steps": 1000})
    assert registry.wait(rid, 60) == "failed"
    assert len(saved) >= 3  # updates 10, 20 and the end (weights still finite)
    state = store.load_checkpoint(rid)
    assert state is not None and "policy" in state
    registry.clear()


# -- damaged, foreign and unreachable stores ---------------------------------------------------
def _good_store(path) -> str:
    import sqlite3

    from pglab.store import Store

    with Store(path) as s:
        rid = s.create_run(algo="a2c", env_id="CartPole-v1", config={}, seed=0, device="cpu")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return rid


def test_bad_stores_are_one_line_with_a_way_out(tmp_path) -> None:
    import sqlite3

    from pglab.store import Store

    good = tmp_path / "good.sqlite"
    rid = _good_store(good)
    (tmp_path / "corrupt.sqlite").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "trunc.sqlite").write_bytes(good.read_bytes()[:3000])
    schema = tmp_path / "schema.sqlite"
    schema.write_bytes(good.read_bytes())
    conn = sqlite3.connect(schema)
    conn.execute("UPDATE schema_version SET version = 'two'")
    conn.commit()
    conn.close()
    alien = tmp_path / "alien.sqlite"
    sqlite3.connect(alien).execute("CREATE TABLE runs (x INTEGER)").connection.commit()
    (tmp_path / "afile").write_text("x")
    cases = {
        tmp_path: r"is a directory; give a file in it",
        tmp_path / "corrupt.sqlite": r"is not a pglab store, or it is damaged .*\(mv .*\.recover",
        tmp_path / "trunc.sqlite": r"is not a pglab store, or it is damaged",
        schema: r"unreadable schema version 'two': it is not a pglab store",
        alien: r"not a pglab store, or it is damaged",
        tmp_path / "afile" / "runs.sqlite": r"a part of its folder is a file",
    }
    for path, match in cases.items():
        with pytest.raises(ValueError, match="^store: .*" + match) as info:
            Store(path)
        assert "\n" not in str(info.value), path
    with Store(good) as s:  # the good one is untouched by all this
        assert s.get_run(rid) is not None


def test_old_layout_is_migrated(tmp_path) -> None:
    import sqlite3

    from pglab.store import Store

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, algo TEXT NOT NULL, "
        "env_id TEXT NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL, device TEXT NOT NULL, "
        "status TEXT NOT NULL, error TEXT, run_group TEXT, created_at REAL NOT NULL, "
        "started_at REAL, ended_at REAL, version TEXT NOT NULL)"
    )  # before pid, host, env_steps ... and before schema_version existed
    conn.execute(
        "INSERT INTO runs VALUES ('abcd1234', 'old', 'ppo', 'CartPole-v1', '{}', 0, 'cpu', "
        "'running', NULL, NULL, 1.0, NULL, NULL, '0.1')"
    )
    conn.commit()
    conn.close()
    with Store(path) as s:
        rec = s.get_run("abcd1234")
        assert rec.status == "interrupted" and rec.env_steps == 0  # pid NULL: owner is gone


def test_disk_full_at_open_and_unwritable_stores(tmp_path) -> None:
    """Disk full via SQLite's own limit (max_page_count gives the SQLITE_FULL of a full disk);
    read-only file and folder as an unprivileged user (root ignores permissions)."""
    import os
    import shutil
    import subprocess
    import sys

    from pglab.store import Store

    class FullStore(Store):
        def _conn(self):
            conn = super()._conn()
            conn.execute("PRAGMA max_page_count = 1")
            return conn

    path = tmp_path / "full.sqlite"
    with pytest.raises(ValueError, match=r"^store: the disk holding .* is full .*free some space"):
        FullStore(path)
    Store(path).close()  # the file it left (no tables) opens fine once there is room

    shared = tmp_path / "shared"
    shared.mkdir()
    _good_store(shared / "ro.sqlite")
    (shared / "rodir").mkdir()
    _good_store(shared / "rodir" / "s.sqlite")
    tmp_path.chmod(0o755)
    shared.chmod(0o777)
    (shared / "ro.sqlite").chmod(0o444)
    (shared / "rodir" / "s.sqlite").chmod(0o666)
    (shared / "rodir").chmod(0o555)
    code = (
        "import sys\nfrom pglab.store import Store\nfor p in sys.argv[1:]:\n"
        "    try:\n        Store(p)\n    except ValueError as e:\n        print(e)\n"
    )
    cmd = [sys.executable, "-c", code, str(shared / "ro.sqlite"), str(shared / "rodir/s.sqlite")]
    kwargs = {}
    if os.geteuid() == 0:
        if not shutil.which("setpriv") or not os.access("/", os.R_OK):
            pytest.skip("cannot drop root here")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        tmp_path.parent.chmod(0o755)
        for parent in tmp_path.parents:
            if parent == parent.parent:
                break
            parent.chmod(parent.stat().st_mode | 0o005)
    import pglab

    env = {**os.environ, "PYTHONPATH": str(Path(pglab.__file__).parents[1])}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, **kwargs)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stderr[-1500:]
    assert re.match(r"^store: .*ro\.sqlite is read-only .* make it writable", lines[0]), lines[0]
    assert re.match(r"^store: cannot write in .*rodir .* make the folder writable", lines[1]), lines[1]  # fmt: skip


# -- a run whose store fails under it ----------------------------------------------------------
def test_disk_full_during_a_run_fails_it_and_keeps_what_was_written(tmp_path) -> None:
    from pglab.engine import run_foreground
    from pglab.store import Store

    class FillingStore(Store):
        """Lets the run write 20 flushes of rows, then the disk is full."""

        flushes = 0

        def append_metrics(self, run_id, rows, latest=None):
            FillingStore.flushes += 1
            if FillingStore.flushes == 20:
                conn = self._conn()
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {pages}")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                payload = json.dumps({"pad": "x" * 200_000})
                rows = [*rows, *({"pad": payload} for _ in range(5))]  # overflow pages
            return super().append_metrics(run_id, rows, latest)

    import pglab.engine

    store = FillingStore(tmp_path / "s.sqlite")
    old = pglab.engine.FLUSH_INTERVAL_S
    pglab.engine.FLUSH_INTERVAL_S = 0.0
    try:
        rec = run_foreground("a2c", {**TINY, "total_steps": 100_000}, store=store)
    finally:
        pglab.engine.FLUSH_INTERVAL_S = old
    assert rec.status == "failed" and rec.error.startswith("disk full: database or disk is full")
    after = Store(tmp_path / "s.sqlite")
    rows = after.metric_rows(rec.id)
    assert len(rows) >= 19 and [r["time/updates"] for r in rows] == list(range(1, len(rows) + 1))


def test_store_file_removed_under_a_run(tmp_path, capsys) -> None:
    import os
    import threading

    from pglab.cli import main

    path = tmp_path / "s.sqlite"

    def remove_when_rows_exist():
        import sqlite3
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = sqlite3.connect(path)
                n = conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
                conn.close()
            except sqlite3.Error:
                n = 0
            if n >= 3:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(f"{path}{suffix}")
                return
            time.sleep(0.05)

    remover = threading.Thread(target=remove_when_rows_exist)
    remover.start()
    rc = main(["train", "--algo", "a2c", "--steps", "2000000", "--store", str(path),
               "--set", "n_steps=1", "--set", "num_envs=1", "--set", "grad_diagnostics=false"])  # fmt: skip
    remover.join()
    out, err = capsys.readouterr()
    assert rc == 1 and "finished" not in out
    assert "failed" in out
    assert "store file removed" in err.splitlines()[-1]


# -- CLI one-liners -----------------------------------------------------------------------------
def test_cli_bad_paths_and_bounds_are_one_line(tmp_path, capsys) -> None:
    from pglab.cli import main

    store = tmp_path / "s.sqlite"
    rid = _good_store(store)
    s = ["--store", str(store)]
    # fmt: off
    cases = [
        (["export", "", "--format", "csv", *s], r"^run: empty"),
        (["export", rid, "--format", "csv", "--out", str(tmp_path / "no" / "x.csv"), *s],
         r"folder .* does not exist"),
        (["export", rid, "--format", "config", "--out", str(tmp_path), *s], r"is a directory"),
        (["export", rid, "--format", "parquet", "--out", str(tmp_path), *s], r"is a directory"),
        (["runs", "--store", str(tmp_path)], r"^store: .* is a directory"),
        (["export", rid, "--format", "config", "--out", "/dev/full", *s],
         r"^--out: the disk is full writing '/dev/full'"),  # a real ENOSPC
        (["train", "--algo", "a2c", "--threads", "100000", *s],
         r"^--threads: 100000 is not allowed \(an integer in \[1, \d+\]"),
        (["gradlab", "--env", "CartPole-v1", "--seed", "-1"], r"^seed: -1 is not allowed"),
        (["gradlab", "--env", "CartPole-v1", "--episodes", "1000000"],
         r"^episodes: 1000000 is not allowed \(an integer in \[2, 4096\]\)"),
    ]
    # fmt: on
    for argv, match in cases:
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err, (argv, err)
        assert re.search(match, err.split(": error: ", 1)[1]), (argv, err)
    assert main(["export", rid, "--format", "config", "--out", str(tmp_path / "c.json"), *s]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["algo"] == "a2c"


# -- SIGKILL at random moments -----------------------------------------------------------------
_KILLED_SCRIPT = """
import sys
import pglab.engine as engine
engine.CHECKPOINT_MIN_S = 0.3
from pglab.cli import main
main(["train", "--algo", "a2c", "--steps", "5000000", "--store", sys.argv[1],
      "--set", "n_steps=4", "--set", "num_envs=2"])
"""


def test_sigkill_at_random_moments_keeps_every_run_readable(tmp_path) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    from pglab.store import Store, keep_row

    rng = random.Random()
    n = 3
    paths = [tmp_path / f"k{i}" / "runs.sqlite" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", _KILLED_SCRIPT, str(p)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in paths]  # fmt: skip
    # each is killed at its own random moment: before its store exists, while it records the
    # run, mid-flush, mid-checkpoint (the two last iterations wait for a first checkpoint)
    delays = [rng.uniform(0.0, 4.0), rng.uniform(0.0, 1.5), rng.uniform(0.0, 1.5)]
    deadline = time.monotonic() + 90
    for i, (proc, path) in enumerate(zip(procs, paths, strict=True)):
        if i > 0:
            while time.monotonic() < deadline and not list(path.parent.glob("checkpoints/*.pt")):
                time.sleep(0.05)
        time.sleep(delays[i])
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    for i, path in enumerate(paths):
        if not path.exists():
            assert i == 0  # killed before it opened its store: nothing to check
            continue
        with Store(path) as store:
            for rec in store.list_runs():
                assert rec.status == "interrupted", rec
                rows = store.metric_rows(rec.id)
                ups = [int(r["time/updates"]) for r in rows]
                # every row the store keeps (all of them up to KEEP_ALL_ROWS updates, which
                # a fast run passes within the kill window), in order, none lost
                last = ups[-1] if ups else 0
                want = [u for u in range(1, last + 1) if keep_row(u) or u == last]
                assert ups == want, (ups[:3], ups[-3:], len(ups), len(want))
                state = store.load_checkpoint(rec.id)
                if i > 0:
                    assert state is not None  # an interrupted run keeps a policy


# -- pages with a bad store, the Runs page's import, legends ----------------------------------
@pytest.mark.parametrize("page", ["train.py", "compare.py", "runs.py", "gradient_lab.py"])
def test_pages_show_one_error_for_a_damaged_store(tmp_path, monkeypatch, page) -> None:
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[1]
    bad = tmp_path / "corrupt.sqlite"
    bad.write_bytes(b"not a database" * 100)
    monkeypatch.setenv("PGLAB_STORE", str(bad))
    at = AppTest.from_file(str(root / "app.py"), default_timeout=60).run()
    at.switch_page(f"pages/{page}").run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1 and "not a pglab store, or it is damaged" in at.error[0].value


def test_run_names_are_plain_text_in_legends() -> None:
    from pglab.ui.charts import line_figure, plain_text

    assert plain_text('<a href="x">&</a>') == '&lt;a href="x"&gt;&amp;&lt;/a&gt;'
    fig = line_figure([{"x": [0, 1], "y": [1, 2], "name": "<b>bold</b>", "color": "#1f77b4"}], title="t")  # fmt: skip
    assert fig.data[0].name == "&lt;b&gt;bold&lt;/b&gt;"


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_plain_http_checks_the_host_header(server) -> None:
    """A real server and browser: once a session ran app.py, every HTTP request with a Host
    outside server.allowedHosts gets 403 (Streamlit alone checks only its websocket)."""
    import http.client

    from playwright.sync_api import sync_playwright

    base, _ = server
    port = int(base.rsplit(":", 1)[1])

    def status(host: str, path: str = "/") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers={"Host": host})
        code = conn.getresponse().status
        conn.close()
        return code

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])  # fmt: skip
        page = browser.new_page()
        page.goto(base)
        page.get_by_role("heading", name="pglab").first.wait_for(timeout=60_000)
        browser.close()
    assert status("evil.example") == 403
    assert status("evil.example:80", "/_stcore/health") == 403
    assert status(f"localhost:{port}") == 200 and status(f"127.0.0.1:{port}") == 200
