"""The one shared base of the training algorithms: env, seeding, rollouts, bookkeeping.

A trainer is driven from outside, one update at a time, so the CLI, the run engine's
threads and the tests all use the same loop::

    trainer = PPO(PPOConfig(env_id="CartPole-v1"), seed=0, device="cpu")
    while not trainer.done:
        metrics = trainer.update()      # dict[str, float], names in pglab.metrics
    trainer.close()

Subclasses implement ``_update() -> dict[str, float]`` (collect -> estimate -> update ->
report) and may use :meth:`collect` for fixed-length rollouts. The base adds the ``time/*``
and ``rollout/*`` metrics and refuses non-finite numbers (:class:`NonFiniteError`).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from pglab.config import BaseConfig
from pglab.envs import env_info, make_env, make_vec
from pglab.policies import ValueMLP, log_prob, make_policy
from pglab.rollout import Batch, Episode, EpisodeTracker, final_next_obs, to_env_action

RETURN_WINDOW = 20  # "solved" and final_return use the mean of the last 20 episodes


class NonFiniteError(RuntimeError):
    """A loss, gradient or parameter became NaN or Inf; the message says which and when."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: {device!r} is not allowed (one of cpu, cuda, auto)")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA GPU is available here")
    return torch.device(device)


class Trainer(ABC):
    """Base class. Subclasses set ``name``, ``Config`` and implement :meth:`_update`."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseConfig]]
    uses_value: ClassVar[bool] = True

    def __init__(self, config: BaseConfig, seed: int = 0, device: str = "cpu"):
        if not isinstance(config, self.Config):
            raise TypeError(
                f"{self.name} needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
            raise ValueError(f"seed: {seed!r} is not allowed (an integer in [0, 2147483647])")
        self.config = config
        self.seed = seed
        self.device = resolve_device(device)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.envs = make_vec(config.env_id, self.num_envs, seed)
        self.obs_space = self.envs.single_observation_space
        self.act_space = self.envs.single_action_space
        obs, _ = self.envs.reset(seed=seed)
        self._obs = obs
        self._tracker = EpisodeTracker(self.num_envs)
        self.episodes: list[Episode] = []
        self._new_episodes: list[Episode] = []
        self.env_steps = 0
        self.updates = 0
        self.wall_s = 0.0
        self.reward_threshold = env_info(config.env_id).reward_threshold
        self.solved_at_step: int | None = None
        self.policy = make_policy(
            self.obs_space,
            self.act_space,
            config.hidden_size,
            config.n_layers,
            config.activation,
            **self.policy_kwargs(),
        ).to(self.device)
        self.value: nn.Module | None = None
        if self.uses_value:
            self.value = ValueMLP(
                self.obs_space, config.hidden_size, config.n_layers, config.activation
            ).to(self.device)
        self.setup()

    # -- hooks for subclasses ------------------------------------------------------------------
    @property
    def num_envs(self) -> int:
        return int(getattr(self.config, "num_envs", 1))

    def policy_kwargs(self) -> dict[str, Any]:
        return {}

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Build optimisers etc. after the policy and value nets exist."""

    @abstractmethod
    def _update(self) -> dict[str, float]:
        """One iteration: collect -> estimate -> update -> report."""

    # -- the driver ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.env_steps >= self.config.total_steps

    def update(self) -> dict[str, float]:
        """Run one update and return its metrics (see :mod:`pglab.metrics` for the names)."""
        t0 = time.perf_counter()
        steps0 = self.env_steps
        metrics = self._update()
        dt = time.perf_counter() - t0
        self.wall_s += dt
        self.updates += 1
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise NonFiniteError(
                    f"{name} became {value} at update {self.updates} - try a smaller learning rate"
                )
        self.check_parameters()
        metrics.update(self._episode_metrics())
        metrics["time/env_steps"] = float(self.env_steps)
        metrics["time/updates"] = float(self.updates)
        metrics["time/wall_s"] = self.wall_s
        metrics["time/sps"] = (self.env_steps - steps0) / max(dt, 1e-9)
        return metrics

    def check_parameters(self) -> None:
        for label, module in (("policy", self.policy), ("value", self.value)):
            if module is None:
                continue
            for pname, p in module.named_parameters():
                if not torch.isfinite(p).all():
                    raise NonFiniteError(
                        f"{label} parameter {pname} became NaN/Inf at update {self.updates} "
                        "- try a smaller learning rate"
                    )

    def check_finite(self, name: str, value: Tensor) -> None:
        """Raise :class:`NonFiniteError` if ``value`` (a loss or gradient) is not finite."""
        if not torch.isfinite(value).all():
            raise NonFiniteError(
                f"{name} became NaN/Inf at update {self.updates + 1} - try a smaller learning rate"
            )

    def _episode_metrics(self) -> dict[str, float]:
        eps, self._new_episodes = self._new_episodes, []
        out: dict[str, float] = {}
        if eps:
            rets = np.array([e.ret for e in eps])
            out["rollout/ep_return_mean"] = float(rets.mean())
            out["rollout/ep_return_std"] = float(rets.std())
            out["rollout/ep_return_min"] = float(rets.min())
            out["rollout/ep_return_max"] = float(rets.max())
            out["rollout/ep_length_mean"] = float(np.mean([e.length for e in eps]))
            out["rollout/episodes"] = float(len(eps))
        if self.episodes:
            out["rollout/return_last20"] = self.final_return()
        return out

    def _record(self, finished: list[Episode]) -> None:
        for ep in finished:
            self.episodes.append(ep)
            self._new_episodes.append(ep)
            if (
                self.solved_at_step is None
                and self.reward_threshold is not None
                and len(self.episodes) >= RETURN_WINDOW
                and self.final_return() >= self.reward_threshold
            ):
                self.solved_at_step = ep.end_step

    def final_return(self) -> float:
        """Mean return of the last 20 finished episodes (NaN if none finished yet)."""
        if not self.episodes:
            return float("nan")
        return float(np.mean([e.ret for e in self.episodes[-RETURN_WINDOW:]]))

    # -- experience -------------------------------------------------------------------------------
    def obs_tensor(self, obs: np.ndarray) -> Tensor:
        return torch.as_tensor(obs, device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def sample_actions(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.policy(obs)
        actions = dist.sample()
        return actions, log_prob(dist, actions)

    def env_step(
        self, actions: Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every env once. Returns (true next obs, rewards, terminated, truncated, reset obs)."""
        act = to_env_action(actions.cpu().numpy(), self.act_space)
        next_obs, rewards, terminated, truncated, infos = self.envs.step(act)
        dones = np.logical_or(terminated, truncated)
        self.env_steps += self.num_envs
        self._record(self._tracker.step(rewards, dones, self.env_steps))
        true_next = final_next_obs(next_obs, dones, infos)
        return true_next, rewards, terminated, truncated, next_obs

    def collect(self, n_steps: int) -> Batch:
        """A fixed-length rollout of ``n_steps`` per env, continuing from where the last stopped."""
        T, N = n_steps, self.num_envs
        obs_buf, act_buf, lp_buf, next_buf = [], [], [], []
        rew = np.zeros((T, N), dtype=np.float32)
        term = np.zeros((T, N), dtype=bool)
        trunc = np.zeros((T, N), dtype=bool)
        obs = self._obs
        for t in range(T):
            obs_t = self.obs_tensor(obs)
            actions, lp = self.sample_actions(obs_t)
            true_next, rew[t], term[t], trunc[t], obs = self.env_step(actions)
            obs_buf.append(obs_t)
            act_buf.append(actions)
            lp_buf.append(lp)
            next_buf.append(true_next)
        self._obs = obs
        dev = self.device
        return Batch(
            obs=torch.stack(obs_buf),
            actions=torch.stack(act_buf),
            log_probs=torch.stack(lp_buf),
            rewards=torch.as_tensor(rew, device=dev),
            terminated=torch.as_tensor(term, device=dev),
            truncated=torch.as_tensor(trunc, device=dev),
            next_obs=self.obs_tensor(np.stack(next_buf)),
        )

    # -- using the trained policy ---------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations, as the env expects them."""
        obs_t = self.obs_tensor(obs)
        a = self.policy.deterministic(obs_t) if deterministic else self.policy(obs_t).sample()
        return to_env_action(a.cpu().numpy(), self.act_space)

    def evaluate(
        self, n_episodes: int = 20, deterministic: bool = True, seed: int = 10_000
    ) -> list[float]:
        """Undiscounted returns of ``n_episodes`` fresh episodes with the current policy."""
        env = make_env(self.config.env_id)
        returns = []
        try:
            for k in range(n_episodes):
                obs, _ = env.reset(seed=seed + k)
                total, done = 0.0, False
                while not done:
                    a = self.act(np.asarray(obs)[None], deterministic)[0]
                    obs, r, term, trunc, _ = env.step(a)
                    total += float(r)
                    done = term or trunc
                returns.append(total)
        finally:
            env.close()
        return returns

    def state_dict(self) -> dict[str, Any]:
        """Weights only (tensors and plain values): safe to load with ``weights_only=True``."""
        out: dict[str, Any] = {"policy": self.policy.state_dict()}
        if self.value is not None:
            out["value"] = self.value.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.value is not None and "value" in state:
            self.value.load_state_dict(state["value"])

    def close(self) -> None:
        self.envs.close()
