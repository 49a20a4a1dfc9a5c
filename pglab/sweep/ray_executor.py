"""The Ray executor: each run a Ray generator task; the driver writes what it streams back.

    ex = RayExecutor(store)                            # a local runtime with this machine's cores
    ex = RayExecutor(store, address="10.0.0.5:6379")   # or join a running cluster

The driver (this process) creates every run in its store and owns it, so a dead driver leaves
its runs ``interrupted`` like any other owner. At most ``max_concurrent`` tasks are out at once
(default: the cluster's CPUs); the rest wait here, ``queued``. Each task
(:func:`pglab.sweep.ray_worker.train_stream`) asks for one CPU, is never retried (a retry would
restart a run the store has half recorded) and streams ``worker``/``status``/``rows``/
``checkpoint`` messages, which one driver thread per run writes into the store as they arrive.

One Ray connection per process, shared by its executors and shut down by the last of them if
pglab made it (the lab may run two Ray sweeps at once). Ray keeps a connection's auth state
for the life of the process, so a process that has joined one cluster should not join
another with a different auth token; the CLI runs each sweep in a process of its own.

Faults: a worker that dies mid-run (killed, out of memory, node lost) ends the run
``interrupted``, its metrics so far kept, and nothing else; a stop asks the task to stop
(it ends ``stopped`` within one env step, checkpoint saved) and, if the task has not ended
within ``STOP_GRACE_S``, cancels it by force.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pglab.config import BaseConfig
from pglab.store import TERMINAL_STATUSES, Store

STOP_GRACE_S = 3.0
READY_TIMEOUT_S = 60.0


def import_ray() -> Any:
    """``import ray`` with this lab's settings; ``ValueError`` naming the fix if it is missing."""
    # Keep a loopback head on 127.0.0.1 (Ray otherwise swaps in the interface address) and
    # send no usage statistics from a lab machine.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ModuleNotFoundError:
        raise ValueError(
            "executor: ray is not installed; pip install 'pglab[sweep]' (ray==2.60.0) "
            "or use --executor local"
        ) from None
    return ray


def check_address(address: str) -> str:
    """``HOST:PORT`` of a Ray cluster's head (``ray start --head --port PORT``)."""
    host, sep, port = str(address).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address: {address!r} is not allowed (HOST:PORT, e.g. 127.0.0.1:6379)")
    return f"{host}:{int(port)}"


# The Ray connection of this process, shared by its executors (the lab may run two Ray
# sweeps at once): made by the first, shut down by the last if pglab made it.
_RUNTIME: dict[str, Any] = {"users": 0, "owned": False, "address": None, "environ": None}
_RUNTIME_LOCK = threading.Lock()


def _acquire_runtime(ray: Any, address: str | None, num_cpus: int | None) -> None:
    target = check_address(address) if address is not None else "local"
    with _RUNTIME_LOCK:
        if not ray.is_initialized():
            # ray.init sets variables in os.environ (RAY_AUTH_MODE, PYTHONBREAKPOINT, ...)
            # that would leak into the lab's later subprocesses: put back at shutdown.
            environ = dict(os.environ)
            quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
            if target != "local":
                try:
                    ray.init(address=target, **quiet)
                except (ConnectionError, RuntimeError, TimeoutError) as exc:
                    raise ValueError(
                        f"address: no Ray cluster answered at {target} ({exc})"
                    ) from None
            else:
                # address="local": always a new runtime of our own, never a cluster that
                # happens to run on this machine (ray.init() alone would join it)
                ray.init(
                    address="local",
                    num_cpus=num_cpus or os.cpu_count() or 1,
                    include_dashboard=False,
                    **quiet,
                )
            _RUNTIME.update(owned=True, address=target, environ=environ, users=0)
        elif _RUNTIME["owned"] and _RUNTIME["address"] != target:
            raise ValueError(
                f"address: this process is connected to Ray at {_RUNTIME['address']}; "
                "finish its sweeps before using another"
            )
        _RUNTIME["users"] += 1


def _release_runtime(ray: Any) -> None:
    with _RUNTIME_LOCK:
        _RUNTIME["users"] = max(0, _RUNTIME["users"] - 1)
        if _RUNTIME["users"] or not _RUNTIME["owned"]:
            return
        _CONTROLS.clear()  # the handles go while the connection they belong to is still up
        ray.shutdown()
        environ = _RUNTIME["environ"] or {}
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update(environ)
        _RUNTIME.update(owned=False, address=None, environ=None)


_CONTROLS: dict[str, Any] = {}  # "cluster/job id" -> its Control actor, shared by its sweeps


def _control_actor(ray: Any) -> Any:
    """This driver's :class:`~pglab.sweep.ray_worker.Control` actor, made on first use (an
    actor is a worker process of its own: one per job, not one per sweep)."""
    from pglab.sweep import ray_worker

    context = ray.get_runtime_context()
    job = f"{context.gcs_address}/{context.get_job_id()}"
    if job not in _CONTROLS:
        actor = ray.remote(ray_worker.Control).options(num_cpus=0).remote()
        try:  # the actor is up: commands will land
            ray.get(actor.get.remote("ready"), timeout=READY_TIMEOUT_S)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ValueError(
                f"address: the Ray cluster at {context.gcs_address} could not start a task "
                f"within {READY_TIMEOUT_S:.0f} s ({type(exc).__name__}: {first}); does it "
                "expect an auth token (~/.ray/auth_token, RAY_AUTH_TOKEN)?"
            ) from None
        _CONTROLS[job] = actor
    return _CONTROLS[job]


@dataclass
class _RayRun:
    id: str
    algo: str
    settings: dict[str, Any]
    seed: int
    device: str
    status: str = "queued"
    rows: list[dict[str, float]] = field(default_factory=list)
    rows_lock: threading.Lock = field(default_factory=threading.Lock)
    gen: Any = None  # the task's ObjectRefGenerator, once submitted
    worker: tuple[int, str] | None = None
    stop_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class RayExecutor:
    kind = "ray"

    def __init__(
        self,
        store: Store,
        *,
        address: str | None = None,
        max_concurrent: int | None = None,
        num_cpus: int | None = None,
    ):
        ray = import_ray()
        self._ray = ray
        self.store = store
        t0 = time.perf_counter()
        _acquire_runtime(ray, address, num_cpus)
        self._closed = False
        from pglab.sweep import ray_worker

        self._task = ray.remote(ray_worker.train_stream).options(num_cpus=1, max_retries=0)
        try:
            self._control = _control_actor(ray)
            cpus = int(ray.cluster_resources().get("CPU", 1))
        except BaseException:
            _release_runtime(ray)
            raise
        self.max_concurrent = max_concurrent or max(1, cpus)
        self.startup_s = time.perf_counter() - t0  # runtime (or connection) plus control actor
        self._lock = threading.RLock()
        self._runs: dict[str, _RayRun] = {}
        self._queue: deque[str] = deque()
        self._threads: list[threading.Thread] = []

    def warm_up(self) -> float:
        """Start ``max_concurrent`` workers and load torch, pglab and its compiled kernels in
        each (what a worker's first run pays otherwise); returns the seconds it took."""
        from pglab.sweep import ray_worker

        t0 = time.perf_counter()
        warm = self._ray.remote(ray_worker.warm_worker).options(num_cpus=1, max_retries=0)
        barrier = _control_actor(self._ray)
        # all at once, each waiting for the others: every task lands in a worker of its own
        key, n = f"warm-{time.monotonic_ns()}", self.max_concurrent
        self._ray.get([warm.remote(barrier, n, key) for _ in range(n)])
        return time.perf_counter() - t0

    # -- launching ---------------------------------------------------------------------------
    def submit(
        self,
        algo: str,
        config: BaseConfig,
        seed: int,
        device: str,
        *,
        name: str | None = None,
        group: str | None = None,
        launch: str | None = None,
    ) -> str:
        settings = config.to_dict()
        run_id = self.store.create_run(
            algo=algo,
            env_id=config.env_id,
            config=settings,
            seed=seed,
            device=device,
            name=name,
            group=group,
            launch=launch,
        )
        with self._lock:
            self._runs[run_id] = _RayRun(run_id, algo, settings, seed, device)
            self._queue.append(run_id)
            self._start_queued()
        return run_id

    def _start_queued(self) -> None:
        busy = sum(1 for r in self._runs.values() if r.gen is not None and not r.done.is_set())
        for run_id in list(self._queue):
            if busy >= self.max_concurrent:
                break
            run = self._runs[run_id]
            if run.status != "queued":  # paused while waiting: keeps its place
                continue
            self._queue.remove(run_id)
            run.gen = self._task.remote(
                run.id, run.algo, run.settings, run.seed, run.device, self._control
            )
            thread = threading.Thread(
                target=self._consume, args=(run,), name=f"pglab-ray-{run.id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
            busy += 1

    # -- the driver side of a run --------------------------------------------------------------
    def _consume(self, run: _RayRun) -> None:
        ray = self._ray
        final: tuple[str, str | None] | None = None
        try:
            for ref in run.gen:
                message = ray.get(ref)
                final = self._handle(run, message) or final
            if final is None:
                final = ("failed", "the Ray task ended without a final status")
        except ray.exceptions.TaskCancelledError:
            final = ("stopped", None) if run.stop_requested else ("interrupted", "cancelled")
        except ray.exceptions.RayTaskError as exc:  # an exception in pglab's code, in the worker
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            final = ("failed", f"{type(cause).__name__}: {cause}")
        except ray.exceptions.RayError as exc:  # the worker or its node died
            if run.stop_requested:
                final = ("stopped", None)
            else:
                who = f"pid {run.worker[0]} on {run.worker[1]}" if run.worker else "unknown"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                final = (
                    "interrupted",
                    f"the Ray worker ({who}) died before the run ended: "
                    f"{type(exc).__name__}: {first}",
                )
        except Exception as exc:  # a store error on the driver: the run cannot be recorded
            final = ("failed", f"recording the run failed: {type(exc).__name__}: {exc}")
        try:
            status, error = final
            with self._lock:
                run.status = status
            self.store.set_status(run.id, status, error)
        finally:
            self.store.release_thread()
            run.done.set()
            with self._lock:
                self._start_queued()

    def _handle(self, run: _RayRun, message: tuple[Any, ...]) -> tuple[str, str | None] | None:
        kind = message[0]
        if kind == "rows":
            rows, latest = message[1], message[2]
            self.store.append_metrics(run.id, rows, latest=latest)
            with run.rows_lock:
                run.rows.extend(rows)
        elif kind == "status":
            status, error = message[1], message[2]
            if status in TERMINAL_STATUSES:
                return status, error  # written once the stream has ended
            with self._lock:
                run.status = status
            self.store.set_status(run.id, status, error)
        elif kind == "worker":
            run.worker = (int(message[1]), str(message[2]))
            self.store.set_worker(run.id, *run.worker)
        elif kind == "checkpoint":
            self.store.save_checkpoint(run.id, message[1])
        return None

    # -- control ---------------------------------------------------------------------------------
    def _get(self, run_id: str) -> _RayRun:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise ValueError(f"run: {run_id!r} is not a run of this Ray executor")
        return run

    def pause(self, run_id: str) -> None:
        run = self._get(run_id)
        with self._lock:
            if run.gen is None and run.status == "queued":
                run.status = "paused"
                self.store.set_status(run_id, "paused")
                return
        if not run.done.is_set():
            self._control.set.remote(run_id, "pause")

    def resume(self, run_id: str) -> None:
        run = self._get(run_id)
        with self._lock:
            if run.gen is None and run.status == "paused":
                run.status = "queued"
                self.store.set_status(run_id, "queued")
                self._start_queued()
                return
        if not run.done.is_set():
            self._control.set.remote(run_id, "go")

    def stop(self, run_id: str) -> None:
        """Ask the run to stop (within one env step); cancel its task if it has not within
        :data:`STOP_GRACE_S`. Returns at once."""
        run = self._get(run_id)
        with self._lock:
            run.stop_requested = True
            if run.gen is None:  # never submitted: nothing to unwind
                if run_id in self._queue:
                    self._queue.remove(run_id)
                run.status = "stopped"
                self.store.set_status(run_id, "stopped")
                run.done.set()
                return
        if run.done.is_set():
            return
        self._control.set.remote(run_id, "stop")
        timer = threading.Timer(STOP_GRACE_S, self._force_cancel, args=(run,))
        timer.daemon = True
        timer.start()

    def _force_cancel(self, run: _RayRun) -> None:
        if not run.done.is_set():
            with contextlib.suppress(Exception):
                self._ray.cancel(run.gen, force=True)

    # -- reading -----------------------------------------------------------------------------------
    def rows(self, run_id: str, since: int = 0) -> tuple[list[dict[str, float]], int]:
        run = self._get(run_id)
        with run.rows_lock:
            return run.rows[max(0, since) :], len(run.rows)

    def status(self, run_id: str) -> str:
        return self._get(run_id).status

    def worker(self, run_id: str) -> tuple[int, str] | None:
        """(pid, host) of the worker training the run, once it has reported."""
        return self._get(run_id).worker

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        run = self._get(run_id)
        run.done.wait(timeout)
        return run.status

    def close(self, timeout: float = 10.0) -> None:
        """Stop every run still going, wait for them, and shut down a runtime we started."""
        with self._lock:
            ids = [rid for rid, r in self._runs.items() if not r.done.is_set()]
        for run_id in ids:
            self.stop(run_id)
        deadline = time.monotonic() + timeout
        for run_id in ids:
            self._runs[run_id].done.wait(max(0.0, deadline - time.monotonic()))
        if not self._closed:
            self._closed = True
            self._control = None  # this connection's handle: never carried into another
            _release_runtime(self._ray)
