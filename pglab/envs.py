"""Environments the lab offers, and the only door through which an env id becomes an env.

Security: ids from users must be registered gymnasium ids with supported spaces; entry points
of the form ``module:Class`` are refused, so user input never imports arbitrary code.

Auto-reset: vector envs are built with ``AutoresetMode.SAME_STEP``. A step that ends an
episode returns the *reset* observation and puts the true last observation in
``info["final_obs"]``; so every step of the vector env is a real transition and there is no
"reset step" to drop (gymnasium 1.x's default NEXT_STEP mode would make the step *after* an
episode end a non-transition). :mod:`pglab.rollout` relies on this.

Vectorisation: where gymnasium ships a numpy-vectorised implementation of an env (its
``vector_entry_point``; among the lab's envs only CartPole), :func:`make_vec` uses it through
:class:`SameStepVectorEnv`, which gives it the per-env path's auto-reset and seeding, so both
produce the same transitions (``tests/test_envs_vector.py`` steps them side by side); all
other envs run one Python env each in :class:`SyncVectorEnv`. Trainers whose rollouts go
through the compiled CartPole rollout (:mod:`pglab.fastrollout`) use :class:`SameStepVectorEnv`
at any ``num_envs``: the kernel steps its state in place.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
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


class SameStepVectorEnv(gym.vector.VectorWrapper):
    """gymnasium's numpy-vectorised CartPole (``gym.make_vec(..., vectorization_mode=
    "vector_entry_point")``) with the per-env path's auto-reset and seeding.

    gymnasium's ``CartPoleVectorEnv`` differs from ``SyncVectorEnv`` over ``gym.make`` envs in
    two documented ways, and offers no option for either: it auto-resets in NEXT_STEP mode (an
    ended env is reset by the *next* call to ``step``, which ignores its action and returns
    reward 0: a step that is no transition) and it draws every env's initial state from one
    generator (``reset(seed=s)`` seeds it with ``s``), where the per-env path seeds env ``i``
    with ``s + i`` and draws each env's later resets from that env's own generator. This
    wrapper keeps the physics and the time limit of gymnasium's vector env and does the
    resets itself, in the same step: env ``i`` gets its state from generator ``i``, seeded
    as ``gym.make`` seeds it (``gymnasium.utils.seeding.np_random(s + i)``) and drawn as
    ``CartPoleEnv.reset`` draws it (``uniform(-0.05, 0.05, size=4)``), and the true last
    observation goes to ``info["final_obs"]`` as ``SyncVectorEnv`` puts it there. The
    inner env then never sees an ended env (``prev_done`` stays all False), so its own reset
    branch never fires. Same seeds, same transitions: the dynamics are the same float64
    equations (``tests/test_envs_vector.py`` compares observations, rewards, terminated and
    truncated flags, final observations and masked resets step by step). Also accepts
    ``options={"reset_mask": mask}`` as ``SyncVectorEnv`` does. Reset states are drawn
    ahead in blocks (:attr:`reset_states`, the same numbers in the same order), which the
    compiled rollout of :mod:`pglab.fastrollout` reads too.
    """

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        inner = env.unwrapped
        assert hasattr(inner, "state") and hasattr(inner, "prev_done"), type(inner)
        self.metadata = {**env.metadata, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.autoreset_mode = gym.vector.AutoresetMode.SAME_STEP
        self._inner = inner
        self._rngs: list[np.random.Generator] | None = None
        # Reset states drawn ahead from each env's generator, RESET_BLOCK at a time (one
        # uniform(size=(K, 4)) draws the same numbers as K successive uniform(size=4) draws):
        # env i's next reset is reset_states[i, reset_pos[i]]. The compiled rollout
        # (pglab.fastrollout) takes its resets from here too, so the Python step and the
        # compiled one consume one stream and can take turns on the same env.
        self.reset_states = np.zeros((self.num_envs, self.RESET_BLOCK, 4), dtype=np.float64)
        self.reset_pos = np.full(self.num_envs, self.RESET_BLOCK, dtype=np.int64)

    RESET_BLOCK = 64

    def refill_resets(self) -> None:
        """Draw a new block of reset states for every env that has used up its block."""
        assert self._rngs is not None
        for i in np.flatnonzero(self.reset_pos >= self.RESET_BLOCK):
            self.reset_states[i] = self._rngs[i].uniform(
                low=-0.05, high=0.05, size=(self.RESET_BLOCK, 4)
            )
            self.reset_pos[i] = 0

    def _reset_env(self, i: int) -> None:
        if self.reset_pos[i] >= self.RESET_BLOCK:
            self.refill_resets()
        self._inner.state[:, i] = self.reset_states[i, self.reset_pos[i]]
        self.reset_pos[i] += 1
        self._inner.steps[i] = 0

    def reset(self, *, seed=None, options=None):  # type: ignore[override]
        inner, n = self._inner, self.num_envs
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"options: {sorted(options)} are not supported (only reset_mask)")
        if seed is not None or self._rngs is None:
            seeds = (
                seed
                if isinstance(seed, list)
                else [None if seed is None else seed + i for i in range(n)]
            )
            fresh = [seeding.np_random(s)[0] for s in seeds]
            if self._rngs is None or mask is None:
                self._rngs = fresh
                self.reset_pos[:] = self.RESET_BLOCK  # states drawn ahead are void
            else:
                for i in np.flatnonzero(mask):
                    self._rngs[i] = fresh[i]
                    self.reset_pos[i] = self.RESET_BLOCK
        if inner.state is None:
            self.env.reset(seed=None if seed is None else int(np.asarray(seed).ravel()[0]))
        for i in range(n) if mask is None else np.flatnonzero(mask):
            self._reset_env(int(i))
        inner.prev_done[:] = False
        return inner.state.T.astype(np.float32), {}

    def step(self, actions):  # type: ignore[override]
        obs, rewards, terminated, truncated, _ = self.env.step(actions)
        dones = terminated | truncated
        infos: dict = {}
        if dones.any():
            for i in np.flatnonzero(dones):
                infos = self.env._add_info(infos, {"final_obs": obs[i], "final_info": {}}, int(i))
                self._reset_env(int(i))
            self._inner.prev_done[:] = False
            obs = self._inner.state.T.astype(np.float32)
        # float64 rewards, as SyncVectorEnv returns them (the inner env's are float32)
        return obs, rewards.astype(np.float64), terminated, truncated, infos


# gymnasium's numpy CartPole costs ~30 us a step whatever num_envs, the Python envs ~7 us per
# env (measured on the benchmark machine): the vector env wins from 4 envs on.
VECTOR_MIN_ENVS = 4


def vectorization_mode(env_id: str, num_envs: int) -> str:
    """``"vector_entry_point"`` where gymnasium ships a numpy vector env for ``env_id`` (and
    it is faster at ``num_envs``, see :data:`VECTOR_MIN_ENVS`), else ``"sync"``."""
    spec = gym.spec(env_id)
    entry = spec.vector_entry_point
    if (
        num_envs >= VECTOR_MIN_ENVS
        and isinstance(entry, str)
        and entry.endswith("cartpole:CartPoleVectorEnv")
        and not spec.kwargs
    ):
        return "vector_entry_point"
    return "sync"


def make_vec(
    env_id: str, num_envs: int, seed: int | None = None, mode: str = "auto"
) -> gym.vector.VectorEnv:
    """A vector env with SAME_STEP auto-reset (see the module docstring).

    ``mode``: ``"auto"`` (:func:`vectorization_mode`), ``"sync"`` (one Python env each) or
    ``"vector_entry_point"`` (gymnasium's numpy vector env; CartPole only)."""
    check_env_id(env_id)
    if mode == "auto":
        mode = vectorization_mode(env_id, num_envs)
    if mode == "vector_entry_point":
        if vectorization_mode(env_id, VECTOR_MIN_ENVS) != mode:
            raise ValueError(f"mode: {env_id!r} has no numpy vector env (use 'sync' or 'auto')")
        envs: gym.vector.VectorEnv = SameStepVectorEnv(
            gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
        )
        if seed is not None:
            envs.action_space.seed(seed)
            envs.observation_space.seed(seed)
        return envs
    if mode != "sync":
        raise ValueError(f"mode: {mode!r} is not allowed (one of auto, sync, vector_entry_point)")
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
