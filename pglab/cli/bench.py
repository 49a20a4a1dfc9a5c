"""``python -m pglab bench``: run the benchmarks and print their figures."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from pglab.benchmarks import BENCHES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the benchmarks (speed targets live here, not in tests)")
    p.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of: {', '.join(BENCHES)}"
    )
    p.add_argument("--quick", action="store_true", help="smaller budgets, for a fast look")
    p.add_argument(
        "--json", action="store_true", help="print all figures as one JSON line at the end"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    for n in names:
        if n not in BENCHES:
            raise ValueError(f"--only: {n!r} is not a benchmark (one of {', '.join(BENCHES)})")
    results = {}
    for n in names:
        module = importlib.import_module(BENCHES[n])
        print(f"== bench {n}", flush=True)
        results[n] = module.run(quick=args.quick, log=lambda s: print(s, flush=True))
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
    return 0
