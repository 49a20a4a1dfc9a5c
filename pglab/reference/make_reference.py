"""Regenerate the reference bands: train every preset for N seeds and store its seed band.

    python -m pglab.reference.make_reference --seeds 10 --cap 100000
    python -m pglab.reference.make_reference --presets ppo-cartpole-zoo --seeds 12

For each preset, seeds ``0..N-1`` train with the preset's exact config (its own
``total_steps``, so learning-rate and clip schedules anneal as in a full run) and stop at
``min(total_steps, cap)`` env steps: the band of a capped run is the *prefix* of the preset's
full curve. Each seed's ``rollout/return_last20`` is interpolated onto 100 points between
the last first-point and the first last-point of the seeds (where every seed has data), and
the file keeps, per point: the median, the 10th and 90th percentiles across seeds (where a
normal run lies) and the mean with its 95% bootstrap interval.

Writes ``data/<preset>.csv`` and ``data/<preset>.json`` (how it was made) next to this
script; a preset already written with the same seeds and cap is skipped, so an interrupted
study resumes. Single-threaded torch; seeds run one after another.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pglab import __version__, compare, stats
from pglab.presets import PRESETS, get_preset

DATA = Path(__file__).with_name("data")
METRIC = compare.RETURN
N_GRID = 100


def train_seed(preset_name: str, seed: int, cap: int) -> pd.DataFrame:
    """One seed of a preset, stopped at ``cap`` env steps: one row per update."""
    from pglab.algos import make_trainer

    preset = get_preset(preset_name)
    trainer = make_trainer(preset.algo, preset.config(), seed=seed, device="cpu")
    rows = []
    try:
        while not trainer.done and trainer.env_steps < cap:
            rows.append(dict(trainer.update()))
    finally:
        trainer.close()
    return pd.DataFrame(rows)


def band_table(frames: dict[str, pd.DataFrame], bounds: tuple[float, float] | None) -> pd.DataFrame:
    """Per grid point: median, p10, p90 across seeds and the mean with its 95% bootstrap CI."""
    lo_x = max(f[compare.STEPS][f[METRIC].notna()].min() for f in frames.values())
    hi_x = min(f[compare.STEPS][f[METRIC].notna()].max() for f in frames.values())
    grid = np.linspace(lo_x, hi_x, N_GRID)
    values = compare.align(frames, METRIC, grid=grid).to_numpy()  # [grid, seeds]
    mean, mean_lo, mean_hi, n = stats.curve_ci(values, "mean", bounds=bounds)
    p10, median, p90 = np.percentile(values, [10, 50, 90], axis=1)
    return pd.DataFrame(
        {
            "env_steps": np.round(grid).astype(np.int64),
            "n": n,
            "median": median,
            "p10": p10,
            "p90": p90,
            "mean": mean,
            "mean_lo": mean_lo,
            "mean_hi": mean_hi,
        }
    ).round(3)


def make(preset_name: str, n_seeds: int, cap: int, force: bool = False) -> Path:
    preset = get_preset(preset_name)
    steps = min(int(preset.settings["total_steps"]), cap)
    meta_path = DATA / f"{preset_name}.json"
    if meta_path.exists() and not force:
        old = json.loads(meta_path.read_text())
        if old.get("seeds") == n_seeds and old.get("steps") == steps:
            print(f"{preset_name}: up to date, skipped", file=sys.stderr)
            return meta_path
    frames, walls, finals = {}, [], []
    for seed in range(n_seeds):
        t0 = time.perf_counter()
        frame = train_seed(preset_name, seed, steps)
        walls.append(time.perf_counter() - t0)
        frames[f"s{seed}"] = frame
        finals.append(compare.final_value(frame))
        print(
            f"{preset_name} seed {seed}: {walls[-1]:.0f}s, final {finals[-1]:.1f}",
            file=sys.stderr,
        )
    table = band_table(frames, compare.metric_bounds(METRIC, preset.env_id))
    DATA.mkdir(exist_ok=True)
    table.to_csv(DATA / f"{preset_name}.csv", index=False)
    meta = {
        "preset": preset_name,
        "algo": preset.algo,
        "env_id": preset.env_id,
        "metric": METRIC,
        "seeds": n_seeds,
        "budget": int(preset.settings["total_steps"]),
        "steps": steps,
        "final_median": round(float(np.median(finals)), 2),
        "final_p10": round(float(np.percentile(finals, 10)), 2),
        "final_p90": round(float(np.percentile(finals, 90)), 2),
        "wall_s_per_seed": round(float(np.mean(walls)), 1),
        "pglab": __version__,
        "python": platform.python_version(),
        "made": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": (
            f"python -m pglab.reference.make_reference --presets {preset_name} "
            f"--seeds {n_seeds} --cap {cap}"
        ),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pglab.reference.make_reference")
    p.add_argument("--presets", nargs="*", default=list(PRESETS), help="default: all")
    p.add_argument("--seeds", type=int, default=10, help="seeds per preset (default 10)")
    p.add_argument("--cap", type=int, default=100_000, help="env steps per seed at most")
    p.add_argument("--force", action="store_true", help="redo presets already written")
    args = p.parse_args(argv)
    if not 2 <= args.seeds <= 64:
        p.error(f"--seeds: {args.seeds} is out of range (in [2, 64])")
    if args.cap < 1000:
        p.error(f"--cap: {args.cap} is out of range (>= 1000)")
    import torch

    torch.set_num_threads(1)
    for name in args.presets:
        try:
            make(name, args.seeds, args.cap, args.force)
        except ValueError as exc:
            p.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
