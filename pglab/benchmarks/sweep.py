"""Sweep benchmark: the Ray executor's throughput against the local executor's, and Ray's
start-up cost.

The workload is a many-seed study: PPO with the rl-zoo CartPole preset, 16 runs of 50k steps
(``--quick``: 4 runs of 20k), run as a sweep through each executor on this machine with
``max_concurrent`` = its cores. The sides alternate in rounds (local, Ray, local, Ray; each
round half the runs) so a shared machine's drifting load falls on both::

    throughput(side) = sum of env steps of its runs / sum of its sweeps' wall-clock seconds
    ratio = throughput(ray) / throughput(local)                            target >= 0.8

Ray's start-up is timed on its own, before the first round: ``ray.init`` of a local runtime
(no dashboard), then the control actor and one warm worker per core (each has imported torch
and pglab and loaded the compiled kernels: what every new worker pays once, and what the
local side paid when this process started). The rounds then measure steady throughput; a
long sweep on a fresh runtime pays the start-up once on top.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pglab.presets import get_preset
from pglab.store import Store
from pglab.sweep import Sweep, parse_spec

TARGET_RATIO = 0.8


def _spec(n_runs: int, steps: int, cores: int) -> dict[str, Any]:
    preset = get_preset("ppo-cartpole-zoo")
    settings = {**preset.settings, "grad_diagnostics": False}
    settings.pop("total_steps", None)
    return {
        "algo": "ppo",
        "env_id": preset.env_id,
        "settings": settings,
        "budget": steps,
        "seeds": n_runs,
        "objective": "final_iqm",
        "max_concurrent": cores,
        "name": "bench: sweep executors",
    }


def _one(spec: dict[str, Any], store: Store, executor: str, first_seed: int) -> dict[str, Any]:
    seeds = list(range(first_seed, first_seed + spec["seeds"]))
    sweep = Sweep(parse_spec({**spec, "seeds": seeds}), store, executor=executor)
    t0 = time.perf_counter()
    result = sweep.run()
    wall = time.perf_counter() - t0
    runs = [store.get_run(r) for t in result["trials"] for r in t["run_ids"]]
    steps = sum(r.env_steps for r in runs)
    if {r.status for r in runs} != {"finished"}:
        raise RuntimeError(f"{executor} sweep: runs ended {sorted({r.status for r in runs})}")
    return {
        "executor": executor,
        "wall_s": wall,
        "env_steps": steps,
        "sps": steps / wall,
        "workers": sorted({r.worker_pid for r in runs}),
    }


def run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from pglab.algos import warm_up
    from pglab.sweep.ray_executor import RayExecutor, import_ray

    cores = os.cpu_count() or 1
    n_runs, steps, rounds = (4, 20_000, 1) if quick else (16, 50_000, 2)
    per_round = n_runs // rounds
    spec = _spec(per_round, steps, cores)
    warm_up()  # compile the kernels first: the local side would otherwise pay it alone
    log(
        f"sweep: {n_runs} PPO-zoo CartPole runs of {steps:,} steps per executor, in {rounds} "
        f"alternating round(s), {cores} cores (a shared machine: the ratio is what counts)"
    )
    ray = import_ray()
    environ = dict(os.environ)
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=cores,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    init_s = time.perf_counter() - t0
    sides: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "runs.sqlite")
            t0 = time.perf_counter()
            warm_s = RayExecutor(store, max_concurrent=cores).warm_up()
            workers_s = time.perf_counter() - t0
            startup_s = init_s + workers_s
            log(
                f"  Ray start-up: {startup_s:.1f} s = ray.init {init_s:.1f} s (local runtime, "
                f"no dashboard) + control actor and {cores} warm workers {workers_s:.1f} s "
                f"(torch, pglab and its kernels loaded: {warm_s:.1f} s)"
            )
            for k in range(rounds):
                for executor in ("local", "ray"):
                    one = _one(spec, store, executor, k * per_round)
                    sides[executor].append(one)
                    log(
                        f"  round {k + 1} {executor:5s}: {one['env_steps']:,} steps in "
                        f"{one['wall_s']:.1f} s = {one['sps']:,.0f} steps/s "
                        f"({len(one['workers'])} worker process(es))"
                    )
            store.close()
    finally:
        ray.shutdown()
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update(environ)
    tput = {
        side: sum(r["env_steps"] for r in rs) / sum(r["wall_s"] for r in rs)
        for side, rs in sides.items()
    }
    ratio = tput["ray"] / tput["local"]
    ok = ratio >= TARGET_RATIO
    log(
        f"  throughput: local {tput['local']:,.0f} steps/s, Ray {tput['ray']:,.0f} steps/s; "
        f"ratio {ratio:.2f} (target >= {TARGET_RATIO}) {'OK' if ok else 'MISSED'}"
    )
    return {
        "runs_per_executor": n_runs,
        "steps_per_run": steps,
        "rounds": rounds,
        "cores": cores,
        "ray_startup_s": startup_s,
        "ray_init_s": init_s,
        "ray_workers_s": workers_s,
        "local_sps": tput["local"],
        "ray_sps": tput["ray"],
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "ok": ok,
        "rounds_detail": sides,
    }
