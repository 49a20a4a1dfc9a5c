"""Every algorithm trains one update on every environment the lab offers.

This is the matrix a user can click together on the Train page; each cell must run and report
finite metrics, the gradient-variance diagnostic included (one-hot observations of the toy-text
envs go through torch.func.vmap there).
"""

from __future__ import annotations

import math

import pytest
import torch

from pglab.algos import ALGO_NAMES, make_trainer
from pglab.envs import available_envs

torch.set_num_threads(1)

SMALL = {
    "reinforce": {"batch_mode": "episodes", "batch_size": 2},
    "a2c": {"num_envs": 2, "n_steps": 8},
    "ppo": {"num_envs": 2, "n_steps": 16, "batch_size": 16, "n_epochs": 1},
    "trpo": {"num_envs": 2, "n_steps": 16},
}


@pytest.mark.parametrize("env_id", available_envs())
@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_one_update_everywhere(algo: str, env_id: str) -> None:
    trainer = make_trainer(algo, {"env_id": env_id, "total_steps": 10_000, **SMALL[algo]}, seed=0)
    try:
        metrics = trainer.update()
    finally:
        trainer.close()
    assert trainer.env_steps > 0 and metrics["time/env_steps"] == trainer.env_steps
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert "loss/policy" in metrics and "policy/entropy" in metrics
    # The diagnostic is on by default and needs >= 2 gradient samples (episode segments).
    assert "diag/grad_var" in metrics
