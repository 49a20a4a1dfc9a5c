"""Algorithm registry: name -> trainer class, imported lazily so ``import pglab`` stays light."""

from __future__ import annotations

import importlib
from typing import Any

from pglab.algos.base import NonFiniteError, Trainer, resolve_device
from pglab.config import BaseConfig

# Internal table (never fed from user input): algorithm name -> "module:Class".
_TRAINERS = {
    "reinforce": "pglab.algos.reinforce:Reinforce",
    "a2c": "pglab.algos.a2c:A2C",
    "ppo": "pglab.algos.ppo:PPO",
    "trpo": "pglab.algos.trpo:TRPO",
}
ALGO_NAMES = tuple(_TRAINERS)  # the Gymnasium algorithms (Train page, `train --algo`)
# Trainers with a page and a command of their own, launched through the same engine.
_TRAINERS["rlhf"] = "pglab.rlhf.trainer:RLHFTrainer"  # RLHF Lab, `python -m pglab rlhf`

__all__ = [
    "ALGO_NAMES",
    "NonFiniteError",
    "Trainer",
    "get_trainer_class",
    "make_config",
    "make_trainer",
    "resolve_device",
    "warm_up",
]


def get_trainer_class(algo: str) -> type[Trainer]:
    if algo not in _TRAINERS:
        raise ValueError(f"algo: {algo!r} is not allowed (one of {', '.join(ALGO_NAMES)})")
    module, cls = _TRAINERS[algo].split(":")
    return getattr(importlib.import_module(module), cls)


def make_config(algo: str, settings: dict[str, Any] | None = None) -> BaseConfig:
    """Validated config of ``algo`` from plain settings (defaults for anything not given)."""
    return get_trainer_class(algo).Config.from_dict(dict(settings or {}))


def make_trainer(
    algo: str, config: BaseConfig | dict[str, Any], seed: int = 0, device: str = "cpu"
) -> Trainer:
    cls = get_trainer_class(algo)
    if isinstance(config, dict):
        config = cls.Config.from_dict(config)
    return cls(config, seed=seed, device=device)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the CPU kernels of :mod:`pglab.kernels` by
    running one small PPO update on a Discrete and on a Box env (the first also compiles the
    CartPole rollout of :mod:`pglab.fastrollout`) and one REINFORCE batch. The first use on
    a machine compiles them (a few seconds); it also runs two A2C updates (its compiled
    update, :mod:`pglab.fasta2c`). ``python3 tasks.py`` does it right after
    installing, so the lab's first run does not stall, and the benchmarks do it before
    timing anything."""
    small = {"num_envs": 2, "n_steps": 8, "batch_size": 16, "n_epochs": 1, "total_steps": 16}
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        trainer = make_trainer("ppo", {**small, "env_id": env_id})
        trainer.update()
        trainer.close()
    trainer = make_trainer("reinforce", {"batch_size": 1, "total_steps": 1})
    trainer.update()
    trainer.close()
    trainer = make_trainer("a2c", {"num_envs": 2, "n_steps": 4, "total_steps": 16})
    for _ in range(2):  # the first update is a diagnostic one: the second is the fused call
        trainer.update()
    trainer.close()
