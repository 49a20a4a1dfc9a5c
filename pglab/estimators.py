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
    compiled = rewards.device.type == "cpu" and rewards.dtype in (torch.float32, torch.float64)
    if compiled and not (rewards.requires_grad or boot.requires_grad):
        from pglab import kernels  # compiled, the same float operations in the same order

        r = rewards.contiguous().numpy()
        kernels.discounted_returns(
            r,
            (cut * boot).contiguous().numpy(),
            (1.0 - cut).contiguous().numpy(),
            r.dtype.type(gamma),
            running.numpy(),
            out.numpy(),
        )
        return out
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
# and False on the padding after its end. Padding rows must carry zero rewards.
#
# Exact bias of each baseline. Write s_t = grad log pi(a_t|s_t), d_t the step weight (gamma^t in
# the Gradient Lab, 1 in the trainers), z = sum_t d_t s_t the episode's weighted score and
# g = (1/m) sum_i sum_t d_t s_t^i (Psi_t^i - b_t^i) the batch estimate over m episodes.
# A baseline b^i that is independent of episode i (a function of other episodes only, or of
# the state) adds nothing in expectation, because E[s_t | s_0..s_t, a_0..a_{t-1}] = 0.
#   - constant  b = (1/m) sum_j G_0^j  includes episode i itself:
#         E[g] = E[g_no baseline] - (1/m) E[z G_0]        (-(1/m) grad J exactly when the
#         weights are the total return or d_t = gamma^t = 1, i.e. gamma = 1);
#   - time      b_t = (1/m) sum_j G_t^j:  E[g] = E[g_no baseline] - (1/m) E[sum_t d_t s_t G_t],
#         i.e. (1 - 1/m) grad J for the reward-to-go form (any gamma, with d_t = gamma^t);
#   - loo and min_variance (both leave-one-out): unbiased (zero bias);
#   - a state-value V(s_t) fitted on other data: unbiased; one fitted on the same batch is
#     not (Reinforce fits V after the policy step for that reason).


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


def episode_scores(step_scores: Tensor, weights: Tensor, episode: Tensor, m: int) -> Tensor:
    """Per-episode sums  sum_{t in episode i} w_t s_t  ``[m, P]`` of per-step scores.

    ``step_scores`` ``[B, P]`` are s_t = grad log pi(a_t|s_t) of the real steps, ``weights``
    ``[B]`` the w_t, ``episode`` ``[B]`` the episode index of each step (in ``[0, m)``).
    """
    out = torch.zeros(m, step_scores.shape[1], dtype=step_scores.dtype, device=step_scores.device)
    return out.index_add_(0, episode, step_scores * weights.unsqueeze(1).to(step_scores.dtype))


def min_variance_baseline(y: Tensor, z: Tensor) -> Tensor:
    """Leave-one-out variance-optimal constant baseline, ``[1, E]``.

    For the estimator  g_i = sum_t d_t s_t (Psi_t - b) = y_i - b z_i  with
    y_i = sum_t d_t s_t Psi_t^i and z_i = sum_t d_t s_t (``y``, ``z`` ``[E, P]``, e.g. from
    :func:`episode_scores`), the per-coordinate-summed variance E|y - b z|^2 - |E g|^2 is
    minimised by

        b* = E[y . z] / E[z . z]

    (Peters & Schaal 2008, https://doi.org/10.1016/j.neunet.2008.02.003; Greensmith et al.
    2004, https://jmlr.org/papers/v5/greensmith04a.html). For the total-return form
    (Psi_t = R) it is the familiar E[|z|^2 R] / E[|z|^2]; for reward-to-go it is not, and the
    total-return formula applied there can raise the variance. Estimated leave-one-out,

        b_i = sum_{j != i} y_j . z_j / sum_{j != i} z_j . z_j,

    so b_i is independent of episode i and the estimator stays unbiased (a plug-in that uses
    episode i's own score is biased: its score enters its own weight). Needs E >= 2; b_i = 0
    when the other episodes' scores are all zero (any constant is then unbiased).

    What it buys depends on the form. Total return: on the short corridor (uniform policy)
    b* = -21.4 against a mean return of -11.9, and the per-episode variance falls by a third
    against the mean. Reward-to-go: b* is within 2% of the mean return there (and on
    FrozenLake), the optimum is only 0.1-0.5% below the mean's variance, and the noise of
    estimating b* from m - 1 episodes costs more than that (tests/test_estimators.py).
    """
    yz = (y.double() * z.double()).sum(1)
    zz = z.double().pow(2).sum(1)
    return min_variance_baseline_from_dots(yz, zz).to(y.dtype)


def min_variance_baseline_from_dots(yz: Tensor, zz: Tensor) -> Tensor:
    """:func:`min_variance_baseline` from the per-episode dot products ``yz`` = y_i . z_i and
    ``zz`` = z_i . z_i (``[E]``), so a caller can stream them (:func:`pglab.diagnostics.
    score_dots`) instead of holding the ``[E, P]`` scores. Returns ``[1, E]`` in float64."""
    E = yz.shape[0]
    if E < 2:
        raise ValueError("episodes: the minimum-variance baseline needs at least 2 episodes")
    yz, zz = yz.double(), zz.double()
    num, den = yz.sum() - yz, zz.sum() - zz
    safe = den > 1e-30 * max(float(zz.sum()), 1e-300)
    b = torch.where(safe, num / torch.where(safe, den, torch.ones_like(den)), 0.0)
    return b.unsqueeze(0)


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
