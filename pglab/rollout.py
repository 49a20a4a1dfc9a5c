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
