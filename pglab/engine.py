"""The run engine: training in background threads, driven by the lab's pages.

A :class:`Registry` (one per process; the app holds it in ``st.cache_resource``) validates a
config, records the run in the :class:`~pglab.store.Store` and trains it in a daemon thread
named ``pglab-run-<id>``. The same loop runs in the calling thread for the CLI's ``train``
(:func:`run_foreground`), so both write the same statuses and metrics to the same store::

    registry = Registry()
    run_id = registry.launch("ppo", {"env_id": "CartPole-v1", "total_steps": 50_000})
    rows, cursor = registry.snapshot(run_id)           # the curve so far
    rows, cursor = registry.snapshot(run_id, cursor)   # later: only the new points
    registry.pause(run_id); registry.resume(run_id); registry.stop(run_id)

Life of a run::

    queued --(slot free)--> running <--pause/resume--> paused
    running/paused --> finished | stopped | failed        (interrupted: set by the store when
    queued --stop--> stopped                                the owning process died)

Threads: at most ``max_concurrent`` runs hold a thread (paused runs keep theirs, with their
trainer in memory); the rest wait in a FIFO queue. Each worker sets
``torch.set_num_threads(1)``: a run is one core's worth of work, and several runs oversubscribe
the machine if each also spawns a pool. Workers never touch Streamlit. With
``Registry(isolation="process")`` (the lab's) each worker thread drives a child process that
runs the same loop (:mod:`pglab.run_process`), so the runs and the Streamlit server do not
share a GIL and the parent alone writes the store.

Metrics: each update's dict is appended to the run's :class:`MetricHistory` under a lock (the
newest 2,000 rows whole, older ones evenly decimated, so memory is bounded whatever the run's
length); a reader copies a slice under the same lock, so it always sees whole updates in
order, and rows are never modified once returned. The worker flushes new rows to the store at
least once a second, decimating tiny updates past update 10,000 (:func:`pglab.store.keep_row`;
a run's last row is always stored).

Resources and failures: :func:`validate_launch` refuses configs over the memory budget
(:mod:`pglab.budget`). A checkpoint is saved every :data:`CHECKPOINT_EVERY` updates and at the
end, so an interrupted run keeps a policy. A full disk ends a run ``failed`` ("disk full: ...",
the rows written before are kept); a store file deleted under a run ends it ``failed`` ("store
file removed: ...") at the next flush instead of writing into the void.

Stop and pause: both are checked between updates and, through the trainer's ``control`` hook
(:meth:`~pglab.algos.base.Trainer.poll`), before every environment step and after every PPO
minibatch, so they land within one env step or one gradient step, not one update (a PPO
update of 64 x 1024 steps and 100 epochs takes minutes). A stopped run drops its half-done
update, keeps the finished ones and checkpoints the policy. A pause mid-update blocks inside
it; the paused seconds are left out of that update's ``time/sps`` and ``time/wall_s``.

Failures: :class:`~pglab.algos.NonFiniteError` ends the run ``failed`` with the trainer's plain
message ("loss/policy became nan at update 37 - try a smaller learning rate"); any other
exception ends it ``failed`` with the exception, the phase and the source line. Nothing
escapes the worker thread, so one run's failure never touches another run or the app.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from pglab.algos import NonFiniteError, get_trainer_class, make_trainer, resolve_device
from pglab.algos.base import Trainer
from pglab.budget import check_budget
from pglab.config import BaseConfig
from pglab.store import (
    ACTIVE_STATUSES,
    RunRecord,
    Store,
    StoreGoneError,
    is_disk_full,
    keep_row,
)

FLUSH_INTERVAL_S = 0.5  # checked after each update, so rows reach the store within ~1 s
JOIN_TIMEOUT_S = 30.0
CHECKPOINT_EVERY = 100  # updates between periodic checkpoints...
CHECKPOINT_MIN_S = 10.0  # ...but never more often than this (tiny updates)

__all__ = ["Registry", "run_foreground", "validate_launch"]


class _Stopped(BaseException):
    """Raised inside the worker to unwind a run that was asked to stop.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` in a trainer
    can swallow it.
    """


def validate_launch(
    algo: str, config: BaseConfig | dict[str, Any], seed: int = 0, device: str = "cpu"
) -> BaseConfig:
    """Everything a launch needs, checked before any run or thread exists.

    Returns the validated config; raises ``ValueError`` naming the field at fault.
    """
    cls = get_trainer_class(algo)  # ValueError for an unknown algorithm
    if isinstance(config, dict):
        cfg = cls.Config.from_dict(config)
    elif isinstance(config, cls.Config):
        cfg = config
    else:
        raise ValueError(
            f"config: {algo} needs a {cls.Config.__name__} or a dict of settings, "
            f"got {type(config).__name__}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise ValueError(f"seed: {seed!r} is not allowed (an integer in [0, 2147483647])")
    resolve_device(device)
    check_budget(algo, cfg)  # peak memory from the config alone (pglab.budget)
    return cfg


# -- bounded metric history --------------------------------------------------------------------
HISTORY_TAIL = 2_000  # newest rows a live run keeps at full resolution
HISTORY_OLD = 2_000  # at most this many older rows, evenly decimated


class MetricHistory:
    """A live run's update rows in bounded memory, read like the list it replaces.

    The newest :data:`HISTORY_TAIL` rows are kept whole; older rows are kept every
    ``stride``-th (``stride`` doubles whenever more than :data:`HISTORY_OLD` would be kept),
    so a run of any length holds at most ~4,000 rows (~6 MB) while its chart still spans the
    whole run. The store keeps the full rows (:func:`pglab.store.keep_row` aside).

    ``len(h)`` is the number of rows ever appended (a reader's cursor), ``h[-1]`` the newest
    row and ``h[k:]`` the kept rows with index >= k, in order: exactly ``list[k:]`` while
    nothing was decimated, so ``Registry.snapshot(run_id, cursor)`` works unchanged. Not
    thread-safe by itself: the engine guards it with ``_Run.rows_lock``.
    """

    def __init__(self, tail: int = HISTORY_TAIL, old: int = HISTORY_OLD):
        self._tail: deque[tuple[int, dict[str, float]]] = deque()
        self._old: list[tuple[int, dict[str, float]]] = []
        self._tail_size, self._old_size = tail, old
        self.stride = 1
        self.count = 0

    def append(self, row: dict[str, float]) -> None:
        self._tail.append((self.count, row))
        self.count += 1
        if len(self._tail) > self._tail_size:
            idx, old_row = self._tail.popleft()
            if idx % self.stride == 0:
                self._old.append((idx, old_row))
                if len(self._old) > self._old_size:
                    self.stride *= 2
                    self._old = [(i, r) for i, r in self._old if i % self.stride == 0]

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, int):
            if key == -1 and self._tail:
                return self._tail[-1][1]
            raise IndexError("MetricHistory supports [-1] and [k:] only")
        if key.stop is not None or key.step is not None:
            raise IndexError("MetricHistory supports [k:] slices only")
        since = max(0, key.start or 0)
        out = [r for i, r in self._old if i >= since] if self._old else []
        if self._tail and since <= self._tail[0][0]:
            out += [r for _, r in self._tail]
        else:
            out += [r for i, r in self._tail if i >= since]
        return out


@dataclass
class _Run:
    """In-memory state of one run; ``lock`` guards ``status``/``error`` and their store writes."""

    id: str
    algo: str
    config: BaseConfig
    seed: int
    device: str
    status: str = "queued"
    error: str | None = None
    rows: MetricHistory = field(default_factory=MetricHistory)
    rows_lock: threading.Lock = field(default_factory=threading.Lock)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop_evt: threading.Event = field(default_factory=threading.Event)
    go_evt: threading.Event = field(default_factory=threading.Event)  # cleared while paused
    done_evt: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    # "Watch the agent" on a live run: a reader sets state_request; the worker answers with a
    # copy of the weights between two updates (never mid-step), then sets state_ready.
    trainer: Trainer | None = None
    state_request: threading.Event = field(default_factory=threading.Event)
    state_ready: threading.Event = field(default_factory=threading.Event)
    live_state: dict[str, Any] | None = None
    # isolation="process": the child training the run, and its newest update (the rows it
    # streams are the store's, decimated past update 10,000)
    process: Any = None
    latest: dict[str, float] | None = None

    def __post_init__(self) -> None:
        self.go_evt.set()

    def last_row(self) -> dict[str, float] | None:
        with self.rows_lock:
            if self.latest is not None:
                return self.latest
            return self.rows[-1] if self.rows else None


def _where(exc: BaseException) -> str:
    """``file.py:123 in function`` of the innermost frame of the exception."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    fs = frames[-1]
    return f"{Path(fs.filename).name}:{fs.lineno} in {fs.name}"


def _control(run: _Run, on_pause: Callable[[], None]) -> Callable[[], float]:
    """The trainer's :attr:`~pglab.algos.base.Trainer.control` hook for ``run``.

    Called at every env step and every PPO minibatch: raises :class:`_Stopped` once a stop is
    asked for; while the run is paused, flushes the rows so far (``on_pause``), answers
    "Watch the agent" requests and blocks until resume or stop, returning the seconds it
    blocked (left out of the update's ``time/sps``). The half-done update of a stopped run is
    dropped; its weights are the last gradient step's.
    """

    def control() -> float:
        if run.stop_evt.is_set():
            raise _Stopped
        if run.go_evt.is_set():
            return 0.0
        t0 = time.perf_counter()
        on_pause()
        while not run.go_evt.wait(0.05):  # set again by resume() or stop()
            if run.state_request.is_set() and run.trainer is not None:
                _answer_state_request(run, run.trainer)
        if run.stop_evt.is_set():
            raise _Stopped
        return time.perf_counter() - t0

    return control


def _train(
    run: _Run,
    store: Store,
    on_update: Callable[[dict[str, float]], None] | None = None,
) -> Trainer | None:
    """Build the trainer and train until done, stopped or failed; every outcome is stored.

    Returns the (closed) trainer, or None if it could not be built.

    A failure becomes the run's status and is not raised (SystemExit and other
    non-``Exception`` exits are recorded, then re-raised); store errors while recording the
    final status are kept on ``run.error`` only.
    """
    pending: list[dict[str, float]] = []
    last_flush = time.monotonic()

    last_stored: list[bool] = [True]  # whether the newest row is in the store

    def flush(final: bool = False) -> None:
        nonlocal pending, last_flush
        store.check_present()  # a deleted store file would swallow every later write
        if final and not pending and not last_stored[0]:
            pending = [run.last_row()]  # a run's last row is always stored
        if pending:
            kept = _decimate(pending, keep_last=final)
            store.append_metrics(run.id, kept, latest=pending[-1])
            last_stored[0] = bool(kept) and kept[-1] is pending[-1]
            pending = []
        last_flush = time.monotonic()

    checkpoints = _Checkpoints(run, store)
    trainer: Trainer | None = None
    phase = "building the trainer"
    final, error = "finished", None
    escaping: BaseException | None = None  # SystemExit and the like: recorded, then re-raised
    try:
        trainer = make_trainer(run.algo, run.config, run.seed, run.device)
        run.trainer = trainer
        trainer.control = _control(run, flush)
        with run.lock:
            if run.status == "queued":
                run.status = "running"
            # "paused" if a pause arrived while the trainer was being built
            store.set_status(run.id, run.status)
        while not trainer.done:
            if run.state_request.is_set():
                _answer_state_request(run, trainer)
            if not run.go_evt.is_set():
                flush()  # readers of the store see everything up to the pause
                while not run.go_evt.wait(0.05):  # set again by resume() or stop()
                    if run.state_request.is_set():
                        _answer_state_request(run, trainer)
            if run.stop_evt.is_set():
                raise _Stopped
            phase = f"update {trainer.updates + 1}"
            row = dict(trainer.update())
            with run.rows_lock:
                run.rows.append(row)
            pending.append(row)
            if on_update is not None:
                on_update(row)
            if time.monotonic() - last_flush >= FLUSH_INTERVAL_S:
                flush()
            checkpoints.maybe_save(trainer)
        phase = "finishing"
    except (_Stopped, KeyboardInterrupt):
        final = "stopped"
    except NonFiniteError as exc:
        final, error = "failed", str(exc)
    except BaseException as exc:
        final, error = "failed", _store_failure(exc)
        if error is None:
            error = f"{type(exc).__name__}: {exc} (during {phase}, at {_where(exc)})"
        if not isinstance(exc, Exception):
            escaping = exc
    try:
        if not (error or "").startswith("store file removed"):
            flush(final=True)
        if trainer is not None:
            checkpoints.save_final(trainer, failed=final == "failed")
    except Exception as exc:
        if final != "failed":
            final = "failed"
            error = _store_failure(exc) or (
                f"saving the run failed: {type(exc).__name__}: {exc} (at {_where(exc)})"
            )
    finally:
        run.trainer = None
        run.state_ready.set()  # a reader still waiting gets no live state, not a hang
        if trainer is not None:
            with contextlib.suppress(Exception):
                trainer.close()
    with run.lock:
        run.status, run.error = final, error
        try:
            store.set_status(run.id, final, error)
        except Exception as exc:  # the store is gone (disk full, deleted): keep it in memory
            run.error = f"{error or final}; the store could not record it: {exc}"
    if escaping is not None:
        raise escaping
    return trainer


# -- fail-safe pieces of a run: decimated flushes, checkpoints, store failures ----------------
def _decimate(rows: list[dict[str, float]], keep_last: bool) -> list[dict[str, float]]:
    """The rows the store keeps (:func:`pglab.store.keep_row`), plus the last if ``keep_last``."""
    kept = [r for r in rows if "time/updates" not in r or keep_row(int(r["time/updates"]))]
    if keep_last and rows and (not kept or kept[-1] is not rows[-1]):
        kept.append(rows[-1])
    return kept


def _store_failure(exc: BaseException) -> str | None:
    """The run's error for a failure of its store ("disk full: ...", "store file removed:
    ..."), or None for any other exception."""
    if isinstance(exc, StoreGoneError):
        return f"{exc}; this run's metrics went with it"
    if is_disk_full(exc):
        return (
            f"disk full: {str(exc).splitlines()[0]}; the rows written before it are kept; "
            "free some space and re-launch"
        )
    return None


def _finite_state(state: Any) -> bool:
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_finite_state(v) for v in state.values())
    if isinstance(state, list | tuple):
        return all(_finite_state(v) for v in state)
    return True


class _Checkpoints:
    """Periodic checkpoints, so a run that is killed, stopped or fails keeps a policy.

    Saved every :data:`CHECKPOINT_EVERY` updates, or after 30 s with at least one new update,
    but never within :data:`CHECKPOINT_MIN_S` of the last one; and at the end of the run
    (finished, stopped, or failed with finite weights: a run that failed on a NaN keeps its
    last good checkpoint).
    """

    MAX_S = 30.0

    def __init__(self, run: _Run, store: Store):
        self.run, self.store = run, store
        self.updates = 0
        self.at = time.monotonic()

    def maybe_save(self, trainer: Trainer) -> None:
        new = trainer.updates - self.updates
        elapsed = time.monotonic() - self.at
        if (
            new >= 1
            and elapsed >= CHECKPOINT_MIN_S
            and (new >= CHECKPOINT_EVERY or elapsed >= self.MAX_S)
        ):
            self._save(trainer)

    def save_final(self, trainer: Trainer, failed: bool) -> None:
        if trainer.updates == 0 and failed:
            return
        state = trainer.state_dict()
        if failed and not _finite_state(state):
            return
        self._save(trainer, state)

    def _save(self, trainer: Trainer, state: dict[str, Any] | None = None) -> None:
        self.store.save_checkpoint(
            self.run.id, state if state is not None else trainer.state_dict()
        )
        self.updates, self.at = trainer.updates, time.monotonic()


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of a state dict with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    return copy.deepcopy(obj)


def _answer_state_request(run: _Run, trainer: Trainer) -> None:
    run.live_state = _cpu_copy(trainer.state_dict())
    run.state_request.clear()
    run.state_ready.set()


def run_foreground(
    algo: str,
    config: BaseConfig | dict[str, Any],
    seed: int = 0,
    device: str = "cpu",
    store: Store | None = None,
    on_update: Callable[[dict[str, float]], None] | None = None,
    *,
    name: str | None = None,
    group: str | None = None,
    launch: str | None = None,
    on_end: Callable[[Trainer], None] | None = None,
    stop: threading.Event | None = None,
) -> RunRecord:
    """Train in the calling thread, recording the run in ``store`` exactly as a background run.

    ``stop``, if given, is the run's stop flag: set from another thread, it ends the run
    ``stopped`` within one env step, as :meth:`Registry.stop` does (for a caller that trains
    runs one after another in its own worker thread, e.g. :class:`pglab.reproduce.Job`).

    ``on_update(metrics)`` is called after every update (progress output). Ctrl-C stops the
    run (status ``stopped``, metrics and checkpoint kept); a NaN or an exception ends it
    ``failed``. ``on_end(trainer)``, if given, is called once everything is recorded, with the
    trainer (envs closed; episodes, ``solved_at_step`` and ``evaluate()`` still usable) for a
    summary; not called if the trainer could not be built. Returns the final record either
    way; raises ``ValueError`` only for invalid input, before anything is stored.
    """
    cfg = validate_launch(algo, config, seed, device)
    store = store if store is not None else Store()
    run_id = store.create_run(
        algo=algo,
        env_id=cfg.env_id,
        config=cfg.to_dict(),
        seed=seed,
        device=device,
        name=name,
        group=group,
        launch=launch,
    )
    run = _Run(run_id, algo, cfg, seed, device)
    if stop is not None:
        run.stop_evt = stop
    trainer = _train(run, store, on_update)
    try:
        record = store.get_run(run_id)
    except Exception:  # the store failed under the run: report what is known in memory
        record = None
    if record is None or (record.status, record.error) != (run.status, run.error):
        # the store could not record the end (disk full, file removed): memory knows better
        record = _record_in_memory(run, record)
    if on_end is not None and trainer is not None:
        on_end(trainer)
    return record


def _record_in_memory(run: _Run, stored: RunRecord | None) -> RunRecord:
    """The run's record with its in-memory status, error and progress on top."""
    last = run.last_row() or {}
    if stored is None:
        now = time.time()
        stored = RunRecord(
            id=run.id,
            name=run.id,
            algo=run.algo,
            env_id=run.config.env_id,
            config=run.config.to_dict(),
            seed=run.seed,
            device=run.device,
            status=run.status,
            error=run.error,
            group=None,
            created_at=now,
            started_at=None,
            ended_at=now,
            version="",
            env_steps=0,
            total_steps=run.config.total_steps,
            final_return=None,
        )
    return replace(
        stored,
        status=run.status,
        error=run.error,
        env_steps=int(last.get("time/env_steps", stored.env_steps)),
    )


class Registry:
    """Process-wide set of background runs, backed by a :class:`Store`. Thread-safe.

    ``max_concurrent`` runs train at once (default: the number of CPU cores); later launches
    queue, first in first out.

    ``isolation``: ``"thread"`` trains each run in a thread of this process; ``"process"``
    (the lab's) in a child process of its own (:mod:`pglab.run_process`), so runs use every
    core and the host's own work (a Streamlit server) never holds their GIL. Both record the
    same statuses, rows and checkpoints and obey the same controls.
    """

    def __init__(
        self,
        store: Store | None = None,
        max_concurrent: int | None = None,
        isolation: str = "thread",
    ):
        if isolation not in ("thread", "process"):
            raise ValueError(f"isolation: {isolation!r} is not allowed (thread or process)")
        self.isolation = isolation
        if isolation == "process":
            from pglab.run_process import prestart

            prestart()
        if max_concurrent is not None and (
            not isinstance(max_concurrent, int) or max_concurrent < 1
        ):
            raise ValueError(f"max_concurrent: {max_concurrent!r} is not allowed (an int >= 1)")
        self.store = store if store is not None else Store()
        self.max_concurrent = max_concurrent or os.cpu_count() or 1
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._queue: deque[str] = deque()

    # -- launching ---------------------------------------------------------------------------
    def launch(
        self,
        algo: str,
        config: BaseConfig | dict[str, Any],
        seed: int = 0,
        device: str = "cpu",
        name: str | None = None,
        group: str | None = None,
        launch: str | None = None,
    ) -> str:
        """Validate, record and start (or queue) a run; returns its id.

        ``launch`` (see :func:`pglab.store.new_launch_id`) ties the runs of one click, ladder
        or sweep trial together; without it the run is a launch of its own.

        Raises ``ValueError`` naming the field for an invalid algo, config, seed or device;
        nothing is stored and no thread starts in that case.
        """
        cfg = validate_launch(algo, config, seed, device)
        run_id = self.store.create_run(
            algo=algo,
            env_id=cfg.env_id,
            config=cfg.to_dict(),
            seed=seed,
            device=device,
            name=name,
            group=group,
            launch=launch,
        )
        with self._lock:
            self._runs[run_id] = _Run(run_id, algo, cfg, seed, device)
            self._queue.append(run_id)
            self._start_queued()
        return run_id

    def _start_queued(self) -> None:
        """Give free slots to queued runs (call with ``self._lock`` held)."""
        busy = sum(
            1 for r in self._runs.values() if r.thread is not None and not r.done_evt.is_set()
        )
        for run_id in list(self._queue):
            if busy >= self.max_concurrent:
                break
            run = self._runs[run_id]
            if run.status != "queued":  # paused while waiting: keeps its place, not a slot
                continue
            self._queue.remove(run_id)
            run.thread = threading.Thread(
                target=self._work, args=(run,), name=f"pglab-run-{run.id}", daemon=True
            )
            run.thread.start()
            busy += 1

    def _work(self, run: _Run) -> None:
        import torch

        torch.set_num_threads(1)
        try:
            if self.isolation == "process":
                from pglab.run_process import train_in_process

                train_in_process(run, self.store)
            else:
                _train(run, self.store)
        finally:
            self.store.release_thread()
            with self._lock:
                run.done_evt.set()
                self._start_queued()

    # -- control -------------------------------------------------------------------------------
    def _get(self, run_id: str) -> _Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise ValueError(f"run: {run_id!r} is not a run of this session's registry")
        return run

    def pause(self, run_id: str) -> None:
        """Pause a queued or running run at its next env step or gradient step (no-op
        otherwise)."""
        run = self._get(run_id)
        with run.lock:
            if run.status in ("queued", "running"):
                run.go_evt.clear()
                run.status = "paused"
                self.store.set_status(run_id, "paused")

    def resume(self, run_id: str) -> None:
        """Resume a paused run (no-op otherwise). A run paused in the queue goes back to it."""
        run = self._get(run_id)
        with self._lock, run.lock:
            if run.status == "paused":
                run.status = "running" if run.thread is not None else "queued"
                self.store.set_status(run_id, run.status)
                run.go_evt.set()
                self._start_queued()

    def stop(self, run_id: str) -> None:
        """Ask a run to stop; it ends ``stopped`` within one env step, keeping its metrics.

        Returns at once; :meth:`wait` blocks until the run has ended.
        """
        run = self._get(run_id)
        with self._lock:
            if run_id in self._queue:  # never started: nothing to unwind
                self._queue.remove(run_id)
                with run.lock:
                    run.status = "stopped"
                    self.store.set_status(run_id, "stopped")
                run.done_evt.set()
                return
        run.stop_evt.set()
        run.go_evt.set()  # wake a paused worker so it sees the stop

    def delete(self, run_id: str) -> None:
        """Stop the run if it is active, then remove it, its metrics and checkpoint."""
        with self._lock:
            known = run_id in self._runs
        if known:
            self.stop(run_id)
            self.wait(run_id, JOIN_TIMEOUT_S)
            with self._lock:
                self._runs.pop(run_id, None)
        self.store.delete_run(run_id)

    # -- reading -------------------------------------------------------------------------------
    def status(self, run_id: str) -> str:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            return run.status
        return self.record(run_id).status

    def policy_state(self, run_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """The current weights of a live run (copied between two updates), else its checkpoint.

        Lets "Watch the agent" replay the policy of a run that is still training. Returns None
        when the run has neither (it ended without a checkpoint, or has not started yet).
        """
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None and (run.trainer is not None or run.process is not None):
            run.state_ready.clear()
            run.state_request.set()
            if run.state_ready.wait(timeout) and run.live_state is not None:
                return run.live_state
        return self.store.load_checkpoint(run_id)

    def record(self, run_id: str) -> RunRecord:
        """The stored record, with this process's fresher status and latest metrics on top."""
        rec = self.store.get_run(run_id)
        if rec is None:
            raise ValueError(f"run: {run_id!r} is not in the store {self.store.path}")
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            return rec
        last = run.last_row()
        changes: dict[str, Any] = {"status": run.status, "error": run.error}
        if last is not None:
            changes["env_steps"] = int(last.get("time/env_steps", rec.env_steps))
            ret = last.get("rollout/return_last20")
            if ret is not None:
                changes["final_return"] = ret
        return replace(rec, **changes)

    def snapshot(self, run_id: str, since: int = 0) -> tuple[list[dict[str, float]], int]:
        """Update rows ``since`` onwards and the new cursor (the number of rows so far).

        ``snapshot(id)`` is the whole curve; pass the returned cursor back to get only new
        points. Rows are whole updates, in order, never modified once returned. Runs not in
        this registry (earlier sessions, the CLI) are read from the store.
        """
        since = max(0, int(since))
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            if self.store.get_run(run_id) is None:
                raise ValueError(f"run: {run_id!r} is not in the store {self.store.path}")
            rows = self.store.metric_rows(run_id, since)
            return rows, since + len(rows)
        with run.rows_lock:
            return run.rows[since:], len(run.rows)

    def progress(self, run_id: str) -> dict[str, Any]:
        """``env_steps``, ``total_steps``, ``fraction`` in [0, 1], ``sps`` and ``eta_s``.

        ``eta_s = (total_steps - env_steps) / sps`` with ``sps`` = steps per second of
        training time so far (pauses excluded); None when unknown or the run is not going to
        continue, 0 when finished.
        """
        rec = self.record(run_id)
        with self._lock:
            run = self._runs.get(run_id)
        last = run.last_row() if run is not None else None
        env_steps = rec.env_steps
        total = rec.total_steps
        sps = None
        if last is not None and last.get("time/wall_s", 0.0) > 0:
            sps = last["time/env_steps"] / last["time/wall_s"]
        eta = None
        if rec.status == "finished":
            eta = 0.0
        elif rec.status in ("running", "paused") and sps:
            eta = max(0, total - env_steps) / sps
        return {
            "status": rec.status,
            "env_steps": env_steps,
            "total_steps": total,
            "fraction": min(1.0, env_steps / total) if total else 0.0,
            "sps": sps,
            "eta_s": eta,
        }

    def active_ids(self) -> list[str]:
        """Runs of this registry that are queued, running or paused, in launch order."""
        with self._lock:
            return [rid for rid, r in self._runs.items() if r.status in ACTIVE_STATUSES]

    def any_active(self) -> bool:
        return bool(self.active_ids())

    def run_ids(self) -> list[str]:
        """Every run launched through this registry (since the last :meth:`clear`)."""
        with self._lock:
            return list(self._runs)

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run has ended (or ``timeout`` seconds); returns its status."""
        run = self._get(run_id)
        run.done_evt.wait(timeout)
        if run.thread is not None and run.done_evt.is_set():
            run.thread.join(timeout)
        return run.status

    def clear(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Stop every run of this registry and join its threads, then forget them."""
        with self._lock:
            ids = list(self._runs)
            for run_id in list(self._queue):
                self.stop(run_id)
        for run_id in ids:
            self.stop(run_id)
        deadline = time.monotonic() + timeout
        for run_id in ids:
            run = self._runs.get(run_id)
            if run is not None and run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for run_id in ids:
                run = self._runs.get(run_id)
                if run is not None and (run.thread is None or not run.thread.is_alive()):
                    del self._runs[run_id]
