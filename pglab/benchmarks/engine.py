"""Engine benchmark: training speed with a live reader vs headless.

One PPO CartPole run trains in a background :class:`~pglab.engine.Registry` thread while the
benchmark alternates windows of a few seconds: headless (nobody reads), then with a reader
that, once a second, does what an open Train page and Compare page do (full ``snapshot`` of
the curve into a DataFrame, an incremental ``snapshot``, ``progress``, the stored metrics
table, the run list). Alternating short windows inside one run, rather than comparing two
runs, keeps the drift of a shared machine's load out of the ratio::

    SPS(window) = sum of env steps of the updates done in it / sum of their durations
                  (durations from ``time/wall_s``: the trainer's own clock per update)
    ratio = median SPS(reader windows) / median SPS(headless windows)     target >= 0.9

With the GIL, a reader can slow training by at most the share of time it runs, so the
reader's CPU share gives a noise-free bound as well: ratio >= 1 - CPU(reader) / wall.

It also times loading the metric tables of 12 runs x 400 updates x 25 metrics from a store,
what the Compare page does on every rerun (target well under 1 s).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pglab.engine import Registry
from pglab.store import Store

TARGET_RATIO = 0.9
CONFIG = {
    "env_id": "CartPole-v1",
    "num_envs": 8,
    "n_steps": 32,
    "batch_size": 64,
    "n_epochs": 4,
    "gae_lambda": 0.8,
    "learning_rate": 1e-3,
    "total_steps": 50_000_000,  # stopped when the windows are done
}


def _read(registry: Registry, run_id: str, cursor: int) -> int:
    """One read of a live run, the way the pages do it; returns the new cursor."""
    rows, _ = registry.snapshot(run_id)  # the whole curve, as a freshly opened page
    pd.DataFrame.from_records(rows)
    _, cursor = registry.snapshot(run_id, cursor)  # a live chart's incremental read
    registry.progress(run_id)
    registry.store.metrics(run_id)
    registry.store.list_runs()
    return cursor


def _window_sps(rows: list[dict[str, float]], prev: dict[str, float]) -> float | None:
    """SPS over the updates in ``rows`` (``prev``: the update before them)."""
    if not rows:
        return None
    steps = rows[-1]["time/env_steps"] - prev["time/env_steps"]
    busy = rows[-1]["time/wall_s"] - prev["time/wall_s"]
    return steps / busy if busy > 0 else None


def _compare_load(
    tmp: Path, n_runs: int = 12, n_updates: int = 400, n_metrics: int = 25
) -> tuple[float, float]:
    """Milliseconds to load ``n_runs`` metric tables (the Compare page's rerun): (cold, warm).

    Cold: a freshly opened store (first render after a server start); warm: the same store
    again (every later rerun, served from its per-run table cache).
    """
    path = tmp / "compare.sqlite"
    with Store(path) as store:
        names = [f"m/{k}" for k in range(n_metrics - 2)]
        for r in range(n_runs):
            rid = store.create_run(
                algo="ppo", env_id="CartPole-v1", config={}, seed=r, device="cpu", status="finished"
            )
            rows = [
                {
                    "time/updates": float(u),
                    "time/env_steps": 256.0 * u,
                    **{n: 0.001 * u * (k + 1) for k, n in enumerate(names)},
                }
                for u in range(1, n_updates + 1)
            ]
            store.append_metrics(rid, rows)
    cold, warm = float("inf"), float("inf")
    for _ in range(3):
        with Store(path) as store:
            ids = [rec.id for rec in store.list_runs()]
            for label in ("cold", "warm"):
                t0 = time.perf_counter()
                frames = [store.metrics(rid) for rid in ids]
                dt = 1000 * (time.perf_counter() - t0)
                if label == "cold":
                    cold = min(cold, dt)
                else:
                    warm = min(warm, dt)
        assert all(f.shape == (n_updates, n_metrics + 1) for f in frames)
    return cold, warm


def run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    n_windows, window_s = (12, 2.0) if quick else (40, 3.0)
    sps: dict[bool, list[float]] = {False: [], True: []}
    read_cpu = 0.0
    reads = 0
    read_wall = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite")
        registry = Registry(store, max_concurrent=1)
        try:
            run_id = registry.launch("ppo", CONFIG, seed=0)
            deadline = time.monotonic() + 60
            while len(registry.snapshot(run_id)[0]) < 3:  # past imports and warm-up
                if time.monotonic() > deadline or not registry.any_active():
                    raise RuntimeError(f"benchmark run did not start: {registry.record(run_id)}")
                time.sleep(0.05)
            rows, cursor = registry.snapshot(run_id)
            prev = rows[-1]
            read_cursor = 0
            for w in range(n_windows):
                # headless/reader as A B B A A B ...: balances any trend inside the run
                reading = (w % 4) in (1, 2)
                t_start = time.perf_counter()
                end = t_start + window_s
                next_read = t_start
                while (now := time.perf_counter()) < end:
                    if reading and now >= next_read:
                        c0 = time.thread_time()
                        read_cursor = _read(registry, run_id, read_cursor)
                        read_cpu += time.thread_time() - c0
                        reads += 1
                        next_read += 1.0
                    wake = min(end, next_read) if reading else end
                    time.sleep(max(0.0, wake - time.perf_counter()))
                if reading:
                    read_wall += time.perf_counter() - t_start
                new, cursor = registry.snapshot(run_id, cursor)
                value = _window_sps(new, prev)
                if value is not None:
                    sps[reading].append(value)
                    prev = new[-1]
            registry.stop(run_id)
            registry.wait(run_id, 30)
        finally:
            registry.clear()
            store.close()
        compare_cold, compare_warm = _compare_load(Path(tmp))
    headless = statistics.median(sps[False])
    reader = statistics.median(sps[True])
    ratio = reader / headless
    cpu_share = read_cpu / read_wall if read_wall else 0.0
    log(
        f"engine: PPO CartPole, {n_windows} windows of {window_s:g} s alternating: headless "
        f"{headless:.0f} SPS, reader every 1 s {reader:.0f} SPS, ratio {ratio:.3f} "
        f"(target >= {TARGET_RATIO})"
    )
    log(
        f"engine: {reads} reads, {1000 * read_cpu / max(reads, 1):.1f} ms CPU each; reader CPU "
        f"share {100 * cpu_share:.2f}% (so ratio >= {1 - cpu_share:.3f} from the GIL alone)"
    )
    log(
        "engine: 12 runs x 400 updates x 25 metrics from the store: "
        f"{compare_cold:.1f} ms cold, {compare_warm:.1f} ms cached"
    )
    return {
        "windows": n_windows,
        "window_s": window_s,
        "sps_headless": headless,
        "sps_with_reader": reader,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "reads": reads,
        "read_cpu_ms_mean": 1000 * read_cpu / reads if reads else None,
        "reader_cpu_share": cpu_share,
        "compare_load_12_runs_ms_cold": compare_cold,
        "compare_load_12_runs_ms_warm": compare_warm,
    }
