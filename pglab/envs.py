"""Environments the lab offers, and the only door through which an env id becomes an env.

Security: ids from users must be registered gymnasium ids with supported spaces; entry points
of the form ``module:Class`` are refused, so user input never imports arbitrary code.

Auto-reset: vector envs are built with ``AutoresetMode.SAME_STEP``. A step that ends an
episode returns the *reset* observation and puts the true last observation in
``info["final_obs"]``; so every step of the vector env is a real transition and there is no
"reset step" to drop (gymnasium 1.x's default NEXT_STEP mode would make the step *after* an
episode end a non-transition). :mod:`pglab.rollout` relies on this.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import concatenate

SHORT_CORRIDOR_ID = "pglab/ShortCorridor-v0"


@dataclass(frozen=True)
class EnvInfo:
    id: str
    summary: str
    reward_threshold: float | None  # "solved" line on charts; None where none is standard
    max_episode_steps: int | None


KNOWN_ENVS: dict[str, EnvInfo] = {
    e.id: e
    for e in [
        EnvInfo("CartPole-v1", "Balance a pole on a cart; +1 per step, 500 steps max.", 475.0, 500),
        EnvInfo("Acrobot-v1", "Swing a two-link arm above a line; -1 per step.", -100.0, 500),
        EnvInfo("MountainCar-v0", "Drive an underpowered car up a hill; -1 per step.", -110.0, 200),
        EnvInfo("Pendulum-v1", "Swing up and hold a pendulum; continuous torque.", -200.0, 200),
        EnvInfo("LunarLander-v3", "Land a craft softly on the pad (needs Box2D).", 200.0, 1000),
        EnvInfo("FrozenLake-v1", "Cross a slippery frozen lake to the goal (4x4).", 0.7, 100),
        EnvInfo(
            SHORT_CORRIDOR_ID,
            "Sutton & Barto Example 13.1: the middle state swaps left and right.",
            None,
            100,
        ),
    ]
}


def register_envs() -> None:
    """Register pglab's own environments with gymnasium (idempotent)."""
    if SHORT_CORRIDOR_ID not in gym.registry:
        gym.register(
            id=SHORT_CORRIDOR_ID,
            entry_point="pglab.corridor:ShortCorridorEnv",
            max_episode_steps=100,
        )


register_envs()


def box2d_available() -> bool:
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return False
    return True


def available_envs() -> list[str]:
    """Env ids offered in the UI, in display order."""
    return [e for e in KNOWN_ENVS if e != "LunarLander-v3" or box2d_available()]


def check_env_id(env_id: str) -> None:
    """Raise ``ValueError`` unless ``env_id`` is a registered id with spaces the lab supports."""
    if not isinstance(env_id, str) or not env_id.strip():
        raise ValueError("env_id: must be a non-empty gymnasium id such as 'CartPole-v1'")
    if ":" in env_id:
        raise ValueError(
            f"env_id: {env_id!r} looks like a 'module:Class' entry point; only registered "
            f"gymnasium ids are accepted (e.g. {', '.join(available_envs()[:3])})"
        )
    if env_id not in gym.registry:
        raise ValueError(
            f"env_id: {env_id!r} is not a registered gymnasium id (known: {', '.join(available_envs())})"
        )
    if env_id == "LunarLander-v3" and not box2d_available():
        raise ValueError("env_id: LunarLander-v3 needs Box2D; install it with `pip install box2d`")
    _check_spaces(env_id)


@functools.cache
def _check_spaces(env_id: str) -> None:
    try:
        env = gym.make(env_id)
    except Exception as exc:  # a registered env can still fail to build (missing extras)
        raise ValueError(f"env_id: {env_id!r} could not be created: {exc}") from None
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if not (
        isinstance(obs_space, spaces.Discrete)
        or (isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1)
    ):
        raise ValueError(
            f"env_id: {env_id!r} has observation space {obs_space}; pglab supports Discrete "
            "and 1-D Box observations"
        )
    if not (
        isinstance(act_space, spaces.Discrete)
        or (isinstance(act_space, spaces.Box) and act_space.shape == (1,))
    ):
        raise ValueError(
            f"env_id: {env_id!r} has action space {act_space}; pglab supports Discrete and "
            "1-D Box actions"
        )


def env_info(env_id: str) -> EnvInfo:
    if env_id in KNOWN_ENVS:
        return KNOWN_ENVS[env_id]
    spec = gym.spec(env_id)
    return EnvInfo(env_id, "", spec.reward_threshold, spec.max_episode_steps)


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    check_env_id(env_id)
    return gym.make(env_id, render_mode=render_mode)


class SyncVectorEnv(gym.vector.SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` in SAME_STEP auto-reset mode, with a leaner ``step``.

    The same envs, the same calls to them in the same order and the same returned values
    (``tests/test_rollout.py`` compares the two step by step); what it skips is the per-env
    info merging when an env's info dict is empty (CartPole's always is), about a quarter of
    a vector step of CartPole. SB3 steps its envs through its own ``DummyVecEnv`` likewise.
    """

    def step(self, actions):  # type: ignore[override]
        assert self.autoreset_mode == gym.vector.AutoresetMode.SAME_STEP
        infos: dict = {}
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            obs, reward, terminated, truncated, env_info = env.step(action)
            self._rewards[i] = reward
            self._terminations[i] = terminated
            self._truncations[i] = truncated
            if terminated or truncated:
                infos = self._add_info(infos, {"final_obs": obs, "final_info": env_info}, i)
                obs, env_info = env.reset()
            self._env_obs[i] = obs
            if env_info:
                infos = self._add_info(infos, env_info, i)
        self._observations = concatenate(
            self.single_observation_space, self._env_obs, self._observations
        )
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        return (
            copy.deepcopy(self._observations) if self.copy else self._observations,
            np.copy(self._rewards),
            np.copy(self._terminations),
            np.copy(self._truncations),
            infos,
        )


def make_vec(env_id: str, num_envs: int, seed: int | None = None) -> gym.vector.VectorEnv:
    """A synchronous vector env with SAME_STEP auto-reset (see the module docstring)."""
    check_env_id(env_id)
    # Without gymnasium's PassiveEnvChecker: it validates an env's first reset and step (the
    # lab offers known ids only), yet stays a wrapper layer on every later step, about a
    # quarter of a CartPole vector step (99 vs 72 us for 8 envs on the benchmark machine).
    spec = dataclasses.replace(gym.spec(env_id), disable_env_checker=True)
    envs = SyncVectorEnv(
        [functools.partial(gym.make, spec) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    if seed is not None:
        envs.action_space.seed(seed)
        envs.observation_space.seed(seed)
    return envs


def obs_dim(space: gym.Space) -> int:
    """Input width of a policy network: Discrete observations are one-hot encoded."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))
