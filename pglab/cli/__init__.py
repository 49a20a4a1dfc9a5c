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
