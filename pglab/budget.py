"""Resource budget of a run, estimated from its config alone, checked before it launches.

:func:`estimate` adds up the peak memory a run will take on top of the process it runs in::

    rollout     = S_max * (2 obs_dim + act_dim + 10) * 4 B * 3     (buffers, torch copies)
    nets        = (P_policy + P_value) * 4 B * 6                   (weights, grads, Adam, copies)
    activations = R * hidden * max(n_layers, 1) * 4 B * 6          (forward + backward of R rows)
                + 2 S_max * hidden * 4 B * 2                       (V over obs and next obs)
    diagnostics = min(DIAG_MEMORY_BYTES, S_max P_policy 16 B) + S_max * 64 B  (if enabled)

with ``S_max`` the most env steps one update can collect (``num_envs x n_steps``; REINFORCE:
its batch plus one episode per env, or ``batch_size`` whole episodes at the env's time limit)
and ``R`` the rows one gradient step sees (PPO's ``batch_size``, the whole batch elsewhere).
The factors were fitted to the peak RSS of real runs (README, "Bounded resources"); the
estimate errs on the high side.

:func:`check_budget` refuses a config whose estimate exceeds :func:`memory_budget_bytes` (by
default a quarter of this machine's RAM, ``$PGLAB_MEMORY_BUDGET_GB`` to change it), with the
estimate and the field to change. Rows to the store are estimated too (``rows_per_s``,
``stored_rows``); they are not refused, because the store decimates tiny updates
(:func:`pglab.store.keep_row`), which bounds a run's rows whatever its config.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass
from typing import Any

from pglab.config import BaseConfig

DEFAULT_RAM_FRACTION = 0.25  # of physical RAM, for one run, when no budget is set
BUDGET_ENV = "PGLAB_MEMORY_BUDGET_GB"
_FLOAT = 4  # bytes
# Update rate ceilings for the rows-per-second estimate: the lab's fastest single run steps
# ~50k env steps/s, and one update costs at least ~0.7 ms (measured ~1,500 1-step updates/s).
SPS_CEILING = 50_000
UPDATES_PER_S_CEILING = 1_500


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MB"


def physical_ram_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget_bytes() -> tuple[int, str]:
    """``(bytes, where it comes from)``: ``$PGLAB_MEMORY_BUDGET_GB`` if set, else a quarter of
    the machine's RAM (4 GB where the RAM cannot be read)."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            gb = float("nan")
        if not 0 < gb < 1e6:
            raise ValueError(f"{BUDGET_ENV}: {raw[:40]!r} is not allowed (a number of GB > 0)")
        return int(gb * 2**30), f"{BUDGET_ENV}={raw}"
    ram = physical_ram_bytes()
    if ram is None:
        return 4 * 2**30, f"the default 4 GB (set {BUDGET_ENV} to change it)"
    return int(ram * DEFAULT_RAM_FRACTION), (
        f"a quarter of this machine's {_gb(ram)} RAM (set {BUDGET_ENV} to change it)"
    )


@functools.cache
def _space_dims(env_id: str) -> tuple[int, int, int | None]:
    """``(obs_dim, action outputs, time limit)`` of a (validated) env id."""
    from pglab.envs import env_info, make_env, obs_dim

    env = make_env(env_id)
    try:
        act = env.action_space
        n_out = int(act.n) if hasattr(act, "n") else int(sum(act.shape) or 1)
        return obs_dim(env.observation_space), n_out, env_info(env_id).max_episode_steps
    finally:
        env.close()


def _mlp_params(d_in: int, d_out: int, hidden: int, n_layers: int) -> int:
    dims = [d_in] + [hidden] * n_layers + [d_out]
    return sum(a * b + b for a, b in itertools.pairwise(dims))


@dataclass(frozen=True)
class Estimate:
    """Peak memory (bytes) by part, and the store's row traffic, of one run."""

    rollout: int
    nets: int
    activations: int
    diagnostics: int
    steps_per_update: tuple[int, int]  # (fewest, most) env steps one update collects
    updates: int  # at most, over the whole run
    rows_per_s: float  # update rows produced per second, at most
    stored_rows: int  # rows the store keeps for the whole run, at most

    @property
    def memory(self) -> int:
        return self.rollout + self.nets + self.activations + self.diagnostics

    def parts(self) -> str:
        return (
            f"rollout {_gb(self.rollout)}, nets {_gb(self.nets)}, activations "
            f"{_gb(self.activations)}, gradient diagnostics {_gb(self.diagnostics)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "memory_bytes": self.memory,
            "rollout_bytes": self.rollout,
            "nets_bytes": self.nets,
            "activations_bytes": self.activations,
            "diagnostics_bytes": self.diagnostics,
            "steps_per_update": list(self.steps_per_update),
            "updates": self.updates,
            "rows_per_s": self.rows_per_s,
            "stored_rows": self.stored_rows,
        }


def estimate(algo: str, cfg: BaseConfig) -> Estimate:
    """The resource estimate of ``algo`` with ``cfg`` (see the module docstring)."""
    from pglab.diagnostics import DIAG_MEMORY_BYTES
    from pglab.store import stored_row_count

    obs, n_out, horizon = _space_dims(cfg.env_id)
    horizon = horizon or 1000
    c: Any = cfg
    num_envs = int(getattr(c, "num_envs", 1))
    if algo == "reinforce":
        if c.batch_mode == "episodes":
            s_min, s_max = c.batch_size, c.batch_size * horizon
        else:
            s_min, s_max = c.batch_size, c.batch_size + num_envs * horizon
        rows = s_max
        has_value = c.baseline == "value"
    else:
        s_min = s_max = num_envs * int(c.n_steps)
        rows = min(int(c.batch_size), s_max) if algo == "ppo" else s_max
        if algo == "trpo":
            rows = max(rows, int(c.vf_batch_size))
        has_value = True
    hidden, layers = int(c.hidden_size), int(c.n_layers)
    width = hidden if layers else max(obs, n_out)
    p_pi = _mlp_params(obs, n_out, hidden, layers) + n_out  # + a Gaussian's log_std
    p_v = _mlp_params(obs, 1, hidden, layers) if has_value else 0
    rollout = s_max * (2 * obs + n_out + 10) * _FLOAT * 3
    nets = (p_pi + p_v) * _FLOAT * 6
    activations = rows * width * max(layers, 1) * _FLOAT * 6 * (2 if has_value else 1)
    if has_value:
        activations += 2 * s_max * width * _FLOAT * 2
    diagnostics = 0
    if cfg.grad_diagnostics:  # chunks of segment gradients, capped, plus per-step indices
        diagnostics = min(DIAG_MEMORY_BYTES, s_max * p_pi * _FLOAT * 4) + s_max * 64
    updates = -(-int(cfg.total_steps) // max(1, s_min))
    rows_per_s = min(SPS_CEILING / max(1, s_min), UPDATES_PER_S_CEILING)
    return Estimate(
        rollout=rollout,
        nets=nets,
        activations=activations,
        diagnostics=diagnostics,
        steps_per_update=(s_min, s_max),
        updates=updates,
        rows_per_s=rows_per_s,
        stored_rows=stored_row_count(updates),
    )


# The field a user changes to shrink each part, per algorithm.
_KNOBS = {
    "rollout": {
        "reinforce": "batch_size",
        "ppo": "n_steps",
        "a2c": "n_steps",
        "trpo": "n_steps",
    },
    "activations": {"ppo": "batch_size", "reinforce": "batch_size"},
    "nets": {},
    "diagnostics": {},
}
_KNOB_DEFAULT = {
    "rollout": "n_steps",
    "activations": "hidden_size",
    "nets": "hidden_size",
    "diagnostics": "grad_diagnostics",
}
_HOW = {
    "rollout": "collect fewer steps per update (num_envs x n_steps, or REINFORCE's batch_size)",
    "activations": "shrink the rows per gradient step or the layers (batch_size, hidden_size)",
    "nets": "use smaller nets (hidden_size, n_layers)",
    "diagnostics": "set grad_diagnostics=false",
}


def check_budget(algo: str, cfg: BaseConfig) -> Estimate | None:
    """:func:`estimate`, raising ``ValueError`` (naming the field to change) over the budget.

    Only the gym trainers (:data:`pglab.algos.ALGO_NAMES`) are estimated; ``None`` for the
    others, whose size their own validation caps (the RLHF world's V^L <= 4,096 responses).
    """
    from pglab.algos import ALGO_NAMES

    if algo not in ALGO_NAMES:
        return None
    est = estimate(algo, cfg)
    budget, source = memory_budget_bytes()
    if est.memory <= budget:
        return est
    parts = {
        "rollout": est.rollout,
        "activations": est.activations,
        "nets": est.nets,
        "diagnostics": est.diagnostics,
    }
    worst = max(parts, key=parts.__getitem__)
    knob = _KNOBS[worst].get(algo, _KNOB_DEFAULT[worst])
    raise ValueError(
        f"{knob}: this {algo} config needs about {_gb(est.memory)} of memory at peak "
        f"({est.parts()}), over the budget of {_gb(budget)}, {source}; {_HOW[worst]}"
    )
