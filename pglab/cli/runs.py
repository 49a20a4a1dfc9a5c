"""``python -m pglab runs`` lists the run store; ``python -m pglab export RUN`` writes one run out.

    python -m pglab runs [--json] [--store PATH]
    python -m pglab export RUN --format csv|parquet|config [--out PATH] [--store PATH]

``RUN`` is a run id, a unique prefix of one, or a run name. ``--format config`` writes the
run's config JSON, which ``parse_config_json`` (and the lab's import box) reads back.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from pglab.store import RunRecord, Store

_SUFFIX = {"csv": ".csv", "parquet": ".parquet", "config": ".json"}


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="PATH",
        default=None,
        help="run store file (default: $PGLAB_STORE or ~/.pglab/runs.sqlite)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the runs in the store, newest first")
    p.add_argument("--json", action="store_true", help="print the runs as a JSON list")
    _add_store(p)
    p.set_defaults(func=list_runs)

    p = sub.add_parser("export", help="write a run's metrics (csv, parquet) or config (JSON)")
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix, or run name")
    p.add_argument("--format", required=True, choices=tuple(_SUFFIX), help="what to write")
    p.add_argument(
        "--out",
        metavar="PATH",
        default=None,
        help="output file (default: <run id>.csv|.parquet|.json here; '-' for stdout, "
        "not for parquet)",
    )
    _add_store(p)
    p.set_defaults(func=export)


def _fmt_time(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "-"


def _table(runs: list[RunRecord]) -> str:
    head = ("ID", "NAME", "ALGO", "ENV", "STATUS", "STEPS", "RETURN", "CREATED")
    lines = [head]
    for r in runs:
        ret = f"{r.final_return:.1f}" if r.final_return is not None else "-"
        lines.append(
            (
                r.id,
                r.name,
                r.algo,
                r.env_id,
                r.status,
                f"{r.env_steps}/{r.total_steps}",
                ret,
                _fmt_time(r.created_at),
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines
    )


def list_runs(args: argparse.Namespace) -> int:
    with Store(args.store) as store:
        runs = store.list_runs()
        if args.json:
            sys.stdout.write(json.dumps([r.to_json() for r in runs]) + "\n")
        elif not runs:
            print(f"no runs in {store.path}")
        else:
            print(_table(runs))
            failed = [r for r in runs if r.status == "failed" and r.error]
            for r in failed:
                print(f"{r.id} failed: {r.error}")
    return 0


def export(args: argparse.Namespace) -> int:
    try:
        return _export(args)
    except BrokenPipeError:  # `... --out - | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _export(args: argparse.Namespace) -> int:
    with Store(args.store) as store:
        run_id = store.resolve(args.run)
        out = args.out or f"{run_id}{_SUFFIX[args.format]}"
        if args.format == "config":
            text = store.config_json(run_id) + "\n"
            if out == "-":
                sys.stdout.write(text)
            else:
                with open(out, "w", encoding="utf-8") as f:
                    f.write(text)
        elif out == "-":
            if args.format == "parquet":
                raise ValueError("--out: parquet is binary; give a file name, not '-'")
            store.metrics(run_id).to_csv(sys.stdout, index=False)
        else:
            store.export_metrics(run_id, args.format, out)
        if out != "-":
            print(f"wrote {out}", file=sys.stderr)
    return 0
