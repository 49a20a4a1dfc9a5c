"""``python -m pglab train`` (train one agent headless) and ``python -m pglab algos`` (list them).

    python -m pglab train --algo ppo --env CartPole-v1 --preset ppo-cartpole-zoo --json
    python -m pglab train --config exported.json --set learning_rate=3e-4
    python -m pglab train --preset ppo-cartpole-zoo --seeds 0-4 --group zoo-ppo
    python -m pglab algos --json

Settings are layered, later wins: algorithm defaults < ``--config FILE.json`` < ``--preset``
< ``--env`` / ``--steps`` < ``--set name=value``. Every value is validated by the algorithm's
config (a bad one raises ``ValueError`` naming the field, printed as one line by the
dispatcher). With ``--json`` the last stdout line is one JSON object (see :func:`summary`;
with ``--seeds``, ``{"launch", "group", "runs": [one summary per seed]}``).

Launches: one invocation is one launch (:func:`pglab.store.new_launch_id`), every seed of
``--seeds`` in it. ``--group NAME`` labels the runs and joins the launch that already carries
that group name in the store (so seeds trained in several invocations, or from the page,
meet in one Compare group); a new name starts a new launch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from pglab.algos import ALGO_NAMES, Trainer, get_trainer_class
from pglab.config import BaseConfig, parse_sets

# Fields that choose *which* algorithm variant runs (shown as "variants" by ``algos``).
VARIANT_FIELDS: dict[str, tuple[str, ...]] = {
    "reinforce": ("psi", "baseline", "batch_mode"),
    "a2c": ("optimizer",),
    "ppo": ("variant",),
    "trpo": (),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one agent headless, with a progress bar")
    p.add_argument("--algo", choices=ALGO_NAMES, help="algorithm (or taken from --preset/--config)")
    p.add_argument("--env", help="gymnasium env id, e.g. CartPole-v1")
    p.add_argument("--steps", type=int, help="total environment steps (total_steps)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    seeds.add_argument(
        "--seeds",
        metavar="SPEC",
        help="train one run per seed, one after another, in one launch: 0-4, 0,2,5 or 3",
    )
    p.add_argument(
        "--group",
        metavar="NAME",
        help="group (and launch) name for Compare; an existing name adds these seeds to it",
    )
    p.add_argument("--preset", help="named preset, see `python -m pglab algos`")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting (repeatable), e.g. --set learning_rate=3e-4",
    )
    p.add_argument("--config", type=Path, help="JSON file {'algo': ..., <fields>} to re-launch")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small nets are fastest single-threaded)",
    )
    p.add_argument(
        "--store",
        type=Path,
        help="SQLite run store (default: $PGLAB_STORE or ~/.pglab/runs.sqlite)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_train)

    q = sub.add_parser("algos", help="list algorithms, hyperparameters, presets and metrics")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=cmd_algos)


# -- train -----------------------------------------------------------------------------------
MAX_SEEDS = 64


def parse_seeds(spec: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5"``; ``"3"``; ranges and lists mix (``"0-2,7"``).

    Seeds are integers in [0, 2**31 - 1], at most :data:`MAX_SEEDS`, no repeats.
    """
    out: list[int] = []
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise ValueError(f"--seeds: {spec!r} is not a seed list (e.g. 0-4, 0,2,5 or 3)")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise ValueError(f"--seeds: {part!r} runs backwards (write {hi}-{lo})")
        if hi >= 2**31 or hi - lo >= MAX_SEEDS:
            raise ValueError(f"--seeds: {part!r} is out of range (at most {MAX_SEEDS} seeds)")
        out.extend(range(lo, hi + 1))
    if len(out) > MAX_SEEDS:
        raise ValueError(f"--seeds: {len(out)} seeds is out of range (at most {MAX_SEEDS})")
    if len(set(out)) != len(out):
        raise ValueError(f"--seeds: {spec!r} names a seed twice")
    return out


def launch_for_group(store: Any, group: str | None) -> str:
    """The launch id runs of ``group`` join: the newest existing run's, else a fresh one."""
    from pglab.store import new_launch_id

    if group:
        for record in store.list_runs():  # newest first
            if record.group == group and record.launch:
                return record.launch
    return new_launch_id()


def build_config(args: argparse.Namespace) -> tuple[str, BaseConfig]:
    """Resolve ``--algo/--config/--preset/--env/--steps/--set`` into a validated config."""
    algo: str | None = args.algo
    settings: dict[str, Any] = {}
    if args.config is not None:
        file_algo, data = _read_config_file(args.config)
        if algo is not None and algo != file_algo:
            raise ValueError(f"--algo: {algo!r} differs from the config file's {file_algo!r}")
        algo = file_algo
        settings.update(data)
    if args.preset is not None:
        from pglab.presets import get_preset

        preset = get_preset(args.preset)
        if algo is not None and algo != preset.algo:
            raise ValueError(
                f"--preset: {args.preset!r} is a {preset.algo} preset, not for {algo!r}"
            )
        algo = preset.algo
        settings.update(preset.to_settings())
    if algo is None:
        raise ValueError("--algo: required (one of " + ", ".join(ALGO_NAMES) + ")")
    if args.env is not None:
        settings["env_id"] = args.env
    if args.steps is not None:
        settings["total_steps"] = args.steps
    settings.update(parse_sets(args.set))
    return algo, get_trainer_class(algo).Config.from_dict(settings)


def _read_config_file(path: Path) -> tuple[str, dict[str, Any]]:
    """``--config FILE``: the file's ``(algo, settings)`` through the hardened JSON parser."""
    from pglab.config import MAX_JSON_BYTES, parse_config_data

    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ValueError(
                f"--config: {str(path)!r} is {size:,} bytes (at most {MAX_JSON_BYTES:,}); "
                "give a config JSON as written by `export --format config`"
            )
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ValueError(f"--config: {str(path)!r} is a directory; give a JSON file") from None
    except OSError as exc:
        raise ValueError(f"--config: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return parse_config_data(raw, what="--config")


def summary(algo: str, trainer: Trainer, status: str, error: str | None = None) -> dict[str, Any]:
    """The ``--json`` line: what a script needs to compare runs."""
    final = trainer.final_return()
    return {
        "algo": algo,
        "env": trainer.config.env_id,
        "seed": trainer.seed,
        "device": str(trainer.device),
        "env_steps": trainer.env_steps,
        "updates": trainer.updates,
        "wall_s": round(trainer.wall_s, 3),
        "sps": round(trainer.env_steps / trainer.wall_s, 1) if trainer.wall_s > 0 else None,
        "final_return": final if math.isfinite(final) else None,
        "episodes": len(trainer.episodes),
        "solved_at_step": trainer.solved_at_step,
        "status": status,
        "error": error,
    }


def cmd_train(args: argparse.Namespace) -> int:
    """Train in this process and record the run in the store the lab reads (``--store``,
    ``$PGLAB_STORE`` or ``~/.pglab/runs.sqlite``), exactly as a run launched from the page.

    With ``--seeds`` the seeds train one after another; Ctrl-C stops the current one and
    starts no more. The exit status is that of the worst run (failed 1, stopped 130)."""
    algo, config = build_config(args)
    max_threads = max(1, os.cpu_count() or 1)
    if not 1 <= args.threads <= max_threads:
        raise ValueError(
            f"--threads: {args.threads} is not allowed (an integer in [1, {max_threads}], the "
            "CPU cores of this machine)"
        )
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [args.seed]
    group = args.group.strip() if args.group is not None else None
    if args.group is not None and not group:
        raise ValueError("--group: an empty name is not allowed")
    import torch

    from pglab.engine import validate_launch
    from pglab.store import Store

    for seed in seeds:
        validate_launch(algo, config, seed, args.device)  # bad input: one line, no bar
    torch.set_num_threads(args.threads)
    store = Store(args.store)
    launch = launch_for_group(store, group)
    outs, codes = [], []
    for seed in seeds:
        code, out = _train_one(args, algo, config, seed, store, group, launch)
        codes.append(code)
        if out is not None:
            outs.append(out)
        if code == 130:
            break
    if args.json:
        if args.seeds is None and outs:
            sys.stdout.write(json.dumps(outs[0]) + "\n")
        elif args.seeds is not None:
            sys.stdout.write(json.dumps({"launch": launch, "group": group, "runs": outs}) + "\n")
    return 130 if 130 in codes else max(codes)


def _train_one(
    args: argparse.Namespace,
    algo: str,
    config: BaseConfig,
    seed: int,
    store: Any,
    group: str | None,
    launch: str,
) -> tuple[int, dict[str, Any] | None]:
    """One seed of :func:`cmd_train`: (exit code, its ``--json`` summary or None)."""
    from tqdm import tqdm

    from pglab.engine import run_foreground

    bar = tqdm(total=config.total_steps, unit="step", file=sys.stderr, dynamic_ncols=True)

    def on_update(metrics: dict[str, float]) -> None:
        bar.update(int(metrics["time/env_steps"]) - bar.n)
        ret = metrics.get("rollout/return_last20")
        if ret is not None:
            bar.set_postfix(ret20=f"{ret:.1f}", sps=f"{metrics['time/sps']:.0f}", refresh=False)

    ended: dict[str, Trainer] = {}
    try:
        record = run_foreground(
            algo,
            config,
            seed,
            args.device,
            store,
            on_update,
            name=f"{group} s{seed}" if group else None,
            group=group,
            launch=launch,
            on_end=lambda trainer: ended.setdefault("trainer", trainer),
        )
    finally:
        bar.close()
    if "trainer" not in ended:  # the trainer could not even be built
        print(f"pglab train: error: {record.error}", file=sys.stderr)
        return 1, None
    out = {
        "run_id": record.id,
        "launch": record.launch,
        "group": record.group,
        **summary(algo, ended["trainer"], record.status, record.error),
    }
    if not args.json:
        ret = out["final_return"]
        print(
            f"{algo} on {out['env']} seed {out['seed']}: {record.status} after "
            f"{out['env_steps']} steps in {out['wall_s']:.1f}s; return (last 20) "
            f"{'n/a' if ret is None else f'{ret:.1f}'}; solved at {out['solved_at_step']}; "
            f"run {record.id} (launch {record.launch}) in {store.path}"
        )
    if record.status == "failed":
        print(f"pglab train: error: {record.error}", file=sys.stderr)
        return 1, out
    return (130 if record.status == "stopped" else 0), out


# -- algos -----------------------------------------------------------------------------------
def algos_listing() -> dict[str, Any]:
    """Everything ``algos --json`` prints; algorithms whose module is missing are skipped."""
    from pglab.metrics import METRICS
    from pglab.presets import PRESETS, presets_for

    algos = []
    for algo in ALGO_NAMES:
        try:
            cls = get_trainer_class(algo)
        except ModuleNotFoundError as exc:
            if exc.name != f"pglab.algos.{algo}":  # a real missing dependency
                raise
            continue  # that algorithm's module is not written yet
        fields = cls.Config.fields()
        by_name = {f.name: f for f in fields}
        variants = {
            name: list(by_name[name].spec.choices or ())
            for name in VARIANT_FIELDS.get(algo, ())
            if name in by_name
        }
        algos.append(
            {
                "name": algo,
                "config": cls.Config.__name__,
                "summary": (cls.__doc__ or "").strip().split("\n")[0],
                "variants": variants,
                "hyperparameters": [f.to_json() for f in fields],
                "presets": [p.name for p in presets_for(algo)],
            }
        )
    return {
        "algorithms": algos,
        "presets": [p.to_json() for p in PRESETS.values()],
        "metrics": [m.to_json() for m in METRICS.values()],
    }


def cmd_algos(args: argparse.Namespace) -> int:
    listing = algos_listing()
    if args.json:
        sys.stdout.write(json.dumps(listing) + "\n")
        return 0
    for a in listing["algorithms"]:
        variants = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in a["variants"].items())
        print(f"{a['name']}" + (f"  ({variants})" if variants else ""))
        for h in a["hyperparameters"]:
            if h["choices"]:
                rng = ", ".join(map(str, h["choices"]))
            elif h["type"] == "bool":
                rng = "true, false"
            elif h["low"] is not None or h["high"] is not None:
                rng = f"[{h['low']}, {h['high']}]"
            else:
                rng = "any"
            if h["optional"]:
                rng += " or none"
            print(f"  {h['name']:<18} default {h['default']!s:<10} {rng:<24} {h['help']}")
        if a["presets"]:
            print(f"  presets: {', '.join(a['presets'])}")
    print("metrics:")
    for m in listing["metrics"]:
        print(f"  {m['name']:<26} {m['meaning']}")
    return 0
