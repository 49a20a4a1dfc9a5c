"""``python -m pglab gradlab``: bias and variance of policy-gradient estimators (Gradient Lab)."""

from __future__ import annotations

import argparse
import json
import sys

from pglab.gradlab import ESTIMATORS, parse_estimators, run_gradlab


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradlab",
        help="measure the bias and variance of policy-gradient estimators on the same episodes",
    )
    p.add_argument("--env", required=True, help="env id, e.g. CartPole-v1, FrozenLake-v1")
    p.add_argument("--episodes", type=int, default=64, help="episodes per batch (m)")
    p.add_argument("--batches", type=int, default=20, help="independent batches (K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--estimators",
        default=None,
        help=f"comma-separated subset of: {', '.join(ESTIMATORS)} (default: all)",
    )
    p.add_argument("--gae-lambda", type=float, default=0.95, help="lambda of the gae estimator")
    p.add_argument("--n-step", type=int, default=5, help="n of the nstep estimator")
    p.add_argument("--gamma", type=float, default=None, help="discount (default per env)")
    p.add_argument(
        "--value", default="auto", choices=["auto", "exact", "fitted"], help="source of V(s)"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = parse_estimators(args.estimators)
    result = run_gradlab(
        args.env,
        episodes=args.episodes,
        batches=args.batches,
        seed=args.seed,
        estimators=names,
        gae_lambda=args.gae_lambda,
        n_step=args.n_step,
        gamma=args.gamma,
        value=args.value,
    )
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return 0
    print(
        f"{result.env_id}: gamma={result.gamma:g} horizon={result.horizon} "
        f"m={result.episodes} episodes x K={result.batches} batches, policy={result.policy_kind}, "
        f"reference={result.reference_kind or 'none'}, V={result.value_source or '-'}"
    )
    if result.exact_J is not None:
        print(f"exact J = {result.exact_J:.6g}, |grad J| = {float(result.exact_grad.norm()):.6g}")
    table = result.table().drop(columns=["description"])
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0
