"""The persistent run store: every run, its config, status and metric curve, in one SQLite file.

The lab's pages, the background run engine (:mod:`pglab.engine`) and the CLI's ``train``
all write here, so a run trained from the command line shows up in the lab and nothing is
lost when a tab closes or the server restarts.

Layout (stdlib :mod:`sqlite3`, WAL mode so readers never block the writer)::

    schema_version(version)
    runs(id, name, algo, env_id, config JSON, seed, device, status, error, run_group,
         created_at, started_at, ended_at, version, pid, proc_start, host,
         env_steps, total_steps, final_return,
         launch, worker_pid, worker_host)                -- schema 2

``launch`` is the id of the launch a run belongs to: one Launch click, one ladder, one CLI
invocation (``train --seeds 0-4``) or one sweep trial. ``worker_pid``/``worker_host`` name the
process that trained the run (the engine thread's process, or a Ray worker). Older stores are
migrated in place when opened (columns added, nothing rewritten).
    metrics(run_id, update_idx, data JSON)      -- one wide row per update
    presets(name, algo, env_id, settings JSON, description, source, created_at)
                                                -- user presets (e.g. a promoted sweep trial)

Metrics are stored wide (one JSON object per update) rather than long (one row per metric):
a run of ~400 updates x ~25 metrics is 400 rows to read and ``json.loads``, which builds the
DataFrame of 12 runs in a few milliseconds, where the long form would be 10,000 rows a run
plus a pivot. Readers always want whole updates, never single metrics.

Concurrency: one connection per thread (``sqlite3`` connections must not be shared), every
write in a ``BEGIN IMMEDIATE`` transaction under a process-wide lock per database file, and a
busy timeout for writers in other processes. So eight training threads plus a Streamlit
reader never see "database is locked".

Process death: each run records the pid and a start marker of the process that owns it.
When a store is opened, runs left queued/running/paused by a process that no longer exists
become ``interrupted``; runs owned by another *live* process (the Streamlit server while a
CLI ``train`` runs, or the other way round) are left alone.

Checkpoints live next to the database: ``<store dir>/checkpoints/<run_id>.pt``, written with
``torch.save`` of a state dict of tensors and loaded with ``weights_only=True`` (no pickle
of arbitrary objects).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pglab import __version__

if TYPE_CHECKING:
    import pandas as pd

    from pglab.config import BaseConfig

SCHEMA_VERSION = 2
STATUSES = ("queued", "running", "paused", "stopped", "finished", "failed", "interrupted")
ACTIVE_STATUSES = frozenset({"queued", "running", "paused"})
TERMINAL_STATUSES = frozenset({"stopped", "finished", "failed", "interrupted"})
BUSY_TIMEOUT_S = 30.0
_FRAME_CACHE_RUNS = 64  # metric tables kept in memory (~100 kB each for 400 updates)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    algo TEXT NOT NULL,
    env_id TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    device TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    run_group TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    version TEXT NOT NULL,
    pid INTEGER,
    proc_start TEXT,
    host TEXT,
    env_steps INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    final_return REAL,
    launch TEXT,
    worker_pid INTEGER,
    worker_host TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS presets (
    name TEXT PRIMARY KEY,
    algo TEXT NOT NULL,
    env_id TEXT NOT NULL,
    settings TEXT NOT NULL,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    update_idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, update_idx)
) WITHOUT ROWID;
"""

_RUN_COLUMNS = (
    "id, name, algo, env_id, config, seed, device, status, error, run_group, created_at, "
    "started_at, ended_at, version, env_steps, total_steps, final_return, launch, worker_pid, "
    "worker_host"
)

# Columns added after schema 1, with their SQL types: opening an older store adds them.
_MIGRATIONS: dict[int, tuple[tuple[str, str], ...]] = {
    2: (("launch", "TEXT"), ("worker_pid", "INTEGER"), ("worker_host", "TEXT")),
}

# Every column of the current layout with its declaration (for migrating older layouts).
_LAYOUT: dict[str, dict[str, str]] = {
    table: {
        line.split()[0]: " ".join(line.split()[1:]).rstrip(",")
        for line in body.strip().splitlines()
        if line.strip() and line.split()[0].islower()
    }
    for table, body in (
        ("runs", _SCHEMA.split("CREATE TABLE IF NOT EXISTS runs (")[1].split(");")[0]),
        ("metrics", _SCHEMA.split("CREATE TABLE IF NOT EXISTS metrics (")[1].split(")")[0]),
    )
}

# One lock per database file for the whole process: sqlite serialises writers anyway, but
# waiting on a Python lock is cheaper than sqlite's sleep-and-retry busy handler and makes
# in-process writers (the engine's threads) strictly first come, first served.
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def new_launch_id() -> str:
    """A fresh launch id (``L`` + 8 hex digits): every run a launch starts carries it."""
    return "L" + secrets.token_hex(4)


def default_store_path() -> Path:
    """``$PGLAB_STORE`` if set, else ``~/.pglab/runs.sqlite``."""
    env = os.environ.get("PGLAB_STORE", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".pglab" / "runs.sqlite"


@dataclass(frozen=True)
class RunRecord:
    """One run as stored. Times are unix seconds; ``env_steps``/``final_return`` are the latest."""

    id: str
    name: str
    algo: str
    env_id: str
    config: dict[str, Any]
    seed: int
    device: str
    status: str
    error: str | None
    group: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    version: str
    env_steps: int
    total_steps: int
    final_return: float | None  # latest rollout/return_last20; None before any episode ended
    launch: str | None = None  # the launch (click, ladder, CLI call, sweep trial) it came from
    worker_pid: int | None = None  # the process that trained it
    worker_host: str | None = None

    @property
    def active(self) -> bool:
        """Queued, running or paused."""
        return self.status in ACTIVE_STATUSES

    @property
    def fraction(self) -> float:
        """Share of the step budget done, in [0, 1]."""
        return min(1.0, self.env_steps / self.total_steps) if self.total_steps else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "algo": self.algo,
            "env_id": self.env_id,
            "config": self.config,
            "seed": self.seed,
            "device": self.device,
            "status": self.status,
            "error": self.error,
            "group": self.group,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "version": self.version,
            "env_steps": self.env_steps,
            "total_steps": self.total_steps,
            "final_return": self.final_return,
            "launch": self.launch,
            "worker_pid": self.worker_pid,
            "worker_host": self.worker_host,
        }


# -- process identity ------------------------------------------------------------------------------
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) from /proc, or None if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], rest[19]  # field 3 (state), field 22 (starttime)


def process_marker(pid: int | None = None) -> str | None:
    """A token that tells this process apart from a later one that reuses its pid.

    ``boot id : start time`` on Linux; None where /proc is not available (then only the pid
    is compared, which is right unless the pid was reused).
    """
    stat = _proc_stat(os.getpid() if pid is None else pid)
    if stat is None:
        return None
    return f"{_boot_id()}:{stat[1]}"


def process_alive(pid: int | None, marker: str | None, host: str | None) -> bool:
    """Whether the process that owns a run is still running (zombies count as dead)."""
    if pid is None:
        return False
    if host and host != socket.gethostname():
        return True  # a store on a shared disk: we cannot see the other machine's processes
    if pid == os.getpid():
        return marker is None or marker == process_marker()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: trust the pid
    if stat[0] in ("Z", "X"):
        return False
    return marker is None or marker == process_marker(pid)


# -- the store -------------------------------------------------------------------------------------
class Store:
    """The run store at ``path`` (default :func:`default_store_path`). Safe to share across threads.

    Opening a store creates it if needed and marks runs of dead processes ``interrupted``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self._local = threading.local()
        # every open connection with the thread that owns it, so connections of threads that
        # ended without release_thread() (Streamlit runs each rerun in a fresh thread) are
        # closed instead of leaking one file handle per rerun
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        try:
            self._open()
        except ValueError:
            self.close()
            raise
        except (OSError, sqlite3.Error, TypeError) as exc:
            self.close()
            raise ValueError(open_error(self.path, exc)) from None

    def _open(self) -> None:
        if str(self.path).strip() == "":
            raise ValueError("store: the path is empty; give a file such as ~/.pglab/runs.sqlite")
        if self.path.is_dir():
            raise ValueError(
                f"store: {self.path} is a directory; give a file in it, such as "
                f"{self.path / 'runs.sqlite'} (--store or $PGLAB_STORE)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite opens a read-only store without complaint and fails at the first write, deep
        # inside a run: refuse it here instead, with the fix
        if not os.access(self.path.parent, os.W_OK):
            raise ValueError(open_error(self.path, sqlite3.OperationalError("readonly")))
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise ValueError(
                open_error(
                    self.path, sqlite3.OperationalError("attempt to write a readonly database")
                )
            )
        key = str(self.path.resolve())
        with _WRITE_LOCKS_GUARD:
            self._write_lock = _WRITE_LOCKS.setdefault(key, threading.Lock())
        self._frames: OrderedDict[str, pd.DataFrame] = OrderedDict()  # metrics(), LRU
        self._frames_lock = threading.Lock()
        self._host = socket.gethostname()
        self._marker = process_marker()
        self._init_schema()
        self.mark_interrupted()
        self._identity = _file_identity(self.path)

    def check_present(self) -> None:
        """Raise :class:`StoreGoneError` if the store's file was deleted or replaced since it
        was opened (SQLite would go on writing to the unlinked file, and lose everything)."""
        if _file_identity(self.path) != self._identity:
            raise StoreGoneError(f"store file removed: {self.path} was deleted or replaced")

    # -- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN ourselves, so reads never hold a transaction.
            # check_same_thread=False only so close() may close it; each thread uses its own.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against process death in WAL mode (only an OS crash can lose
            # the last commits), and much cheaper than FULL's fsync per commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._conns_lock:
                dead = [c for t, c in self._conns if not t.is_alive()]
                self._conns = [(t, c) for t, c in self._conns if t.is_alive()]
                self._conns.append((threading.current_thread(), conn))
            for old in dead:
                with contextlib.suppress(sqlite3.Error):
                    old.close()
        return conn

    def release_thread(self) -> None:
        """Close the calling thread's connection (worker threads call this as they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._conns_lock:
                self._conns = [(t, c) for t, c in self._conns if c is not conn]
            conn.close()

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for _, conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks
            try:
                yield conn
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL): a second ROLLBACK
                # would fail and hide the real error
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _init_schema(self) -> None:
        conn = self._conn()
        with self._write_lock:
            # executescript commits as it goes, so it runs outside _write(); every statement
            # is CREATE ... IF NOT EXISTS, safe when two processes open a new store at once.
            conn.executescript(_SCHEMA)
        with self._write() as conn:
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row[0] is not None and (isinstance(row[0], bool) or not isinstance(row[0], int)):
                raise ValueError(
                    f"store: {self.path} has an unreadable schema version {str(row[0])[:40]!r}: "
                    f"it is not a pglab store, or it is damaged. {recovery_hint(self.path)}"
                )
            if row[0] is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                self._migrate(conn, SCHEMA_VERSION)  # a layout older than schema_version
            elif row[0] > SCHEMA_VERSION:
                raise ValueError(
                    f"store: {self.path} has schema version {row[0]}, newer than this pglab "
                    f"({SCHEMA_VERSION}); upgrade pglab or use another --store"
                )
            else:
                self._migrate(conn, int(row[0]))

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring a store of schema ``version`` up to :data:`SCHEMA_VERSION` (in the open write).

        Beyond the listed steps, any column of the current layout that an older store lacks
        (stores written before ``schema_version`` tracked every change, e.g. without ``pid``)
        is added when it can be (nullable or with a default); a table missing a column the
        lab cannot invent (``runs.config``, ``metrics.data``) means it is not a pglab store.
        """
        have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for column, sql_type in _MIGRATIONS.get(step, ()):
                if column not in have:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}")
                    have.add(column)
        for table, columns in _LAYOUT.items():
            present = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            for column, decl in columns.items():
                if column in present:
                    continue
                if "NOT NULL" in decl and "DEFAULT" not in decl:
                    raise ValueError(
                        f"store: {self.path} has a {table} table without its {column} column: "
                        f"it is not a pglab store, or it is damaged. {recovery_hint(self.path)}"
                    )
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        if version != SCHEMA_VERSION:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def mark_interrupted(self) -> list[str]:
        """Mark runs whose owning process has died ``interrupted``; returns their ids."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, pid, proc_start, host FROM runs WHERE status IN (?, ?, ?)",
                tuple(sorted(ACTIVE_STATUSES)),
            )
            .fetchall()
        )
        dead = [r[0] for r in rows if not process_alive(r[1], r[2], r[3])]
        if dead:
            now = time.time()
            with self._write() as conn:
                conn.executemany(
                    "UPDATE runs SET status = 'interrupted', ended_at = ?, "
                    "error = COALESCE(error, 'the process running it ended before it finished') "
                    "WHERE id = ? AND status IN ('queued', 'running', 'paused')",
                    [(now, run_id) for run_id in dead],
                )
        return dead

    # -- runs ----------------------------------------------------------------------------------
    def create_run(
        self,
        *,
        algo: str,
        env_id: str,
        config: dict[str, Any],
        seed: int,
        device: str,
        name: str | None = None,
        group: str | None = None,
        launch: str | None = None,
        status: str = "queued",
    ) -> str:
        """Insert a new run owned by this process; returns its id (8 hex digits).

        Without a ``group``, runs of the same algorithm and config (seeds aside) share one,
        so seeds trained one by one from the CLI still form a band on the Compare page.
        ``launch`` is the id of the launch the run belongs to (:func:`new_launch_id`); without
        one the run is a launch of its own.
        """
        _check_status(status)
        if group is None:
            digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()
            group = f"{algo} · {env_id} · config {digest[:6]}"
        config_text = json.dumps(config, sort_keys=False)
        total = int(config.get("total_steps", 0) or 0)
        for _ in range(10):
            run_id = secrets.token_hex(4)
            try:
                with self._write() as conn:
                    conn.execute(
                        "INSERT INTO runs (id, name, algo, env_id, config, seed, device, status, "
                        "run_group, created_at, version, pid, proc_start, host, total_steps, "
                        "launch, worker_pid, worker_host) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            run_id,
                            name or f"{algo}-{env_id}-s{seed}-{run_id[:4]}",
                            algo,
                            env_id,
                            config_text,
                            int(seed),
                            device,
                            status,
                            group,
                            time.time(),
                            __version__,
                            os.getpid(),
                            self._marker,
                            self._host,
                            total,
                            launch or f"L{run_id}",
                            os.getpid(),
                            self._host,
                        ),
                    )
                return run_id
            except sqlite3.IntegrityError:
                continue  # id collision (1 in 4 billion): draw another
        raise RuntimeError("could not draw a unique run id")

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        """Set the status; stamps ``started_at`` on first running and ``ended_at`` when final."""
        _check_status(status)
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, error = ?, "
                "started_at = CASE WHEN ? = 'running' AND started_at IS NULL THEN ? "
                "ELSE started_at END, "
                "ended_at = CASE WHEN ? THEN ? ELSE NULL END WHERE id = ?",
                (status, error, status, now, status in TERMINAL_STATUSES, now, run_id),
            )
            if cur.rowcount == 0:
                raise ValueError(f"run: {run_id!r} is not in the store {self.path}")

    def set_worker(self, run_id: str, pid: int, host: str) -> None:
        """Record the process that trains the run (a Ray worker's, say, not the driver's)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET worker_pid = ?, worker_host = ? WHERE id = ?",
                (int(pid), str(host), run_id),
            )

    def append_metrics(
        self,
        run_id: str,
        rows: list[dict[str, float]],
        latest: dict[str, float] | None = None,
    ) -> None:
        """Append update rows (one dict per update) in one transaction.

        The update index is ``time/updates`` when a row has it (the trainers' 1-based count),
        else the next index after the last stored one. ``latest`` (default: the last of
        ``rows``) is the newest update, whose steps and return go into the run's record even
        when the engine decimated it away (:func:`keep_row`).
        """
        latest = latest if latest is not None else (rows[-1] if rows else None)
        if latest is None:
            return
        with self._write() as conn:
            last = conn.execute(
                "SELECT MAX(update_idx) FROM metrics WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            nxt = 1 if last is None else last + 1
            params = []
            for row in rows:
                idx = int(row["time/updates"]) if "time/updates" in row else nxt
                nxt = idx + 1
                params.append((run_id, idx, json.dumps(row)))
            conn.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, update_idx, data) VALUES (?, ?, ?)",
                params,
            )
            ret = latest.get("rollout/return_last20")
            conn.execute(
                "UPDATE runs SET env_steps = COALESCE(?, env_steps), "
                "final_return = COALESCE(?, final_return) WHERE id = ?",
                (
                    int(latest["time/env_steps"]) if "time/env_steps" in latest else None,
                    ret if ret is not None and math.isfinite(ret) else None,
                    run_id,
                ),
            )

    def list_runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        rows = (
            self._conn()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id")
            .fetchall()
        )
        return [_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
            .fetchone()
        )
        return _record(row) if row else None

    def resolve(self, prefix: str) -> str:
        """The id of the one run whose id (or name) is ``prefix`` or starts with it."""
        prefix = prefix.strip()
        if not prefix:
            raise ValueError("run: empty; give a run id, a unique prefix of one, or a run name")
        conn = self._conn()
        exact = conn.execute(
            "SELECT id FROM runs WHERE id = ? OR name = ?", (prefix, prefix)
        ).fetchall()
        if len(exact) == 1:
            return exact[0][0]
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        hits = conn.execute("SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\'", (like,)).fetchall()
        if len(hits) == 1:
            return hits[0][0]
        if not hits:
            raise ValueError(f"run: no run {prefix!r} in {self.path}")
        raise ValueError(f"run: {prefix!r} matches {len(hits)} runs; give more of the id")

    def metric_rows(self, run_id: str, since: int = 0) -> list[dict[str, float]]:
        """Stored update rows as dicts, skipping the first ``since`` (a reader's cursor)."""
        rows = (
            self._conn()
            .execute(
                "SELECT data FROM metrics WHERE run_id = ? ORDER BY update_idx LIMIT -1 OFFSET ?",
                (run_id, int(since)),
            )
            .fetchall()
        )
        return [json.loads(r[0]) for r in rows]

    def metrics(self, run_id: str) -> pd.DataFrame:
        """One row per update: column ``update`` (1-based) and one column per metric name.

        A metric an update did not report is NaN in that row (e.g. returns before the first
        episode ends). Tables are cached per run and extended with only the new updates, so
        the Compare page's rerun over a dozen finished runs costs a COUNT query each.
        """
        import pandas as pd

        conn = self._conn()
        count, last = conn.execute(
            "SELECT COUNT(*), MAX(update_idx) FROM metrics WHERE run_id = ?", (run_id,)
        ).fetchone()
        if not count:
            return pd.DataFrame({"update": pd.Series([], dtype="int64")})
        with self._frames_lock:
            cached = self._frames.get(run_id)
            if cached is not None:
                self._frames.move_to_end(run_id)
        if cached is not None and (len(cached), int(cached["update"].iloc[-1])) == (count, last):
            return cached.copy()
        # Only updates after the cached ones are read, unless the stored rows changed under us
        # (a run deleted and recorded again): then the whole table is rebuilt.
        frame = None
        if cached is not None and count > len(cached) and last > cached["update"].iloc[-1]:
            new = self._read_frame(run_id, after=int(cached["update"].iloc[-1]))
            frame = pd.concat([cached, new], ignore_index=True)
        if frame is None or len(frame) != count:
            frame = self._read_frame(run_id, after=-1)
            if len(frame) != count:  # rows were flushed between the two queries
                return frame
        with self._frames_lock:
            self._frames[run_id] = frame
            while len(self._frames) > _FRAME_CACHE_RUNS:
                self._frames.popitem(last=False)
        return frame.copy()

    def _read_frame(self, run_id: str, after: int) -> pd.DataFrame:
        import pandas as pd

        rows = (
            self._conn()
            .execute(
                "SELECT update_idx, data FROM metrics WHERE run_id = ? AND update_idx > ? "
                "ORDER BY update_idx",
                (run_id, after),
            )
            .fetchall()
        )
        # one json.loads of a JSON array is markedly cheaper than one call per row
        frame = pd.DataFrame.from_records(json.loads("[" + ",".join(r[1] for r in rows) + "]"))
        frame.insert(0, "update", [r[0] for r in rows])
        return frame

    def delete_run(self, run_id: str) -> None:
        """Remove a run, its metrics and its checkpoint. A run still training cannot be deleted."""
        run = self.get_run(run_id)
        if run is None:
            raise ValueError(f"run: {run_id!r} is not in the store {self.path}")
        if run.active:
            owner = (
                self._conn()
                .execute("SELECT pid, proc_start, host FROM runs WHERE id = ?", (run_id,))
                .fetchone()
            )
            if process_alive(*owner):
                raise ValueError(f"run: {run_id} is {run.status}; stop it before deleting it")
        with self._frames_lock:
            self._frames.pop(run_id, None)
        with self._write() as conn:
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint_path(run_id).unlink()

    # -- user presets ----------------------------------------------------------------------------
    def save_preset(
        self,
        name: str,
        algo: str,
        env_id: str,
        settings: dict[str, Any],
        description: str = "",
        source: str = "",
        *,
        replace: bool = False,
    ) -> None:
        """Store a named user preset (config fields without ``env_id``), validated first.

        Train lists it beside the library presets (:func:`pglab.presets.presets_for`).
        """
        from pglab.algos import make_config
        from pglab.presets import PRESETS

        name = str(name).strip()
        if not (0 < len(name) <= 64 and all(c.isalnum() or c in "-_." for c in name)):
            raise ValueError(
                f"name: {name!r} is not allowed (1 to 64 letters, digits, '-', '_' or '.')"
            )
        if name in PRESETS:
            raise ValueError(f"name: {name!r} is a library preset; choose another name")
        settings = {k: v for k, v in settings.items() if k != "env_id"}
        make_config(algo, {**settings, "env_id": env_id})  # ValueError naming the field
        with self._write() as conn:
            if (
                not replace
                and conn.execute("SELECT 1 FROM presets WHERE name = ?", (name,)).fetchone()
            ):
                raise ValueError(f"name: a user preset {name!r} exists already")
            conn.execute(
                "INSERT OR REPLACE INTO presets (name, algo, env_id, settings, description, "
                "source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, algo, env_id, json.dumps(settings), description, source, time.time()),
            )

    def list_presets(self) -> list[dict[str, Any]]:
        """User presets, oldest first: dicts of name, algo, env_id, settings, description,
        source."""
        rows = (
            self._conn()
            .execute(
                "SELECT name, algo, env_id, settings, description, source FROM presets "
                "ORDER BY created_at, name"
            )
            .fetchall()
        )
        keys = ("name", "algo", "env_id", "settings", "description", "source")
        return [{**dict(zip(keys, r)), "settings": json.loads(r[3])} for r in rows]

    def delete_preset(self, name: str) -> None:
        with self._write() as conn:
            if conn.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount == 0:
                raise ValueError(f"preset: no user preset {name!r} in {self.path}")

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint_path(self, run_id: str) -> Path:
        if not run_id.isalnum():  # ids are hex; never let one walk out of the directory
            raise ValueError(f"run: {run_id!r} is not a run id")
        return self.path.parent / "checkpoints" / f"{run_id}.pt"

    def save_checkpoint(self, run_id: str, state: dict[str, Any]) -> Path:
        """``torch.save`` a state dict (tensors and plain values only), atomically."""
        import torch

        path = self.checkpoint_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
        torch.save(state, tmp)
        os.replace(tmp, path)  # a reader never sees half a file
        return path

    def load_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        """The run's saved state dict (tensors on CPU), or None if it has none."""
        import torch

        path = self.checkpoint_path(run_id)
        if not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    # -- export / import -------------------------------------------------------------------------
    def export_metrics(self, run_id: str, fmt: str, path: str | os.PathLike[str]) -> Path:
        """Write the run's metrics table (:meth:`metrics`) as ``csv`` or ``parquet``."""
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"format: {fmt!r} is not allowed (one of csv, parquet)")
        if self.get_run(run_id) is None:
            raise ValueError(f"run: {run_id!r} is not in the store {self.path}")
        out = Path(path)
        frame = self.metrics(run_id)
        if fmt == "csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
        return out

    def config_json(self, run_id: str) -> str:
        """The run's config as JSON, ``{"algo": ..., <field>: <value>, ...}``; see
        :func:`parse_config_json` for the way back."""
        run = self.get_run(run_id)
        if run is None:
            raise ValueError(f"run: {run_id!r} is not in the store {self.path}")
        return json.dumps({"algo": run.algo, **run.config}, indent=2)


def parse_config_json(text: str | bytes) -> tuple[str, BaseConfig]:
    """Validate a config JSON (as written by :meth:`Store.config_json`) into ``(algo, config)``.

    Raises ``ValueError`` naming the field at fault (unknown field, value out of range, ...);
    the JSON itself goes through :func:`pglab.config.parse_json` (size, depth, duplicate keys).
    """
    from pglab.algos import make_config
    from pglab.config import parse_config_data

    algo, data = parse_config_data(text)
    return algo, make_config(algo, data)


# -- decimation of tiny updates ------------------------------------------------------------------
KEEP_ALL_ROWS = 10_000  # every update row up to this update is stored


def keep_row(update: int) -> bool:
    """Whether the store keeps update ``update``'s row (1-based).

    Every row up to :data:`KEEP_ALL_ROWS` (N); then every 2nd up to 2N, every 4th up to 4N,
    every 8th up to 8N, and so on: N/2 rows per doubling, so a run of U updates stores about
    N + (N/2) log2(U/N) rows (71k for 50M one-step updates) instead of U. The engine always
    stores a run's last row as well. Runs of up to N updates (every preset) keep every row.
    """
    if update <= KEEP_ALL_ROWS:
        return True
    band = (update - 1) // KEEP_ALL_ROWS  # >= 1
    return update % (1 << band.bit_length()) == 0


def stored_row_count(updates: int) -> int:
    """How many of updates ``1..updates`` :func:`keep_row` keeps, plus the last one."""
    n = KEEP_ALL_ROWS
    if updates <= n:
        return max(0, updates)
    kept, j = n, 1
    while n * (1 << (j - 1)) < updates:
        lo, hi = n * (1 << (j - 1)), min(updates, n * (1 << j))  # band (lo, hi], stride 2^j
        kept += hi // (1 << j) - lo // (1 << j)
        j += 1
    return kept + (0 if keep_row(updates) else 1)


# -- errors ----------------------------------------------------------------------------------------
class StoreGoneError(RuntimeError):
    """The store's file disappeared (or was replaced) under an open store."""


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def recovery_hint(path: Path) -> str:
    return (
        f"To start afresh keep it aside (mv '{path}' '{path}.damaged') or point --store / "
        f"$PGLAB_STORE at another file; `sqlite3 '{path}' .recover` may salvage its rows."
    )


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL, or an OSError ENOSPC / EDQUOT."""
    import errno

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def open_error(path: Path, exc: BaseException) -> str:
    """One line saying why the store at ``path`` cannot be opened and what to do."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    parent = path.parent
    if is_disk_full(exc):
        return f"store: the disk holding {path} is full ({text}); free some space and retry"
    if isinstance(exc, FileExistsError | NotADirectoryError) or (
        parent.exists() and not parent.is_dir()
    ):
        return (
            f"store: cannot use {path}: a part of its folder is a file, not a folder; choose "
            "another --store / $PGLAB_STORE"
        )
    if isinstance(exc, PermissionError):
        return f"store: no permission to create {path} ({text}); choose another --store"
    if ("readonly" in text or "unable to open" in text) and not os.access(parent, os.W_OK):
        return (
            f"store: cannot write in {parent} (SQLite keeps {path.name}-wal and -shm beside "
            "the store); make the folder writable or use another --store / $PGLAB_STORE"
        )
    if "readonly" in text or "read-only" in text:
        return (
            f"store: {path} is read-only ({text}); pglab writes to its store: make it writable "
            f"(chmod u+w '{path}') or use another --store / $PGLAB_STORE"
        )
    if "unable to open" in text:
        return f"store: cannot open {path} ({text}); check the path and its permissions"
    if isinstance(exc, sqlite3.DatabaseError | TypeError):
        return (
            f"store: {path} is not a pglab store, or it is damaged ({text}). {recovery_hint(path)}"
        )
    return f"store: cannot open {path} ({type(exc).__name__}: {text})"


# -- helpers ---------------------------------------------------------------------------------------
def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status: {status!r} is not allowed (one of {', '.join(STATUSES)})")


def _record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        name=row[1],
        algo=row[2],
        env_id=row[3],
        config=json.loads(row[4]),
        seed=row[5],
        device=row[6],
        status=row[7],
        error=row[8],
        group=row[9],
        created_at=row[10],
        started_at=row[11],
        ended_at=row[12],
        version=row[13],
        env_steps=row[14],
        total_steps=row[15],
        final_return=row[16],
        launch=row[17],
        worker_pid=row[18],
        worker_host=row[19],
    )
