"""PPO must actually learn: the zoo CartPole preset reaches a mean return of 200 quickly."""

from __future__ import annotations

import pytest
import torch

from pglab.algos.ppo import PPO
from pglab.presets import get_preset

torch.set_num_threads(1)


@pytest.mark.slow
def test_ppo_zoo_cartpole_reaches_200() -> None:
    # Seed 0 crosses 200 near 15k steps (solves, 475, near 30k); 30k leaves a margin.
    cfg = get_preset("ppo-cartpole-zoo").config(grad_diagnostics=False)
    tr = PPO(cfg, seed=0)
    first = None
    while tr.env_steps < 30_000:
        m = tr.update()
        first = m.get("rollout/ep_return_mean") if first is None else first
        if len(tr.episodes) >= 20 and tr.final_return() >= 200:
            break
    assert first is not None and first < 50  # it started out random
    assert tr.final_return() >= 200, f"mean of last 20 returns {tr.final_return():.1f}"
    tr.close()
