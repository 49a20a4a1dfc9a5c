"""Benchmarks behind ``python -m pglab bench``. Timing targets live here, never in tests.

Each module in :data:`BENCHES` exposes ``run(quick: bool, log: Callable[[str], None]) -> dict``:
it reports progress and a human-readable table through ``log`` and returns its figures as a
JSON-able dict.
"""

BENCHES = {
    "training": "pglab.benchmarks.training",  # PPO zoo CartPole vs SB3, grad-diagnostic cost, targets
    "gradsamples": "pglab.benchmarks.gradsamples",  # per-episode gradient samples vs one backward
    "engine": "pglab.benchmarks.engine",  # SPS with a snapshot reader vs headless
    "ui": "pglab.benchmarks.ui",  # server-side rerun times only (AppTest); see "browser"
    "browser": "pglab.benchmarks.browser",  # real server + Chromium: points, ws, long tasks, clicks
    "rlhf": "pglab.benchmarks.rlhf",  # RLHF Lab: time/samples to KL(pi||pi*) <= 0.05, win rates
    "cuda": "pglab.benchmarks.cuda",  # every algorithm on cuda vs cpu; PPO at 8/64/1024 envs
    "sweep": "pglab.benchmarks.sweep",  # Ray executor vs local processes: throughput, start-up
    "rollout": "pglab.benchmarks.rollout",  # compiled CartPole rollout vs the Python env loop
}
