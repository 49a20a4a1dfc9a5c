"""``python -m pglab rlhf``: one RLHF Lab run headless, recorded in the lab's run store.

    python -m pglab rlhf --method rloo --json
    python -m pglab rlhf --method ppo --set reward=gold --set beta=1 --seed 3
    python -m pglab rlhf --method dpo --set n_pairs=256 --set loss_type=ipo

``--set reward=gold`` trains on the gold reward directly (no reward model). Settings are
validated by :class:`pglab.rlhf.config.RLHFConfig` (a bad one is one line naming the field).
With ``--json`` the last stdout line is one JSON object (see :func:`summary`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pglab.config import parse_sets
from pglab.rlhf.config import METHODS, RLHFConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rlhf", help="RLHF Lab: one run on the toy language world, exact metrics")
    p.add_argument("--method", choices=METHODS, help="policy optimiser (default rloo)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting (repeatable), e.g. --set beta=0.1 --set reward=gold",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--store",
        type=Path,
        help="SQLite run store (default: $PGLAB_STORE or ~/.pglab/runs.sqlite)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_rlhf)


def build_config(args: argparse.Namespace) -> RLHFConfig:
    settings: dict[str, Any] = parse_sets(args.set)
    if args.method is not None:
        if "method" in settings and settings["method"] != args.method:
            raise ValueError(
                f"--method: {args.method!r} differs from --set method={settings['method']}"
            )
        settings["method"] = args.method
    return RLHFConfig.from_dict(settings)


def summary(trainer: Any, status: str, error: str | None) -> dict[str, Any]:
    """The ``--json`` line: the exact metrics of the final policy and the cost of getting there."""
    m = trainer.exact_metrics()
    cfg = trainer.config
    return {
        "method": cfg.method,
        "reward": cfg.reward,
        "gold": cfg.gold,
        "beta": cfg.beta,
        "seed": trainer.seed,
        "kl_to_optimum": m["exact/kl_to_optimum"],
        "kl_to_sft": m["exact/kl_to_sft"],
        "gold_reward": m["exact/gold_reward"],
        "proxy_reward": m["exact/proxy_reward"],
        "win_rate": m["exact/win_rate"],
        "sft_gold_reward": trainer.initial["exact/gold_reward"],
        "wall_s": round(trainer.wall_s, 3),
        "samples": trainer.env_steps,
        "updates": trainer.updates,
        "samples_to_criterion": trainer.samples_to_criterion,
        "reward_model": trainer.rm_report or None,
        "status": status,
        "error": error,
    }


def cmd_rlhf(args: argparse.Namespace) -> int:
    """Train in this process; the run lands in the store the lab reads, like a page launch."""
    config = build_config(args)
    import torch

    from pglab.engine import run_foreground, validate_launch
    from pglab.store import Store

    validate_launch("rlhf", config, args.seed, "cpu")
    torch.set_num_threads(1)
    store = Store(args.store)
    from tqdm import tqdm

    bar = tqdm(total=config.total_steps, unit="sample", file=sys.stderr, dynamic_ncols=True)

    def on_update(row: dict[str, float]) -> None:
        bar.update(int(row["time/env_steps"]) - bar.n)
        bar.set_postfix(
            kl_opt=f"{row['exact/kl_to_optimum']:.3f}", gold=f"{row['exact/gold_reward']:.2f}",
            refresh=False,
        )  # fmt: skip

    ended: dict[str, Any] = {}
    try:
        record = run_foreground(
            "rlhf", config, args.seed, "cpu", store, on_update,
            on_end=lambda trainer: ended.setdefault("trainer", trainer),
        )  # fmt: skip
    finally:
        bar.close()
    if "trainer" not in ended:
        print(f"pglab rlhf: error: {record.error}", file=sys.stderr)
        return 1
    out = {"run_id": record.id, **summary(ended["trainer"], record.status, record.error)}
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        print(
            f"rlhf {out['method']} (reward={out['reward']}, beta={out['beta']:g}) seed {out['seed']}: "
            f"{record.status} after {out['samples']} samples in {out['wall_s']:.1f}s; "
            f"KL(pi||pi*) {out['kl_to_optimum']:.4f}, KL(pi||pi_SFT) {out['kl_to_sft']:.3f}, "
            f"gold {out['sft_gold_reward']:.3f} -> {out['gold_reward']:.3f}, "
            f"win rate {out['win_rate']:.3f}; run {record.id} in {store.path}"
        )
    if record.status == "failed":
        print(f"pglab rlhf: error: {record.error}", file=sys.stderr)
        return 1
    return 130 if record.status == "stopped" else 0
