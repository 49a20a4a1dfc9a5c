"""Collecting experience from a gymnasium vector env into time-major tensors.

The vector env runs in SAME_STEP auto-reset mode (see :mod:`pglab.envs`): when step t ends
an episode in env i, the returned observation is already the reset one and the true last
observation is in ``info["final_obs"][i]``. We store that true last observation as
``next_obs[t, i]`` so critics bootstrap from the right state, and we never record a reset as a
transition. Episode returns and lengths are tallied here exactly as gymnasium's
``RecordEpisodeStatistics`` does (sum of rewards and count of steps since the last reset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor


@dataclass
class Episode:
    """A finished episode: its undiscounted return, length and the env step at which it ended."""

    ret: float
    length: int
    end_step: int


@dataclass
class Batch:
    """Time-major rollout ``[T, N, ...]`` on the trainer's device.

    ``next_obs[t]`` is the true successor of ``obs[t]`` (the final observation at episode
    ends). ``truncated`` is also set on the last row of episodes cut by the rollout itself
    when ``cut_last_row`` is true, so estimators bootstrap there.
    """

    obs: Tensor
    actions: Tensor
    log_probs: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    next_obs: Tensor

    @property
    def T(self) -> int:
        return self.rewards.shape[0]

    @property
    def N(self) -> int:
        return self.rewards.shape[1]

    @property
    def dones(self) -> Tensor:
        return torch.logical_or(self.terminated, self.truncated)


def segment_ids(dones: Tensor) -> tuple[Tensor, int]:
    """Label each step of a ``[T, N]`` batch with the episode segment it belongs to.

    A segment is a maximal run of steps of one env not crossed by an episode end; the last
    (possibly unfinished) run of each column is a segment too. Returns ``ids [T, N]`` (int64,
    numbered column by column) and the number of segments ``m``.
    """
    T, N = dones.shape
    d = dones.bool().T.reshape(-1).clone()  # env-major so a segment is contiguous
    starts = torch.zeros_like(d)
    starts[1:] = d[:-1]
    starts[::T] = True  # each column starts a new segment
    ids = torch.cumsum(starts.long(), 0) - 1
    return ids.reshape(N, T).T.contiguous(), int(ids[-1].item()) + 1


@dataclass
class EpisodeTracker:
    """Running return/length per env, like ``RecordEpisodeStatistics``."""

    num_envs: int
    returns: np.ndarray = field(init=False)
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.num_envs, dtype=np.float64)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)

    def step(self, rewards: np.ndarray, dones: np.ndarray, env_step: int) -> list[Episode]:
        self.returns += rewards
        self.lengths += 1
        finished = []
        for i in np.flatnonzero(dones):
            finished.append(Episode(float(self.returns[i]), int(self.lengths[i]), env_step))
            self.returns[i] = 0.0
            self.lengths[i] = 0
        return finished


def to_env_action(action: np.ndarray, act_space: spaces.Space) -> np.ndarray:
    """Box actions are clipped to the env's bounds; the policy's log-prob stays unclipped."""
    if isinstance(act_space, spaces.Box):
        return np.clip(action, act_space.low, act_space.high)
    return action


def final_next_obs(next_obs: np.ndarray, dones: np.ndarray, infos: dict) -> np.ndarray:
    """Replace reset observations by the true final ones where an episode just ended."""
    if not dones.any():
        return next_obs
    out = next_obs.copy()
    final = infos["final_obs"]
    for i in np.flatnonzero(dones):
        out[i] = final[i]
    return out


class RunningMeanStd:
    """Running mean and variance of a stream of ``[B, *shape]`` batches (float64).

    Parallel-variance merge of Chan et al. (1979), as SB3's ``VecNormalize`` uses it:
    ``count`` starts at a tiny ``epsilon`` so the first normalisation is well defined.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def normalize(self, x: np.ndarray, clip: float = 10.0) -> np.ndarray:
        """``clip((x - mean) / sqrt(var + 1e-8), -clip, clip)`` as float32."""
        out = (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + 1e-8)
        return np.clip(out, -clip, clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {
            "mean": torch.as_tensor(self.mean),
            "var": torch.as_tensor(self.var),
            "count": self.count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])


class RewardScaler:
    """Reward scaling of SB3's ``VecNormalize`` (https://arxiv.org/abs/2005.12729, sec. 3):
    divide rewards by the running std of the discounted return  G_t = gamma G_{t-1} + r_t
    (reset at episode ends), then clip to [-clip, clip]. Keeps value targets O(1) when raw
    rewards are large (Pendulum's are in [-16, 0]). The mean is not subtracted.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0):
        self.gamma = gamma
        self.clip = clip
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scale a time-major ``[T, N]`` block of rewards; ``dones[t]`` ends the return at t."""
        T = rewards.shape[0]
        rets = np.empty(rewards.shape, dtype=np.float64)
        for t in range(T):
            self.returns = self.returns * self.gamma + rewards[t]
            rets[t] = self.returns
            self.returns[dones[t]] = 0.0
        self.rms.update(rets.reshape(-1))
        scaled = rewards / np.sqrt(self.rms.var + 1e-8)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)
