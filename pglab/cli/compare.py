"""``python -m pglab compare``: the Compare page's groups and numbers, headless.

    python -m pglab compare                      # the newest launch
    python -m pglab compare Lb3c1a2f0 "PPO" 3fa2 --metric rollout/return_last20 --json
    python -m pglab compare --by config --threshold 475

Each argument is a launch id, a group name (``train --group NAME``), a run id (or a unique
prefix) or a run name. The groups, one run per seed, and every number come from
:mod:`pglab.compare`, the module the page uses. ``--json`` prints one object: ``groups`` is
a list of ``{name, launch, n, run_ids, metric, final_mean, final_ci [lo, hi], final_iqm,
iqm_ci [lo, hi], auc, steps_to_threshold (list, None where not reached), ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pglab import compare


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare groups of runs: final IQM/mean with CIs, AUC")
    p.add_argument(
        "select",
        nargs="*",
        metavar="RUN|GROUP|LAUNCH",
        help="launch ids, group names, run ids or names (default: the newest launch)",
    )
    p.add_argument("--metric", default=compare.RETURN, help=f"default {compare.RETURN}")
    p.add_argument(
        "--threshold",
        type=float,
        help="steps to threshold: first env step where the metric reaches X "
        "(default: the env's solved return, for a return metric)",
    )
    p.add_argument(
        "--by",
        choices=tuple(compare.GROUP_BY),
        default="launch",
        help="group runs by launch (default), algorithm + config, group name, or each run",
    )
    p.add_argument("--store", type=Path, help="run store (default $PGLAB_STORE or ~/.pglab)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_compare)


def compare_runs(
    store: object, select: list[str], metric: str, threshold: float | None, by: str
) -> dict:
    """The ``--json`` object for the runs named by ``select`` in ``store``."""
    records = compare.select_runs(store.list_runs(), select)
    groups = compare.make_groups(records, by)
    frames = {r.id: store.metrics(r.id) for r in records}
    known = compare.metric_columns(frames)
    if metric not in known:
        raise ValueError(
            f"--metric: {metric!r} is not reported by these runs (one of {', '.join(known)})"
        )
    if threshold is None:
        threshold = compare.default_threshold(groups, metric)
    return compare.summarize(frames, groups, metric, threshold)


def cmd_compare(args: argparse.Namespace) -> int:
    from pglab.store import Store

    store = Store(args.store)
    result = compare_runs(store, args.select, args.metric, args.threshold, args.by)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    table = compare.summary_table(result)
    print(table.to_string(index=False))
    print()
    print(compare.method_note(result))
    print(result["reading"])
    return 0
