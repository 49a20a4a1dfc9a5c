"""Policy-gradient weightings Psi_t as pure functions of time-major tensors ``[T, N]``.

The generic estimator is  g = (1/m) sum_i sum_t grad log pi(a_t^i | s_t^i) * Psi_t^i.

Conventions shared by every function here:

- Tensors are time-major ``[T, N]``: ``T`` steps of ``N`` parallel environments.
- ``terminated[t]``: the episode truly ended after step t; nothing follows, no bootstrap.
- ``truncated[t]``: the episode was cut after step t (time limit, or the end of a rollout
  segment); the future is estimated with ``V(s_{t+1})`` when a critic exists.
- ``next_values[t] = V(s_{t+1})`` where ``s_{t+1}`` is the true next state of step t (for a
  step that ended an episode, the final observation, not the reset one).
- Functions never mutate their inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def discounted_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    next_values: Tensor | None = None,
) -> Tensor:
    """Discounted reward-to-go  G_t = r_t + gamma * G_{t+1}, cut at episode ends.

    At a terminated step G_t = r_t. At a truncated step G_t = r_t + gamma * V(s_{t+1}) when
    ``next_values`` is given, else r_t (no critic: the cut future counts as zero). The last
    row is treated as truncated (the data stops there).

    Shapes: all ``[T, N]``; returns ``[T, N]``. Reference: Sutton & Barto (2018), eq. 3.8.
    """
    T = rewards.shape[0]
    term = terminated.to(rewards.dtype)
    cut = torch.logical_or(terminated.bool(), truncated.bool()).to(rewards.dtype)
    cut = cut.clone()
    cut[-1] = 1.0
    boot = torch.zeros_like(rewards) if next_values is None else next_values * (1.0 - term)
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(T - 1, -1, -1):
        running = rewards[t] + gamma * (cut[t] * boot[t] + (1.0 - cut[t]) * running)
        out[t] = running
    return out


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    gae_lambda: float,
) -> Tensor:
    """Generalised advantage estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},   done_t = terminated_t or truncated_t

    The recursion stops at every episode end (terminated or truncated) and after the last row.
    lambda = 0 gives the TD(0) error; lambda = 1 gives the Monte-Carlo return (bootstrapped
    at truncations) minus V(s_t).

    Shapes: all ``[T, N]``; returns advantages ``[T, N]`` (add ``values`` for lambda-returns).
    """
    T = rewards.shape[0]
    term = terminated.to(rewards.dtype)
    done = torch.logical_or(terminated.bool(), truncated.bool()).to(rewards.dtype)
    deltas = rewards + gamma * (1.0 - term) * next_values - values
    carry = gamma * gae_lambda * (1.0 - done)
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(T - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        out[t] = running
    return out
