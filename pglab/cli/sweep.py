"""``python -m pglab sweep SPEC.json``: a grid, an Optuna search or a many-seed study.

    python -m pglab sweep sweep.json                       # processes of this machine
    python -m pglab sweep sweep.json --executor ray        # a local Ray runtime
    python -m pglab sweep sweep.json --executor ray --address 10.0.0.5:6379 --json

The spec is validated field by field before anything starts (see :mod:`pglab.sweep.spec`).
One line per trial as it ends; Ctrl-C stops the sweep (its runs end ``stopped``). With
``--json`` the last stdout line is one JSON object: ``launch`` (the sweep id), ``trials`` (each
with ``settings``, ``run_ids``, ``objective``, ``ci``, ``status``) and ``best``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pglab.sweep.executors import EXECUTORS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep spec: grid or Optuna search, N seeds a trial")
    p.add_argument("spec", type=Path, help="the sweep spec, a JSON file")
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: a process per run on this machine (default); ray: Ray tasks",
    )
    p.add_argument(
        "--address",
        help="HOST:PORT of a running Ray cluster's head (with --executor ray); "
        "without it a local Ray runtime is started",
    )
    p.add_argument(
        "--store",
        type=Path,
        help="SQLite run store (default: $PGLAB_STORE or ~/.pglab/runs.sqlite)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_sweep)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def cmd_sweep(args: argparse.Namespace) -> int:
    from pglab.store import Store
    from pglab.sweep import Sweep, load_spec

    spec = load_spec(args.spec)
    store = Store(args.store) if args.store is not None else Store()
    sweep = Sweep(spec, store, executor=args.executor, address=args.address)
    print(
        f"sweep {sweep.id}: {spec.trials} trial(s) x {len(spec.seeds)} seed(s) of {spec.algo} "
        f"on {spec.env_id}, {spec.budget} steps a run, objective {spec.objective}, "
        f"executor {args.executor}" + (f" at {sweep.address}" if sweep.address else ""),
        flush=True,
    )

    def on_trial(trial) -> None:  # one line per trial as it ends
        d = trial.to_json()
        ci = d["ci"]
        ci_text = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
        print(
            f"  trial {trial.number} {trial.label}: {d['status']}, {spec.objective} "
            f"{_fmt(d['objective'])}{ci_text} (n={d['n']})",
            flush=True,
        )

    result = sweep.run(on_trial)
    code = 130 if result["status"] == "stopped" else 0  # stopped: Ctrl-C
    best = result["best"]
    if best is not None:
        print(
            f"best: trial {best['number']} {best['label']}: {spec.objective} "
            f"{_fmt(best['objective'])} (n={best['n']})"
        )
    if args.json:
        print(json.dumps(result))
    sys.stdout.flush()
    return code
