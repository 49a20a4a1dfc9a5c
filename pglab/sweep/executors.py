"""Where a sweep's runs train: processes of this machine (default) or Ray workers.

Both executors take the same calls from :class:`pglab.sweep.runner.Sweep`::

    run_id = ex.submit(algo, config, seed, device, name=..., group=..., launch=...)
    rows, cursor = ex.rows(run_id, cursor)      # the run's update rows so far
    ex.status(run_id); ex.pause(run_id); ex.resume(run_id); ex.stop(run_id)
    ex.close()

and the store gets the same records either way: the driver (this process) creates each run,
owns it (so a dead driver leaves it ``interrupted``) and writes its metrics.

- ``local``: :class:`pglab.engine.Registry`, the lab's engine, ``max_concurrent`` run processes.
- ``ray``: :class:`pglab.sweep.ray_executor.RayExecutor`, a Ray task per run (Ray is imported
  only when this executor is made).
"""

from __future__ import annotations

from typing import Any, Protocol

from pglab.config import BaseConfig
from pglab.store import Store

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    kind: str
    store: Store
    max_concurrent: int

    def submit(
        self,
        algo: str,
        config: BaseConfig,
        seed: int,
        device: str,
        *,
        name: str | None,
        group: str | None,
        launch: str | None,
    ) -> str: ...

    def rows(self, run_id: str, since: int = 0) -> tuple[list[dict[str, float]], int]: ...

    def status(self, run_id: str) -> str: ...

    def pause(self, run_id: str) -> None: ...

    def resume(self, run_id: str) -> None: ...

    def stop(self, run_id: str) -> None: ...

    def close(self) -> None: ...


class LocalExecutor:
    """This machine's cores through :class:`pglab.engine.Registry`: each run in a process of
    its own (as the lab's runs), so a sweep uses every core."""

    kind = "local"

    def __init__(self, store: Store, max_concurrent: int | None = None):
        from pglab.engine import Registry

        self.store = store
        self.registry = Registry(store, max_concurrent=max_concurrent, isolation="process")
        self.max_concurrent = self.registry.max_concurrent

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
        return self.registry.launch(
            algo, config, seed=seed, device=device, name=name, group=group, launch=launch
        )

    def rows(self, run_id: str, since: int = 0) -> tuple[list[dict[str, float]], int]:
        return self.registry.snapshot(run_id, since)

    def status(self, run_id: str) -> str:
        return self.registry.status(run_id)

    def pause(self, run_id: str) -> None:
        self.registry.pause(run_id)

    def resume(self, run_id: str) -> None:
        self.registry.resume(run_id)

    def stop(self, run_id: str) -> None:
        self.registry.stop(run_id)

    def close(self) -> None:
        self.registry.clear()


def make_executor(
    kind: str,
    store: Store,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    **ray_options: Any,
) -> Executor:
    """``local`` or ``ray`` (``address``: join that cluster, else start a local runtime)."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor: {kind!r} is not allowed (one of {', '.join(EXECUTORS)})")
    if kind == "local":
        if address is not None:
            raise ValueError("address: only used with --executor ray")
        return LocalExecutor(store, max_concurrent)
    from pglab.sweep.ray_executor import RayExecutor

    return RayExecutor(store, address=address, max_concurrent=max_concurrent, **ray_options)
