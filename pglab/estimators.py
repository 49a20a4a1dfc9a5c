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


# -- per-step advantages with a critic (time-major [T, N], any mix of episodes) -----------------


def td0_advantage(
    rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, gamma: float
) -> Tensor:
    """TD(0) advantage  A_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t).

    A truncated step bootstraps from ``next_values`` (the true next state), so only
    ``terminated`` enters. Equals :func:`gae` with lambda = 0. Shapes ``[T, N]``.
    Reference: Sutton & Barto (2018), eq. 6.2 and section 13.5.
    """
    return rewards + gamma * (1.0 - terminated.to(rewards.dtype)) * next_values - values


def nstep_advantage(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    n: int,
) -> Tensor:
    """n-step advantage  A_t = sum_{k<j} gamma^k r_{t+k} + gamma^j V(s_{t+j}) - V(s_t).

    j = min(n, steps to the end of the episode or of the data). The sum stops at an episode
    end: after a terminated step there is no bootstrap; after a truncated step (or the last row
    of the data) it bootstraps with that step's ``next_values``. n = 1 is TD(0); n >= T with
    no truncation is the Monte-Carlo return minus V. Shapes ``[T, N]``.
    Reference: Sutton & Barto (2018), eq. 7.1; Mnih et al. (2016) https://arxiv.org/abs/1602.01783.
    """
    if n < 1:
        raise ValueError(f"n: {n} is not allowed (an integer >= 1)")
    T = rewards.shape[0]
    term = terminated.to(rewards.dtype)
    done = torch.logical_or(terminated.bool(), truncated.bool()).to(rewards.dtype).clone()
    done[-1] = 1.0  # the data stops: bootstrap there
    ret = torch.zeros_like(rewards)
    alive = torch.ones_like(rewards)  # 1 while the k-step sum has not hit an episode end
    discount = 1.0
    for k in range(min(n, T)):  # past T every sum has ended (the last row is an end)
        # shifted views: row t sees step t + k (rows past the end contribute nothing: alive = 0)
        r_k = torch.zeros_like(rewards)
        r_k[: T - k] = rewards[k:]
        done_k = torch.ones_like(rewards)
        done_k[: T - k] = done[k:]
        term_k = torch.zeros_like(rewards)
        term_k[: T - k] = term[k:]
        nv_k = torch.zeros_like(rewards)
        nv_k[: T - k] = next_values[k:]
        ret = ret + alive * discount * r_k
        discount *= gamma
        last = alive * done_k if k < n - 1 else alive  # the sum ends at step t + k
        ret = ret + last * discount * (1.0 - term_k) * nv_k
        alive = alive * (1.0 - done_k)
    return ret - values


# -- whole-episode weights: an "episode batch" is time-major [L, E], one episode per column ------
#
# Column e holds episode e from its first step (row 0); ``mask[t, e]`` is True on its real steps
# and False on the padding after its end. Padding rows must carry zero rewards. Baselines built
# from the whole batch (constant, time, minimum-variance) include the episode itself, so the
# gradient estimate built on them has expectation (1 - 1/m) grad J (gamma = 1) rather than
# grad J: a bias of relative size 1/m that the leave-one-out baseline removes.


def episode_reward_to_go(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """G_t = sum_{k>=t} gamma^(k-t) r_k within each column of an episode batch ``[L, E]``.

    Zero on padding. (Each column is one whole episode, so nothing is bootstrapped.)
    """
    m = mask.to(rewards.dtype)
    # padding rows count as terminated: nothing after an episode's last step flows back into it
    return discounted_returns(rewards * m, 1.0 - m, torch.zeros_like(m), gamma) * m


def total_return(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Classic REINFORCE weight: Psi_t = R(tau) = sum_k gamma^k r_k, the same on every step.

    Episode batch ``[L, E]`` -> ``[L, E]`` (zero on padding). Williams (1992).
    """
    G = episode_reward_to_go(rewards, mask, gamma)
    return G[:1].expand_as(G) * mask.to(rewards.dtype)


def constant_baseline(rtg: Tensor, mask: Tensor) -> Tensor:
    """b = (1/m) sum_j G_0^j, the batch mean of the episodes' returns (a 0-d tensor).

    ``rtg`` is :func:`episode_reward_to_go` ``[L, E]``; ``mask`` is unused but kept so all
    baselines share one signature.
    """
    del mask
    return rtg[0].mean()


def time_baseline(rtg: Tensor, mask: Tensor) -> Tensor:
    """b_t = (1/m) sum_j G_t^j, the mean reward-to-go at step t across the batch ``[L, 1]``.

    Episodes already over at step t count with G_t = 0 (what keeps the bias exactly 1/m).
    """
    return (rtg * mask.to(rtg.dtype)).mean(1, keepdim=True)


def min_variance_baseline(rtg: Tensor, mask: Tensor, grad_sq_norms: Tensor) -> Tensor:
    """b* = sum_j |grad log p(tau_j)|^2 G_0^j / sum_j |grad log p(tau_j)|^2 (a 0-d tensor).

    The constant minimising the variance of the total-return estimator per coordinate summed
    (Peters & Schaal 2008, https://doi.org/10.1016/j.neunet.2008.02.003), estimated from the
    batch. ``grad_sq_norms`` ``[E]`` are the squared norms of the per-episode score
    sum_t grad log pi(a_t|s_t) (:func:`pglab.diagnostics.grad_samples` with weights 1).
    Falls back to the plain mean when every norm is 0.
    """
    del mask
    w = grad_sq_norms.to(rtg.dtype)
    if float(w.sum()) <= 0.0:
        return rtg[0].mean()
    return (w * rtg[0]).sum() / w.sum()


def loo_baseline(rtg: Tensor, mask: Tensor) -> Tensor:
    """Leave-one-out: b_i = (1/(m-1)) sum_{j != i} G_0^j for episode i, ``[1, E]``.

    Independent of episode i, hence unbiased (Kool et al. 2019, "Buy 4 REINFORCE samples, get
    a baseline for free!", https://openreview.net/forum?id=r1lgTGL5DE). Needs m >= 2.
    """
    del mask
    m = rtg.shape[1]
    if m < 2:
        raise ValueError("episodes: the leave-one-out baseline needs at least 2 episodes")
    R = rtg[0]
    return ((R.sum() - R) / (m - 1)).unsqueeze(0)
