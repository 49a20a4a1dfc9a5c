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
from pathlib import Path
from typing import Any

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


def _check_out(out: str) -> None:
    """``--out``: a file in an existing folder (or '-'); one line naming the fix otherwise."""
    if out == "-":
        return
    if not out.strip():
        raise ValueError("--out: empty; give a file name, or '-' for stdout")
    path = Path(out).expanduser()
    if path.is_dir():
        raise ValueError(f"--out: {out!r} is a directory; give a file name in it")
    parent = path.parent
    if not parent.exists():
        raise ValueError(f"--out: the folder {str(parent)!r} does not exist; create it first")
    if not parent.is_dir():
        raise ValueError(f"--out: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"--out: cannot write in {str(parent)!r} (permission denied)")


def _write_out(out: str, write: Any) -> None:
    try:
        write()
    except OSError as exc:
        from pglab.store import is_disk_full

        if is_disk_full(exc):
            raise ValueError(f"--out: the disk is full writing {out!r}; free some space") from None
        raise ValueError(f"--out: cannot write {out!r} ({exc.strerror or exc})") from None


def _export(args: argparse.Namespace) -> int:
    with Store(args.store) as store:
        run_id = store.resolve(args.run)
        out = args.out if args.out is not None else f"{run_id}{_SUFFIX[args.format]}"
        _check_out(out)
        if args.format == "config":
            text = store.config_json(run_id) + "\n"
            if out == "-":
                sys.stdout.write(text)
            else:
                _write_out(out, lambda: Path(out).write_text(text, encoding="utf-8"))
        elif out == "-":
            if args.format == "parquet":
                raise ValueError("--out: parquet is binary; give a file name, not '-'")
            store.metrics(run_id).to_csv(sys.stdout, index=False)
        else:
            _write_out(out, lambda: store.export_metrics(run_id, args.format, out))
        if out != "-":
            print(f"wrote {out}", file=sys.stderr)
    return 0
