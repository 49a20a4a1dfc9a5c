"""``python -m pglab reproduce NAME [--runs N] [--json]``: a textbook figure, its published
reference values and whether the lab's run matches (see :mod:`pglab.reproduce`)."""

from __future__ import annotations

import argparse
import json
import sys

from pglab.reproduce import EXPERIMENTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a textbook figure and say whether it matches the published result",
    )
    p.add_argument("name", nargs="?", help=f"experiment: {', '.join(EXPERIMENTS)}")
    p.add_argument("--list", action="store_true", help="name the experiments and exit")
    p.add_argument("--runs", type=int, default=None, help="independent runs (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps per trainer run (ppo-table1, gae-sweep; default 30000)",
    )
    p.add_argument(
        "--no-store", action="store_true", help="do not record the curves in the run store"
    )
    p.add_argument("--json", action="store_true", help="end with one JSON line of the result")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, (title, _) in EXPERIMENTS.items():
            print(f"{name:12s} {title}")
        return 0
    if args.name is None:
        raise ValueError(f"name: give an experiment ({', '.join(EXPERIMENTS)}) or --list")
    if args.name not in EXPERIMENTS:
        raise ValueError(f"name: {args.name!r} is not one of {', '.join(EXPERIMENTS)}")
    if args.runs is not None and args.runs < 1:
        raise ValueError(f"runs: {args.runs} is not allowed (an integer >= 1)")

    from pglab.reproduce import TRAINED, reproduce, reproduce_to_store
    from pglab.store import Store

    unit = "runs done" if args.name in TRAINED else "episode"

    def progress(n: int) -> None:
        print(f"\r{args.name}: {unit} {n}", end="", file=sys.stderr, flush=True)

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"steps: {args.steps} is not allowed (an integer >= 1)")
    if args.no_store and args.name not in TRAINED:
        rep, ids = reproduce(args.name, args.runs, args.seed, progress=progress), []
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"{tmp}/runs.sqlite") if args.no_store else Store()
            rep, ids = reproduce_to_store(
                args.name, store, args.runs, args.seed, progress=progress, total_steps=args.steps
            )
            if args.no_store:
                ids = []
    print(file=sys.stderr)
    print(f"{rep.title}: {rep.runs} runs, {rep.budget}; seeds {rep.seeds}")
    for key, value in rep.figures.items():
        print(f"  {key}: {value:.4g}")
    for key, value in rep.references.items():
        print(f"  published/exact {key}: {value:.3f}")
    if ids:
        print(f"  stored as runs {', '.join(ids)}")
    print(rep.sentence())
    if args.json:
        sys.stdout.write(json.dumps(rep.to_json()) + "\n")
    return 0
