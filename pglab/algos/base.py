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
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from pglab import backprop, fastrollout, kernels
from pglab.config import BaseConfig
from pglab.envs import env_info, make_env, make_vec
from pglab.estimators import gae
from pglab.policies import (
    CategoricalMLP,
    GaussianMLP,
    NumpyActor,
    ValueMLP,
    entropy,
    flat_parameter,
    head_log_prob_entropy,
    log_prob,
    make_policy,
)
from pglab.rollout import (
    Batch,
    Episode,
    EpisodeTracker,
    RunningMeanStd,
    final_next_obs,
    segment_ids,
    to_env_action,
)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

_INIT_LOCK = threading.Lock()
RETURN_WINDOW = 20  # "solved" and final_return use the mean of the last 20 episodes


def flatten_parameters(*modules: nn.Module) -> nn.Parameter:
    """Put every parameter of ``modules`` (and its gradient) into one contiguous buffer.

    Returns a flat ``nn.Parameter`` ``[P]`` whose ``.grad`` ``[P]`` is the matching flat
    gradient buffer; each module parameter becomes a view of the first and its ``.grad`` a
    view of the second, so backward accumulates straight into the flat gradient. An
    optimiser over ``[flat]`` then updates the modules in place, and Adam, global gradient
    clipping and zeroing (``flat.grad.zero_()``) are one kernel each instead of one per
    tensor: on CPU that was about a quarter of a small-MLP minibatch step. Never zero the
    module gradients with ``set_to_none=True``: that would cut them loose from the buffer.
    """
    return flat_parameter([p for m in modules for p in m.parameters()])


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
    # Set by whoever drives the trainer (the run engine): called by poll() at cheap points
    # inside an update. It raises to stop the run, or blocks while the run is paused and
    # returns the seconds it blocked, which update() leaves out of time/wall_s and time/sps.
    control: Callable[[], float] | None = None
    _paused_s: float = 0.0

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
        self.rng = np.random.default_rng(seed)
        # The trainer's own torch RNG for action sampling and minibatch shuffling: the run
        # engine trains several runs in threads of one process, and the global RNG would mix
        # their draws (and break same-seed reproducibility).
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # The compiled CartPole rollout (pglab.fastrollout) steps gymnasium's numpy CartPole
        # env, whatever num_envs: at one env too, it costs a fraction of the Python env's step.
        compiled = fastrollout.applies(config, self.device)
        mode = "vector_entry_point" if compiled else "auto"
        self.envs = make_vec(config.env_id, self.num_envs, seed, mode=mode)
        self.obs_space = self.envs.single_observation_space
        self.act_space = self.envs.single_action_space
        obs, _ = self.envs.reset(seed=seed)
        self._obs = obs
        # Observation normalisation, for configs that have a ``normalize_obs`` flag: running
        # mean/std of every observation the rollouts see (SB3's VecNormalize), applied by
        # obs_tensor() to rollouts and to act()/evaluate() alike.
        self.obs_rms: RunningMeanStd | None = None
        if getattr(config, "normalize_obs", False):
            if not isinstance(self.obs_space, spaces.Box):
                raise ValueError(
                    f"normalize_obs: only applies to Box observations; {config.env_id} has "
                    f"{self.obs_space}"
                )
            self.obs_rms = RunningMeanStd(self.obs_space.shape)
            self.obs_rms.update(obs)
        self._tracker = EpisodeTracker(self.num_envs)
        self.episodes: list[Episode] = []
        self._new_episodes: list[Episode] = []
        self.env_steps = 0
        self.updates = 0
        # the by-hand gradient diagnostic's fixed facts, found on first use (each walks the
        # module tree): the policy's parameters, and whether a batch size fits (by size)
        self._diag_params: list[nn.Parameter] | None = None
        self._diag_fits: dict[int, bool] = {}
        self.wall_s = 0.0
        self.reward_threshold = env_info(config.env_id).reward_threshold
        self.solved_at_step: int | None = None
        # Weight init draws from the global torch RNG; the lock keeps trainers built at the
        # same moment in different threads from interleaving their draws.
        with _INIT_LOCK:
            torch.manual_seed(seed)
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
        # Acting on CPU goes through numpy (see sample_actions_np).
        self._numpy_actor: NumpyActor | None = None
        if NumpyActor.supports(self.policy):
            self._numpy_actor = NumpyActor(self.policy)
        self._compiled_rollout: fastrollout.CompiledCartPole | None = None
        if compiled and fastrollout.policy_supported(self.policy):
            self._compiled_rollout = fastrollout.CompiledCartPole(self)

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
        self._paused_s = 0.0
        metrics = self._update()
        dt = time.perf_counter() - t0 - self._paused_s
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

    def poll(self) -> None:
        """Let the driver stop or pause the run here (see :attr:`control`). Trainers call it
        once per env step (in :meth:`env_step`; the compiled rollout once per chunk of at most
        :data:`pglab.fastrollout.CHUNK_ENV_STEPS` env steps, a few milliseconds) and once per
        gradient step, so Stop and Pause land within one of those, not one whole update."""
        if self.control is not None:
            self._paused_s += self.control()

    def check_parameters(self) -> None:
        flat = getattr(self, "flat_params", None)  # trainers whose parameters share one buffer
        if flat is not None and bool(torch.isfinite(flat).all()):
            return  # one op instead of two per parameter tensor
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

    def critic_mse_step(self, obs: Tensor, returns: Tensor) -> float:
        """One optimiser step on a separate critic's  (1/B) sum_b (V(s_b) - G_b)^2; returns that
        loss (before the step). Uses ``self.value``, ``self.value_params`` (flat),
        ``self.vf_optimizer`` and, on CPU, ``self.vf_backprop`` (the hand-written backward)."""
        from pglab.algos.ppo import value_loss_grad  # ppo.py imports this module

        if self.vf_backprop is not None:
            with torch.no_grad():
                v = self.vf_backprop.forward(obs)
                loss, grad_v = value_loss_grad(v, v, returns.numpy(), None)
                self.vf_backprop.backward(grad_v)
        else:
            loss_t = (self.value(obs) - returns).pow(2).mean()
            self.value_params.grad.zero_()
            loss_t.backward()
            loss = loss_t.item()
        if not math.isfinite(loss):
            self.check_finite("value loss", torch.tensor(loss))
        self.vf_optimizer.step()
        return loss

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
        """Observations as float32 on the trainer's device (normalised when ``obs_rms`` is set)."""
        if self.obs_rms is not None:
            obs = self.obs_rms.normalize(obs)
        return torch.as_tensor(obs, device=self.device, dtype=torch.float32)

    def draw_noise(self, shape: tuple[int, ...]) -> Tensor | None:
        """The sampling noise of the MLP policies for ``shape`` = (..., B) observations, from the
        trainer's generator: uniforms ``[..., B, A]`` (categorical) or normals ``[..., B, D]``
        (Gaussian); None for other policies. A rollout draws its whole block at once (one
        generator call instead of one per step), and both sampling paths consume it alike."""
        policy, g = self.policy, self.generator
        if type(policy) is CategoricalMLP:
            n = policy.net[-1].out_features
            return torch.rand((*shape, n), generator=g, device=self.device)
        if type(policy) is GaussianMLP:
            d = policy.log_std.shape[0]
            return torch.randn((*shape, d), generator=g, device=self.device)
        return None

    @torch.no_grad()
    def sample_actions(self, obs: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sample ``a ~ pi(.|s)`` for a batch ``[B, ...]``; returns (actions, log pi(a|s) ``[B]``).

        The MLP policies take a fast path that builds no ``torch.distributions`` object (they
        cost ~150 us a call, the largest share of a rollout step) and use ``noise`` from
        :meth:`draw_noise` (drawn here when not given): Gumbel-max
        a = argmax_a (log pi(a|s) + G_a),  G_a = -log(-log U_a),  for the categorical;
        a = mu + sigma * eps for the Gaussian. Other policies use ``policy(obs).sample()``.
        """
        policy = self.policy
        if type(policy) is CategoricalMLP:
            logp_all = torch.log_softmax(policy.net(policy.encode(obs)), -1)
            u = self.draw_noise(obs.shape[:1]) if noise is None else noise
            u = u.clamp(min=torch.finfo(u.dtype).tiny)  # rand() can return 0: log(0) = -inf
            actions = (logp_all - torch.log(-torch.log(u))).argmax(-1)
            return actions, logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        if type(policy) is GaussianMLP:
            mean = policy.net(policy.encode(obs))
            eps = self.draw_noise(obs.shape[:1]) if noise is None else noise
            actions = mean + policy.log_std.exp() * eps
            lp = (-0.5 * eps.pow(2) - policy.log_std - _HALF_LOG_2PI).sum(-1)
            return actions, lp
        dist = self.policy(obs)
        actions = dist.sample()
        return actions, log_prob(dist, actions)

    def log_prob_entropy(
        self, obs: Tensor, actions: Tensor, entropy_grad: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``log pi_theta(a|s)`` and the entropy ``H(pi_theta(.|s))``, both ``[B]``, with grad
        (the entropy without one when ``entropy_grad`` is false: it is then only reported).

        Same values as :func:`pglab.policies.log_prob` / :func:`pglab.policies.entropy` on
        ``policy(obs)``, computed without a distribution object for the MLP policies (this
        runs once per minibatch, on the hot path of every update).
        """
        policy = self.policy
        if type(policy) in (CategoricalMLP, GaussianMLP):
            out = policy.net(policy.encode(obs))
            return head_log_prob_entropy(policy, out, actions, entropy_grad)
        dist = policy(obs)
        ent = entropy(dist) if entropy_grad else entropy(dist).detach()
        return log_prob(dist, actions), ent

    def rollout_grad_diagnostics(
        self, batch: Batch, obs: Tensor, actions: Tensor, weights: Tensor
    ) -> dict[str, float]:
        """``diag/grad_var`` and ``diag/grad_snr`` of the policy gradient with per-step
        ``weights`` (flattened like ``obs``) over the episode segments of the rollout ``batch``
        (:func:`pglab.rollout.segment_ids`).

        By hand (:func:`pglab.backprop.policy_grad_diagnostics`, the same numbers) for an MLP
        policy on CPU: compiled for a categorical head at any batch size, else where the
        per-step products fit in memory; otherwise the general version."""
        seg, n_seg = segment_ids(batch.dones)
        args = (self.policy, obs, actions, weights, seg.flatten(), n_seg)
        B = int(obs.shape[0])
        fits = self._diag_fits.get(B)
        if fits is None:
            fits = self._diag_fits[B] = backprop.segment_grads_fit(self.policy, B)
        if self._diag_params is None:
            self._diag_params = list(self.policy.parameters())
        # it picks compiled, by hand or the general version itself
        return backprop.policy_grad_diagnostics(*args, fits=fits, params=self._diag_params)

    def env_step(
        self, actions: Tensor | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every env once. Returns (true next obs, rewards, terminated, truncated, reset obs)."""
        self.poll()
        if isinstance(actions, Tensor):
            actions = actions.cpu().numpy()
        act = to_env_action(actions, self.act_space)
        next_obs, rewards, terminated, truncated, infos = self.envs.step(act)
        dones = np.logical_or(terminated, truncated)
        if self.obs_rms is not None:
            self.obs_rms.update(next_obs)
        self.env_steps += self.num_envs
        self._record(self._tracker.step(rewards, dones, self.env_steps))
        true_next = final_next_obs(next_obs, dones, infos)
        return true_next, rewards, terminated, truncated, next_obs

    def obs_array(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the nets see them, float32 numpy (normalised when ``obs_rms`` is set)."""
        if self.obs_rms is not None:
            return self.obs_rms.normalize(obs)
        return np.asarray(obs, dtype=np.float32)

    def sample_actions_np(
        self, obs: np.ndarray, noise: Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_actions` for numpy observations ``[B, ...]``, returning numpy arrays.

        On CPU the MLP policies sample through :class:`pglab.policies.NumpyActor` (a third of
        the time of the torch path, see there), with the same noise from the same generator.
        """
        if self._numpy_actor is not None:
            if noise is None:
                noise = self.draw_noise(obs.shape[:1])
            assert noise is not None
            return self._numpy_actor.sample(obs, noise.numpy())
        actions, lp = self.sample_actions(torch.as_tensor(obs, device=self.device), noise)
        return actions.cpu().numpy(), lp.cpu().numpy()

    def collect(self, n_steps: int) -> Batch:
        """A fixed-length rollout of ``n_steps`` per env, continuing from where the last stopped.

        The rollout is gathered in numpy buffers allocated once and moved to the device in one
        go at the end; the only per-step work is one policy forward, one env step and the
        episode bookkeeping. Where the compiled CartPole rollout applies
        (:func:`pglab.fastrollout.applies`), all of that is one compiled call per chunk of
        steps, from the same noise and the same env state.
        """
        T, N = n_steps, self.num_envs
        if self._compiled_rollout is not None and self._numpy_actor is not None:
            noise = self.draw_noise((T, N))
            assert noise is not None
            return self._compiled_rollout.collect(T, noise.numpy())
        obs = self._obs
        first = self.obs_array(obs)
        obs_buf = np.empty((T, *first.shape), dtype=np.float32)
        lp_buf = np.empty((T, N), dtype=np.float32)
        rew = np.zeros((T, N), dtype=np.float32)
        term = np.zeros((T, N), dtype=bool)
        trunc = np.zeros((T, N), dtype=bool)
        act_buf: np.ndarray | None = None
        next_np: list[np.ndarray] = []
        obs_buf[0] = first
        noise = self.draw_noise((T, N))
        for t in range(T):
            if t > 0:
                obs_buf[t] = self.obs_array(obs)
            actions, lp_buf[t] = self.sample_actions_np(
                obs_buf[t], None if noise is None else noise[t]
            )
            if act_buf is None:
                act_buf = np.empty((T, *actions.shape), dtype=actions.dtype)
            act_buf[t] = actions
            true_next, rew[t], term[t], trunc[t], obs = self.env_step(actions)
            next_np.append(true_next)
        self._obs = obs
        assert act_buf is not None

        def to_device(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a).to(self.device)

        return Batch(
            obs=to_device(obs_buf),
            actions=to_device(act_buf),
            log_probs=to_device(lp_buf),
            rewards=to_device(rew),
            terminated=to_device(term),
            truncated=to_device(trunc),
            next_obs=self.obs_tensor(np.stack(next_np)),
        )

    @torch.no_grad()
    def gae_estimate(
        self, batch: Batch, gae_lambda: float, rewards: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(values, advantages, returns)`` of a rollout, each ``[T, N]``, from the critic.

        V(s_t); V(s_{t+1}) of the true successor (the final observation where an episode
        ended); A_t = GAE(gamma, lambda) by :func:`pglab.estimators.gae`; R_t = A_t + V(s_t).
        ``rewards`` replaces ``batch.rewards`` (e.g. PPO's scaled rewards).
        """
        assert self.value is not None, "gae_estimate needs a critic"
        both = self.value.predict(torch.cat([batch.obs, batch.next_obs]))  # one pass for two
        values, next_values = both[: batch.T], both[batch.T :]
        args = (
            batch.rewards if rewards is None else rewards,
            values,
            next_values,
            batch.terminated,
            batch.truncated,
            self.config.gamma,
            gae_lambda,
        )
        if self.device.type == "cpu":  # the same recursion compiled: one call, not 3 T ops
            advantages = torch.from_numpy(
                kernels.gae(*(a.numpy() if isinstance(a, Tensor) else a for a in args))
            )
        else:
            advantages = gae(*args)
        return values, advantages, advantages + values

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
        if self.obs_rms is not None:
            out["obs_rms"] = self.obs_rms.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.value is not None and "value" in state:
            self.value.load_state_dict(state["value"])
        if self.obs_rms is not None and "obs_rms" in state:
            self.obs_rms.load_state_dict(state["obs_rms"])

    def close(self) -> None:
        self.envs.close()
