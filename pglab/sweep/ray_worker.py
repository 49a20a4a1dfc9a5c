"""What runs inside a Ray worker: pglab's own training loop, streaming its records back.

:func:`train_stream` is a Ray generator task. It trains with :func:`pglab.engine._train` (the
same loop, statuses, stop/pause semantics and failure messages as the lab's runs), but in
place of the run store it hands the loop a :class:`~pglab.run_process.MessageSink` (as a
lab run's child process does) that queues each write as a message the task yields to the
driver::

    ("worker", pid, host)          first, before the trainer is built
    ("status", status, error)      running / paused / the final status
    ("rows", [row, ...], latest)   kept update rows (and the newest), every FLUSH_INTERVAL_S
    ("checkpoint", state_dict)     every CHECKPOINT_EVERY updates and at the run's end

The worker never opens the store file: a cluster node needs only ``pip install pglab``.
Pause, resume and stop come from the driver through a :class:`Control` actor that the task
polls every ``POLL_S`` seconds (a stop then lands within one env step, as in the lab).
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

POLL_S = 0.25
_DONE = ("done",)


class Control:
    """Per-run commands from the driver: ``go``, ``pause`` or ``stop`` (a Ray actor)."""

    def __init__(self) -> None:
        self._state: dict[str, str] = {}
        self._arrived: dict[str, int] = {}

    def set(self, run_id: str, state: str) -> None:
        self._state[run_id] = state

    def get(self, run_id: str) -> str:
        return self._state.get(run_id, "go")

    def arrive(self, key: str) -> int:
        """Count arrivals at a barrier (:func:`warm_worker`); returns the count so far."""
        self._arrived[key] = self._arrived.get(key, 0) + 1
        return self._arrived[key]

    def arrived(self, key: str) -> int:
        return self._arrived.get(key, 0)


def warm_worker(control: Any, n: int, key: str = "warm") -> int:
    """Load torch, pglab's trainers and compiled kernels in this worker, then wait until ``n``
    workers have done so (so ``n`` such tasks occupy ``n`` distinct workers). Returns the pid."""
    import ray
    import torch

    from pglab.algos import warm_up

    torch.set_num_threads(1)
    warm_up()
    ray.get(control.arrive.remote(key))
    deadline = time.monotonic() + 120
    while ray.get(control.arrived.remote(key)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid()


def train_stream(
    run_id: str, algo: str, settings: dict[str, Any], seed: int, device: str, control: Any
) -> Iterator[tuple[Any, ...]]:
    """Train one run in this worker and yield its records (a Ray generator task)."""
    import ray
    import torch

    from pglab.engine import _cpu_copy, _Run, _train, validate_launch
    from pglab.run_process import MessageSink, apply_command

    torch.set_num_threads(1)  # one run, one core: as the lab's threads
    yield ("worker", os.getpid(), socket.gethostname())
    cfg = validate_launch(algo, settings, seed, device)
    run = _Run(run_id, algo, cfg, seed, device)
    messages: queue.Queue[tuple[Any, ...]] = queue.Queue()
    sink = MessageSink(messages.put, _cpu_copy)

    def work() -> None:
        try:
            _train(run, sink)  # type: ignore[arg-type]  # a Store in all but the file
        finally:
            messages.put(_DONE)

    thread = threading.Thread(target=work, name=f"pglab-run-{run_id}", daemon=True)
    thread.start()
    command, next_poll = "go", 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= next_poll:
                new = ray.get(control.get.remote(run_id))
                if new != command:
                    apply_command(run, new, sink)
                    command = new
                next_poll = now + POLL_S
            try:
                message = messages.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if message is _DONE:
                break
            yield message
    finally:  # cancelled or the driver went away: end the loop, never leave it training
        run.stop_evt.set()
        run.go_evt.set()
        thread.join(10.0)
