"""UI benchmark, server side only: rerun times of the pages and the cost of a live rerun.

This is not what a user sees: it has no browser, no websocket and only short runs. The
figures for a live demo (points in the DOM, websocket bytes, long tasks, click latency, SPS
with the page open) come from ``python -m pglab bench --only browser``
(:mod:`pglab.benchmarks.browser`).

Measured in-process with Streamlit's AppTest (the same script runner ``streamlit run`` uses,
minus the websocket), against a temporary store:

1. **Compare rerun** with 12 finished runs of 100k steps each (2,500 updates a run, the
   A2C-sized worst case of the lab's presets) selected: the first run (reads the store) and the
   median of warm reruns. Target < 1 s.
2. **Live fragment rerun** with 4 active PPO runs: the Train page's fragment body
   (:func:`pglab.ui.render_live`: records, progress, 10 charts) while the runs train in the
   same process. Target < 200 ms.
3. **Training SPS with the page open**: a PPO CartPole run with the live panel re-rendering
   once a second in the same process, against the same run with nobody watching,
   alternated. SPS = env steps / training seconds (``time/wall_s``). Target >= 0.85x.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The Train page's fragment body, timed from inside the script run (server-side time; the
# AppTest round trip around it adds polling latency that a real server does not have).
_LIVE_SCRIPT = """
import time
import streamlit as st
from pglab import ui
t0 = time.perf_counter()
ui.render_live(ui.get_registry(), st.session_state["ids"])
st.session_state.setdefault("ms", []).append((time.perf_counter() - t0) * 1000)
"""


@contextlib.contextmanager
def _temp_store() -> Iterator[Path]:
    old = os.environ.get("PGLAB_STORE")
    with tempfile.TemporaryDirectory(prefix="pglab-bench-ui-") as tmp:
        path = Path(tmp) / "runs.sqlite"
        os.environ["PGLAB_STORE"] = str(path)
        try:
            yield path
        finally:
            if old is None:
                os.environ.pop("PGLAB_STORE", None)
            else:
                os.environ["PGLAB_STORE"] = old


def _fake_runs(store, n_runs: int = 12, steps: int = 100_000, per_update: int = 40) -> list[str]:
    """Finished runs with a full set of metrics: 6 groups x 2 seeds."""
    import numpy as np

    ids = []
    n = steps // per_update
    for k in range(n_runs):
        rng = np.random.default_rng(k)
        rid = store.create_run(
            algo="a2c", env_id="CartPole-v1", config={"total_steps": steps}, seed=k % 2,
            device="cpu", group=f"group {k // 2}",
        )  # fmt: skip
        x = np.arange(1, n + 1)
        ret = 500 * (1 - np.exp(-x / (n / 3))) + rng.normal(0, 20, n)
        rows = [
            {
                "time/env_steps": float(i * per_update),
                "time/updates": float(i),
                "time/wall_s": i * 0.02,
                "time/sps": 2000.0,
                "rollout/ep_return_mean": float(ret[i - 1]),
                "rollout/return_last20": float(ret[i - 1]),
                "rollout/ep_length_mean": float(ret[i - 1]),
                "loss/policy": float(rng.normal()),
                "loss/value": float(rng.random()),
                "policy/entropy": 0.69 * float(np.exp(-i / n)),
                "diag/approx_kl": float(rng.random() * 0.01),
                "diag/explained_variance": float(rng.random()),
                "diag/grad_norm": float(rng.random()),
                "diag/grad_var": float(rng.random() * 10),
                "diag/grad_snr": float(rng.random()),
                "opt/learning_rate": 7e-4,
            }
            for i in x
        ]
        store.append_metrics(rid, rows)
        store.set_status(rid, "finished")
        ids.append(rid)
    return ids


def _median_ms(fn: Callable[[], object], n: int, gap_s: float = 0.0) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(gap_s)
    return statistics.median(times), max(times)


def _check(at) -> None:
    if at.exception:
        raise RuntimeError(f"page raised: {[e.message for e in at.exception]}")


def bench_compare(log: Callable[[str], None], reruns: int) -> dict:
    from streamlit.testing.v1 import AppTest

    from pglab.store import Store

    with _temp_store() as path:
        ids = _fake_runs(Store(path))
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        at.switch_page("pages/compare.py").run()
        t0 = time.perf_counter()
        at.multiselect(key="cmp:extra").set_value(ids).run()
        first = (time.perf_counter() - t0) * 1000
        _check(at)
        med, worst = _median_ms(at.run, reruns)
        _check(at)
    log(f"compare rerun, 12 runs x 100k steps: first {first:.0f} ms, warm median {med:.0f} ms "
        f"(max {worst:.0f}); target < 1000 ms")  # fmt: skip
    return {"compare_first_ms": first, "compare_rerun_ms": med, "compare_rerun_max_ms": worst}


def _ppo(total: int):
    from pglab.algos import make_config

    return make_config("ppo", {"env_id": "CartPole-v1", "total_steps": total})


def bench_live(log: Callable[[str], None], reruns: int) -> dict:
    from streamlit.testing.v1 import AppTest

    from pglab import ui

    with _temp_store():
        registry = ui.get_registry()
        ids = [registry.launch("ppo", _ppo(10_000_000), seed=s) for s in range(4)]
        try:
            time.sleep(4.0)  # some points on every chart
            at = AppTest.from_string(_LIVE_SCRIPT, default_timeout=60)
            at.session_state["ids"] = ids
            at.run()
            _check(at)
            at.session_state["ms"] = []
            rt, _ = _median_ms(at.run, reruns, gap_s=0.3)
            _check(at)
            inner = list(at.session_state["ms"])
            points = sum(len(registry.snapshot(i)[0]) for i in ids)
        finally:
            registry.clear()
    med, worst = statistics.median(inner), max(inner)
    log(f"live fragment rerun, 4 active runs ({points} updates so far): median {med:.0f} ms "
        f"(max {worst:.0f}) in the script, {rt:.0f} ms AppTest round trip; target < 200 ms")  # fmt: skip
    return {"live_rerun_ms": med, "live_rerun_max_ms": worst, "live_roundtrip_ms": rt}


def _sps(registry, total: int, watch: bool) -> float:
    from streamlit.testing.v1 import AppTest

    rid = registry.launch("ppo", _ppo(total), seed=0)
    if watch:  # the Train page's live panel, re-rendered once a second like its fragment
        at = AppTest.from_string(_LIVE_SCRIPT, default_timeout=60)
        at.session_state["ids"] = [rid]
        while registry.status(rid) in ("queued", "running"):
            t0 = time.perf_counter()
            at.run()
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))
    registry.wait(rid)
    rows, _ = registry.snapshot(rid)
    return rows[-1]["time/env_steps"] / rows[-1]["time/wall_s"]


def bench_sps(log: Callable[[str], None], total: int, pairs: int) -> dict:
    from pglab import ui

    with _temp_store():
        registry = ui.get_registry()
        headless, watched = [], []
        try:
            for _ in range(pairs):  # alternate so drift in machine load hits both alike
                headless.append(_sps(registry, total, watch=False))
                watched.append(_sps(registry, total, watch=True))
        finally:
            registry.clear()
    h, w = statistics.mean(headless), statistics.mean(watched)
    log(f"training SPS, PPO CartPole {total:,} steps x {pairs}: headless {h:.0f}, "
        f"page open {w:.0f} -> {w / h:.2f}x; target >= 0.85x")  # fmt: skip
    return {"sps_headless": h, "sps_page_open": w, "sps_ratio": w / h}


def run(quick: bool, log: Callable[[str], None]) -> dict:
    import torch

    torch.set_num_threads(1)
    out = {}
    out |= bench_compare(log, reruns=5 if quick else 15)
    out |= bench_live(log, reruns=5 if quick else 15)
    out |= bench_sps(log, total=20_480 if quick else 61_440, pairs=1 if quick else 2)
    return out
