"""Sutton & Barto's short corridor with switched actions (Example 13.1, RL book 2nd ed., 2018).

Three non-terminal states in a row and a goal on the right::

    [s0] <-> [s1, actions reversed] <-> [s2] -> [goal]

Reward -1 per step, undiscounted. In s0 "left" stays put; in s1 "right" moves left and
"left" moves right. Every state looks the same to the agent (the observation is always 0),
so the best a policy can do is a single probability p of choosing "right"; with that
p the optimum is stochastic (p* = 2 - sqrt 2 ~ 0.59, J* ~ -11.6; see
:func:`pglab.exact.short_corridor_optimum`, which computes it).

Registered as ``pglab/ShortCorridor-v0`` (time limit 100 steps) by :mod:`pglab.envs`.
The exact model is :func:`pglab.exact.short_corridor_mdp`; ``info["state"]`` carries the hidden
state so exact state values can be used as a baseline.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LEFT, RIGHT = 0, 1
N_STATES = 3  # non-terminal states; index 3 is the goal
GOAL = 3


def corridor_next_state(state: int, action: int) -> int:
    """Deterministic transition of the corridor (the goal is index 3)."""
    move = 1 if action == RIGHT else -1
    if state == 1:  # the switched state
        move = -move
    return min(max(state + move, 0), GOAL)


class ShortCorridorEnv(gym.Env):
    """The short corridor. Observation: ``Discrete(1)`` (always 0); actions 0 = left, 1 = right."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(2)
        self.render_mode = render_mode
        self.state = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = 0
        return np.int64(0), {"state": self.state}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action: {action!r} is not 0 (left) or 1 (right)")
        self.state = corridor_next_state(self.state, int(action))
        terminated = self.state == GOAL
        return np.int64(0), -1.0, terminated, False, {"state": self.state}
