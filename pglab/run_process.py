"""A run in a process of its own: the engine's loop, its records streamed back over a pipe.

Threads of one process share one GIL. With the lab's page open, the Streamlit server's own
work (script runs, websocket writes) holds that GIL between the training threads' steps, and
on two cores the runs lost 10-20% of their speed to it. A :class:`~pglab.engine.Registry`
made with ``isolation="process"`` (the lab's) trains each run in a child process instead:

- the child runs :func:`pglab.engine._train` (the same loop, statuses, stop/pause semantics
  and failure messages as a thread), handing it a :class:`MessageSink` in place of the store;
- every write becomes a message sent to the parent, which alone owns the store file::

      ("worker", pid, host)          first, before the trainer is built
      ("status", status, error)      running / paused / the final status
      ("rows", [row, ...], latest)   kept update rows (and the newest), every FLUSH_INTERVAL_S
      ("checkpoint", bytes)          a ``torch.save``d state dict (periodic and final)
      ("state", bytes | None)        the live weights, answering a "Watch the agent" request

- the parent sends ``"go"``, ``"pause"``, ``"stop"`` and ``"state"`` back on the same pipe;
  a thread of the child applies them as :class:`~pglab.engine.Registry` does for a thread.

Children are forked from a forkserver that has already imported torch and pglab and loaded
the compiled kernels (:func:`pglab.algos.warm_up`), so a run starts in milliseconds, not the
seconds a fresh interpreter takes, and no child inherits the server's threads or sockets. A
child whose parent goes away stops its run (the pipe reads EOF). A child that dies (killed,
out of memory) ends its run ``failed`` with the exit code; its rows so far are kept.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

_PRELOAD = "pglab.run_process_preload"
_context: Any = None
_context_lock = threading.Lock()


def context() -> Any:
    """The forkserver context every run process is started from (made on first use)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([_PRELOAD])
            _skip_main_for_runs()
            _context = ctx
        return _context


def _skip_main_for_runs() -> None:
    """Start run processes without re-importing the parent's ``__main__``.

    multiprocessing makes a child import the parent's main module (as ``__mp_main__``) so that
    targets defined there unpickle. A run's target lives in pglab, and in the lab the "main
    module" is whichever page script Streamlit is executing as ``__main__`` at that moment:
    importing it would run the page in the child. So for processes named ``pglab-run-*`` the
    main module is left out of the preparation data; every other process is untouched.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "_pglab", False):
        return

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if name.startswith("pglab-run-"):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._pglab = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = get_preparation_data


def prestart() -> None:
    """Start the forkserver now, in the background (it takes a second or two to load torch
    and the kernels), so the first run launched does not wait for it."""
    from multiprocessing import forkserver

    context()
    threading.Thread(target=forkserver.ensure_running, name="pglab-forkserver", daemon=True).start()


def dump_state(state: dict[str, Any]) -> bytes:
    """A state dict as ``torch.save`` bytes (read back with :func:`load_state`)."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_state(data: bytes) -> dict[str, Any]:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class MessageSink:
    """Stands in for :class:`pglab.store.Store` where a run's loop runs away from the store
    file (a child process, a Ray worker): every write becomes a message passed to ``put``."""

    def __init__(self, put: Callable[[tuple[Any, ...]], None], checkpoint: Callable[[Any], Any]):
        self.put = put
        self._checkpoint = checkpoint

    def append_metrics(
        self, run_id: str, rows: list[dict[str, float]], latest: dict[str, float] | None = None
    ) -> None:
        if rows or latest is not None:  # latest: the newest update, even if decimated away
            self.put(("rows", list(rows), latest))

    def check_present(self) -> None:
        """The parent owns the store file and checks it; the loop has none to lose."""

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        self.put(("status", status, error))

    def save_checkpoint(self, run_id: str, state: dict[str, Any]) -> None:
        self.put(("checkpoint", self._checkpoint(state)))

    def release_thread(self) -> None:
        pass


def apply_command(run: Any, command: str, sink: MessageSink) -> None:
    """Carry out a parent's command the way :class:`pglab.engine.Registry` does for a thread."""
    with run.lock:
        if command == "stop":
            run.stop_evt.set()
            run.go_evt.set()  # wake a paused loop so it sees the stop
        elif command == "pause" and run.status in ("queued", "running"):
            run.go_evt.clear()
            run.status = "paused"
            sink.set_status(run.id, "paused")
        elif command == "go" and run.status == "paused":
            run.status = "running"
            sink.set_status(run.id, "running")
            run.go_evt.set()


def child_main(
    conn: Any, run_id: str, algo: str, settings: dict[str, Any], seed: int, device: str
) -> None:
    """Train one run in this (child) process, sending its records to the parent on ``conn``."""
    import torch

    from pglab.engine import _Run, _train, validate_launch

    torch.set_num_threads(1)  # one run, one core: as the lab's threads
    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    sink = MessageSink(send, dump_state)
    send(("worker", os.getpid(), socket.gethostname()))
    run = _Run(run_id, algo, validate_launch(algo, settings, seed, device), seed, device)

    def answer_state() -> None:
        if run.trainer is None or not run.state_ready.wait(5.0) or run.live_state is None:
            send(("state", None))
            return
        state, run.live_state = run.live_state, None
        send(("state", dump_state(state)))

    def commands() -> None:
        while True:
            try:
                command = conn.recv()
            except (EOFError, OSError):  # the parent went away: never train on unobserved
                apply_command(run, "stop", sink)
                return
            if command == "state":
                run.state_ready.clear()
                run.state_request.set()
                threading.Thread(target=answer_state, daemon=True).start()
            else:
                apply_command(run, command, sink)

    threading.Thread(target=commands, name="pglab-commands", daemon=True).start()
    try:
        _train(run, sink)  # type: ignore[arg-type]  # a Store in all but the file
    finally:
        send(("done",))
        conn.close()


# -- the parent's side ---------------------------------------------------------------------------
POLL_S = 0.05  # how often the parent looks at the run's flags between messages
STOP_GRACE_S = 10.0  # a child that has not ended this long after a stop is terminated


def train_in_process(run: Any, store: Any) -> None:
    """Train ``run`` (a :class:`pglab.engine._Run`) in a child process; blocks until it ends.

    Writes what the child streams into ``store``, keeps ``run``'s rows, status and error as a
    thread's loop would, and forwards ``run``'s pause, stop and state-request flags to it.
    """
    from pglab.engine import _store_failure

    ctx = context()
    conn, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(
        target=child_main,
        args=(child, run.id, run.algo, run.config.to_dict(), run.seed, run.device),
        name=f"pglab-run-{run.id}",
        daemon=True,
    )
    final: tuple[str, str | None] | None = None
    try:
        proc.start()
    except Exception as exc:
        final = ("failed", f"could not start the run's process: {type(exc).__name__}: {exc}")
    child.close()
    run.process = proc
    sent_go, stop_at, store_failed = True, None, False
    while proc.pid is not None:  # until the child ends (if it started)
        try:
            if run.stop_evt.is_set() and stop_at is None:
                conn.send("stop")
                stop_at = time.monotonic()
            elif stop_at is None and run.go_evt.is_set() != sent_go:
                sent_go = not sent_go
                conn.send("go" if sent_go else "pause")
            if run.state_request.is_set():
                run.state_request.clear()
                conn.send("state")
            if not conn.poll(POLL_S):
                if stop_at is not None and time.monotonic() - stop_at > STOP_GRACE_S:
                    proc.terminate()  # it ignored the stop: end it, keep what it sent
                    break
                continue
            message = conn.recv()
        except (EOFError, OSError):  # the child is gone
            break
        kind = message[0]
        if kind == "done":
            break
        if kind == "state":
            run.live_state = load_state(message[1]) if message[1] is not None else None
            run.state_ready.set()
        elif kind == "status" and message[1] not in ("queued", "running", "paused"):
            if not store_failed:
                final = (message[1], message[2])  # the last message but "done"
        elif not store_failed:
            try:
                _record(run, store, message)
            except Exception as exc:  # the store failed under the run: stop it, say why
                store_failed = True
                final = (
                    "failed",
                    _store_failure(exc) or f"recording the run failed: {type(exc).__name__}: {exc}",
                )
                run.stop_evt.set()
                run.go_evt.set()
    if proc.pid is not None:
        proc.join(5.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)
    conn.close()
    if final is None:
        if run.stop_evt.is_set():
            final = ("stopped", None)
        else:
            final = (
                "failed",
                f"the run's process (pid {proc.pid}) died before the run ended "
                f"(exit code {proc.exitcode}); its metrics so far are kept",
            )
    run.process = None
    run.state_ready.set()  # a reader still waiting gets no live state, not a hang
    with run.lock:
        run.status, run.error = final
        try:
            store.set_status(run.id, *final)
        except Exception as exc:  # the store is gone (disk full, deleted): keep it in memory
            run.error = f"{final[1] or final[0]}; the store could not record it: {exc}"


def _record(run: Any, store: Any, message: tuple[Any, ...]) -> None:
    """Write one of the child's messages into the store (and the run's live rows)."""
    kind = message[0]
    if kind == "rows":
        rows, latest = message[1], message[2]
        store.check_present()
        store.append_metrics(run.id, rows, latest=latest)
        with run.rows_lock:
            for row in rows:
                run.rows.append(row)
            run.latest = latest
    elif kind == "status":  # the trainer is built: queued -> running (pauses are ours)
        with run.lock:
            if run.status == "queued":
                run.status = "running"
                store.set_status(run.id, "running")
    elif kind == "worker":
        store.set_worker(run.id, int(message[1]), str(message[2]))
    elif kind == "checkpoint":
        store.save_checkpoint(run.id, load_state(message[1]))
