"""Browser benchmark: the live Train page as a class sees it, in a real Chromium.

Starts ``streamlit run app.py`` on loopback with a temporary store, drives Debian's chromium
through Playwright, launches 4 PPO runs of 30M steps from the Train page (2 train, 2 queue on
a 2-core machine) and, after 60 s and again after 180 s of training (``--quick``: 20 s and
45 s), reports:

- **points**: plotly points in the DOM, summed over every chart's ``el._fullData``
  (``_length`` of each trace), the median of 5 looks 0.4 s apart, and ``points_max`` the
  largest (``visible_points`` counts only charts with a height, as Streamlit keeps an
  outgoing copy of a redrawn chart for a moment at height 0);
- **ws_bytes_per_s**: bytes received over the websocket, per second, over 10 s;
- **longtask_share**: share of 10 s the page's main thread spent in long tasks (> 50 ms,
  ``PerformanceObserver`` ``longtask`` entries, clipped to the window);
- **pause_s / resume_s / stop_s**: click-to-visible latency: from the click on the first
  run's Pause (Resume, Stop) to the button or status that shows the new state.

Then **SPS with the page open vs headless**: total env steps per second of all running runs
(from the store), in alternating 20 s windows (4 of each), with the Train page open and with
the tab on ``about:blank``, each :data:`SETTLE_S` after the switch; the ratio open / headless.

Targets: points at 180 s within 1.2x of points at 60 s and below 10,000; long-task share
<= 15%; every click visible <= 1.5 s; SPS ratio >= 0.9. On a shared machine every figure is
noisy: the report says what it measured, not more.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Long enough that all four runs still train when the last figure is taken (~6 min): with the
# compiled rollout two PPO runs at once on 2 cores finished 3M steps each in about 2 minutes.
RUN_STEPS = 30_000_000
CHROMIUM = "/usr/bin/chromium"
# An SPS window starts this long after the tab switched: opening the Train page costs the
# browser ~4 CPU s in its first 3 s on this machine (a one-off: the page then stays open);
# the steady cost of an open page is what the windows compare.
SETTLE_S = 5
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Every plotly chart in a document: [title, points, height in px]. The live charts sit in
# component iframes (pglab.ui.livecharts): run it in every frame (in_frames).
CHARTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => {
  const raw = (el.layout && el.layout.title && el.layout.title.text) || '';
  const n = (el._fullData || []).reduce((a, d) => a + (d._length || 0), 0);
  return [raw.replace(/<[^>]*>/g, ''), n, Math.round(el.getBoundingClientRect().height)];
})"""
# Long tasks since the page loaded, collected by an init script: [[start, duration], ...].
LONGTASK_INIT = """
window.__longtasks = [];
try {
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) window.__longtasks.push([e.startTime, e.duration]);
  }).observe({type: 'longtask', buffered: true});
} catch (e) {}
"""


def in_frames(page: Any, js: str, arg: Any = None) -> list[Any]:
    """``js`` evaluated in the page and in each of its iframes (the live charts'), the
    results in frame order; a frame that went away meanwhile is left out."""
    from playwright.sync_api import Error as PlaywrightError

    out = []
    for frame in page.frames:
        with contextlib.suppress(PlaywrightError):  # detached or navigating: no charts now
            out.append(frame.evaluate(js, arg))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(store_path: Path, port: int | None = None, log_path: Path | None = None) -> Iterator[str]:
    """``streamlit run app.py`` on 127.0.0.1 with ``PGLAB_STORE=store_path``; yields its URL
    once ``/_stcore/health`` answers (up to 90 s on a loaded machine)."""
    port = port or free_port()
    env = {**os.environ, "PGLAB_STORE": str(store_path), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.port", str(port), "--server.address", "127.0.0.1",
    ]  # fmt: skip
    log_path = log_path or store_path.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    box.locator('[role="combobox"]').first.click()
    page.get_by_role("option", name=option).first.click()


def settle(page: Any, timeout_ms: int = 60_000) -> None:
    """Wait until the script run the last interaction started has finished."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout_ms)


def fill(page: Any, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    settle(page)


def launch_from_train(page: Any, base: str, algo: str, seeds: int, steps: int) -> None:
    """Open Train, pick ``algo`` (menu text), seeds and budget, press Launch."""
    page.goto(f"{base}/train")
    page.get_by_role("heading", name="Train").first.wait_for(timeout=90_000)
    choose(page, "Algorithm", algo)
    settle(page)
    fill(page, "Seeds", str(seeds))
    fill(page, "Step budget", str(steps))
    page.get_by_role("button", name="Launch", exact=True).click()
    settle(page)


# Click the index-th button labelled `label` and time, in the page's own clock, until the
# new state is on screen: one more `want` than before the click, where `want` is
# "text:..." (occurrences of that text) or a button label. -1: no such button; Infinity:
# not shown within the timeout.
CLICK_JS = """async ([label, index, want, timeoutMs]) => {
  const buttons = t => [...document.querySelectorAll('button')]
    .filter(b => b.innerText.trim() === t && b.getBoundingClientRect().height > 0);
  const count = () => want.startsWith('text:')
    ? document.body.innerText.split(want.slice(5)).length - 1 : buttons(want).length;
  const b = buttons(label)[index];
  if (!b) return -1;
  const before = count();
  const t0 = performance.now();
  b.click();
  return await new Promise(resolve => {
    const iv = setInterval(() => {
      const dt = performance.now() - t0;
      if (count() > before) { clearInterval(iv); resolve(dt / 1000); }
      else if (dt > timeoutMs) { clearInterval(iv); resolve(Infinity); }
    }, 10);
  });
}"""


def click_latency(page: Any, label: str, want: str, index: int = 0, timeout_s: float = 30) -> float:
    """Seconds from the click on the ``index``-th button ``label`` to the new state being
    visible (one more ``want`` than before: ``"text:..."`` or a button label), timed in
    the page (the click is the DOM event, not Playwright's input pipeline); ``inf`` when it
    did not show within ``timeout_s``, ``nan`` when there was no such button."""
    page.get_by_role("button", name=label, exact=True).first.wait_for(timeout=60_000)
    dt = page.evaluate(CLICK_JS, [label, index, want, timeout_s * 1000])
    return float("nan") if dt == -1 else float(dt)


def _window(page: Any, seconds: float) -> dict[str, float]:
    """Websocket bytes/s and the main thread's long-task share over the next ``seconds``."""
    start = page.evaluate("() => performance.now()")
    start_bytes = _ws_total(page)
    page.wait_for_timeout(int(seconds * 1000))
    end = page.evaluate("() => performance.now()")
    tasks = page.evaluate("() => window.__longtasks || []")
    busy = sum(max(0.0, min(s + d, end) - max(s, start)) for s, d in tasks)
    return {
        "ws_bytes_per_s": (_ws_total(page) - start_bytes) / seconds,
        "longtask_share": busy / (end - start),
    }


def _ws_total(page: Any) -> int:
    return int(page.__dict__.get("_pglab_ws_bytes", [0])[0])


def _track_ws(page: Any) -> None:
    """Count the bytes of every websocket frame the page receives (on ``page``)."""
    counter = [0]
    page.__dict__["_pglab_ws_bytes"] = counter

    def on_ws(ws: Any) -> None:
        ws.on("framereceived", lambda payload: counter.__setitem__(0, counter[0] + len(payload)))

    page.on("websocket", on_ws)


def _points_once(page: Any) -> tuple[int, int, int]:
    charts = [c for frame in in_frames(page, CHARTS_JS) for c in frame]
    return (
        sum(n for _, n, _ in charts),
        sum(n for _, n, h in charts if h > 0),
        sum(1 for _, _, h in charts if h > 0),
    )


def _points(page: Any, samples: int = 5, every_ms: int = 400) -> tuple[int, int, int, int]:
    """(points, visible points, visible charts, max points): the median of ``samples`` looks
    ``every_ms`` apart, and the largest. One look can land inside a redraw, while Streamlit
    still holds the outgoing copy of a chart (at height 0) beside the new one."""
    looks = []
    for k in range(samples):
        if k:
            page.wait_for_timeout(every_ms)
        looks.append(_points_once(page))
    looks.sort()
    mid = looks[len(looks) // 2]
    return mid[0], mid[1], mid[2], looks[-1][0]


def _steps_now(store: Any) -> float:
    """Env steps of every run so far, from the store (flushed every 0.5 s)."""
    return float(sum(r.env_steps for r in store.list_runs()))


def run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        log("browser bench skipped: the playwright package is not installed")
        return {"skipped": "playwright not installed"}
    if not Path(CHROMIUM).exists():
        log(f"browser bench skipped: {CHROMIUM} is not installed")
        return {"skipped": f"{CHROMIUM} not installed"}
    from pglab.store import Store

    marks = (20, 45) if quick else (60, 180)
    sps_window, sps_rounds = (8, 2) if quick else (20, 4)
    out: dict[str, Any] = {"quick": quick, "cpus": os.cpu_count(), "runs": "4 x PPO 30M steps"}
    with tempfile.TemporaryDirectory(prefix="pglab-bench-browser-") as tmp:
        store_path = Path(tmp) / "runs.sqlite"
        port = int(os.environ.get("PGLAB_BENCH_PORT", "0")) or None
        with serve(store_path, port) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 2400})
            page.add_init_script(LONGTASK_INIT)
            page.set_default_timeout(60_000)
            _track_ws(page)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            log(f"server {base}; launching 4 PPO runs of {RUN_STEPS:,} steps from Train")
            launch_from_train(page, base, "PPO", 4, RUN_STEPS)
            t_launch = time.monotonic()
            live_url = page.url
            store = Store(store_path)
            for mark in marks:
                page.wait_for_timeout(max(0, int((t_launch + mark - time.monotonic()) * 1000)))
                points, visible, charts, points_max = _points(page)
                win = _window(page, 10.0)
                pause = click_latency(page, "Pause", "Resume")
                resume = click_latency(page, "Resume", "Pause")
                row = {
                    "points": points,
                    "points_max": points_max,
                    "visible_points": visible,
                    "charts": charts,
                    **win,
                    "pause_s": pause,
                    "resume_s": resume,
                    "env_steps": _steps_now(store),
                }
                out[f"at_{mark}s"] = row
                log(
                    f"at {mark:>3} s: {points:,} points in the DOM (max {points_max:,}; {visible:,} on {charts} "
                    f"visible charts), websocket {win['ws_bytes_per_s'] / 1e3:.1f} kB/s, "
                    f"long tasks {win['longtask_share']:.1%} of 10 s, Pause {pause:.2f} s, "
                    f"Resume {resume:.2f} s"
                )
            # SPS: all running runs' env steps per second, page open vs the tab on about:blank
            ratios, open_sps, blind_sps = [], [], []
            for _ in range(sps_rounds):
                for side in ("open", "headless"):
                    if side == "headless":
                        page.goto("about:blank")
                    elif page.url != live_url:
                        page.goto(live_url)
                        page.get_by_role("heading", name="Train").first.wait_for(timeout=90_000)
                    page.wait_for_timeout(SETTLE_S * 1000)  # the page has loaded (or closed)
                    s0, t0 = _steps_now(store), time.monotonic()
                    page.wait_for_timeout(sps_window * 1000)
                    sps = (_steps_now(store) - s0) / (time.monotonic() - t0)
                    (open_sps if side == "open" else blind_sps).append(sps)
                ratios.append(open_sps[-1] / blind_sps[-1] if blind_sps[-1] else float("nan"))
            out["sps_open"] = open_sps
            out["sps_headless"] = blind_sps
            out["sps_ratio"] = sum(open_sps) / sum(blind_sps) if sum(blind_sps) else None
            log(
                "SPS with the page open / headless: "
                + ", ".join(f"{a:,.0f}/{b:,.0f}" for a, b in zip(open_sps, blind_sps, strict=True))
                + f" -> ratio {out['sps_ratio']:.2f}"
            )
            page.goto(live_url)
            page.get_by_role("heading", name="Train").first.wait_for(timeout=90_000)
            out["stop_s"] = click_latency(page, "Stop", "text:· stopped ·")
            log(f"Stop {out['stop_s']:.2f} s")
            out["page_errors"] = errors[:5]
            store.close()
            browser.close()
    a, b = out[f"at_{marks[0]}s"], out[f"at_{marks[1]}s"]
    clicks = [a["pause_s"], a["resume_s"], b["pause_s"], b["resume_s"], out["stop_s"]]
    out["targets"] = {
        "points_growth<=1.2": b["points"] <= 1.2 * max(1, a["points"]),
        "points<10000": b["points"] < 10_000,
        "longtask_share<=0.15": max(a["longtask_share"], b["longtask_share"]) <= 0.15,
        "clicks<=1.5s": all(c <= 1.5 for c in clicks),  # nan / inf (never showed) fail
        "sps_ratio>=0.9": (out["sps_ratio"] or 0) >= 0.9,
    }
    log(
        f"points {a['points']:,} -> {b['points']:,} ({b['points'] / max(1, a['points']):.2f}x); "
        f"clicks {', '.join(f'{c:.2f}' for c in clicks)} s; targets: "
        + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in out["targets"].items())
    )
    return out
