"""``python -m pglab <command>``: one module per command group, each with ``register()``.

Every command module exposes ``register(subparsers)``, which adds its parsers and sets
``func`` (``args -> int`` exit code) with ``set_defaults``. Bad input raises ``ValueError``
and is printed as one line naming the field; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command group modules, in help order
_MODULES = [
    "pglab.cli.train",
    "pglab.cli.gradlab",
    "pglab.cli.runs",
    "pglab.cli.bench",
    "pglab.cli.compare",
    "pglab.cli.rlhf",
    "pglab.cli.reproduce",
    "pglab.cli.sweep",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pglab", description="pglab: a policy-gradient lab"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a command still to be written
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"pglab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `python -m pglab algos | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # anything else is still one line; PGLAB_DEBUG=1 shows the trace
        if os.environ.get("PGLAB_DEBUG"):
            raise
        print(f"pglab {args.command}: error: {describe_error(exc)}", file=sys.stderr)
        return 1


def describe_error(exc: BaseException) -> str:
    """One line for an unexpected failure: disk full, a damaged store, or the exception."""
    import sqlite3

    from pglab.store import is_disk_full

    text = str(exc).splitlines()[0] if str(exc) else ""
    if is_disk_full(exc):
        return f"disk full ({text}); free some space and retry"
    if isinstance(exc, sqlite3.OperationalError) and "readonly" in text:
        return f"the run store is read-only ({text}); make it writable or use another --store"
    if isinstance(exc, sqlite3.DatabaseError):
        return (
            f"the run store is damaged ({text}); move it aside and retry, or use another "
            "--store / $PGLAB_STORE"
        )
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or text}{where}"
    return f"{type(exc).__name__}: {text} (unexpected; PGLAB_DEBUG=1 shows the traceback)"
