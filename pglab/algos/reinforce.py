"""REINFORCE: Monte-Carlo policy gradient on batches of whole episodes.

Williams (1992), https://doi.org/10.1007/BF00992696; the "simplest policy gradient" and its
reward-to-go form as in Spinning Up (https://spinningup.openai.com/en/latest/spinningup/rl_intro3.html).

One update, in the order of the pseudocode:

1. collect   whole episodes with the current policy: ``batch_size`` episodes
             (``batch_mode="episodes"``), or episodes until ``batch_size`` steps have been taken,
             the last one played to its end (``batch_mode="steps"``).
2. estimate  the weight of every step,  ``w_t = Psi_t - b_t``:
               Psi_t = R(tau) = sum_k gamma^k r_k              (psi="total")
                     = G_t   = sum_{k>=t} gamma^(k-t) r_k      (psi="rtg", reward-to-go)
               b_t   = 0 | batch-mean return | mean G_t at step t | minimum-variance constant |
                       leave-one-out mean | V(s_t)             (baseline=...)
             with the pure functions of :mod:`pglab.estimators` (the Gradient Lab uses the same).
3. update    one Adam step on  ``L = -(1/m) sum_i sum_t log pi(a_t^i|s_t^i) w_t^i``  over the
             m episodes (its gradient is the batch estimate g of :mod:`pglab.diagnostics`);
             with ``baseline="value"``, then fit V to this batch's reward-to-go.
4. report    loss, entropy, KL between the policy before and after the step, gradient norm,
             gradient variance / SNR (one sample per episode), critic metrics if any.

Episodes are not bootstrapped: a time-limit truncation counts the cut-off future as zero.

On CPU the MLP nets take the fast path of PPO: actions from the numpy actor with noise drawn
in blocks, and gradients of the policy loss and of the critic's fit written out by hand
(:class:`pglab.backprop.PolicyBackprop` / :class:`~pglab.backprop.ValueBackprop`), with one
fused Adam step each (:class:`pglab.optim.FlatAdam`); ``tests/test_reinforce.py`` checks both
against autograd, which stays the path of CUDA and of the other policies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from pglab import backprop, kernels
from pglab.algos.base import Trainer, flatten_parameters
from pglab.algos.ppo import clip_grad_norm
from pglab.backprop import PolicyBackprop, ValueBackprop
from pglab.config import BaseConfig, param
from pglab.diagnostics import (
    approx_kl,
    explained_variance,
    score_dots,
)
from pglab.estimators import (
    constant_baseline,
    episode_reward_to_go,
    loo_baseline,
    min_variance_baseline_from_dots,
    time_baseline,
    total_return,
)
from pglab.optim import FlatAdam
from pglab.policies import CategoricalMLP, NumpyActor, linear_param_count, parse_init_params

BASELINES = ("none", "constant", "time", "min_variance", "loo", "value")


@dataclass(frozen=True)
class ReinforceConfig(BaseConfig):
    """Hyperparameters of REINFORCE (defaults: Spinning Up's simplest PG with reward-to-go)."""

    algo: ClassVar[str] = "reinforce"

    learning_rate: float = param(
        1e-2,
        "Adam step size of the policy (one step per batch of episodes).",
        low=1e-6,
        high=1.0,
        log=True,
        equation="theta <- theta + lr * Adam(g)",
    )
    psi: str = param(
        "rtg",
        "Weight of each log-probability: the whole episode's return ('total', Williams 1992) or "
        "only the rewards after the action ('rtg', reward-to-go: past rewards add noise, "
        "https://spinningup.openai.com/en/latest/spinningup/extra_pg_proof1.html).",
        choices=("total", "rtg"),
        equation="total: Psi_t = sum_k gamma^k r_k;  rtg: Psi_t = sum_{k>=t} gamma^(k-t) r_k",
    )
    baseline: str = param(
        "none",
        "Baseline subtracted from Psi_t to cut variance: batch-mean return, per-step mean "
        "reward-to-go, the variance-optimal constant E[y.z]/E[z.z] computed leave-one-out "
        "(Peters & Schaal 2008; unbiased), the leave-one-out "
        "mean (unbiased, Kool et al. 2019) or a learned V(s_t).",
        choices=BASELINES,
        equation="w_t = Psi_t - b_t",
    )
    batch_mode: str = param(
        "steps",
        "What batch_size counts: whole episodes, or env steps (the last episode is finished).",
        choices=("episodes", "steps"),
    )
    batch_size: int = param(
        5000,
        "Episodes per update (batch_mode='episodes') or env steps per update, rounded up to "
        "the end of the last episode (batch_mode='steps').",
        low=1,
        high=1_000_000,
    )
    num_envs: int = param(
        1,
        "Parallel environments; each plays its share of the batch (see Reinforce's docstring "
        "for what happens to episodes still running when the batch is complete).",
        low=1,
        high=64,
    )
    vf_learning_rate: float = param(
        1e-3, "Adam step size of V(s) (baseline='value' only).", low=1e-6, high=1.0, log=True
    )
    vf_iters: int = param(
        80,
        "Full-batch Adam steps fitting V(s) to the reward-to-go after each policy step "
        "(baseline='value' only; 80 as in Spinning Up's VPG).",
        low=1,
        high=1000,
    )
    norm_adv: bool = param(
        False,
        "Normalise the weights w_t to zero mean, unit std within the batch (a cheap extra "
        "baseline and step-size control; https://arxiv.org/abs/2006.05990, sec. 3).",
    )

    init_params: str | None = param(
        None,
        "Initial parameters of a linear/tabular policy (n_layers=0), set after the seeded "
        "init: comma-separated numbers (or a list), the weight [n_actions, obs_dim] row by "
        "row, then the bias [n_actions] (then log_std for a Box action). Empty: seeded init.",
        equation="theta_0 = init_params",
    )

    def __post_init__(self) -> None:
        raw = self.init_params
        if isinstance(raw, list | tuple):  # a list of numbers -> the canonical text
            text = ",".join(repr(x) for x in parse_init_params("init_params", raw))
            object.__setattr__(self, "init_params", text)
        elif isinstance(raw, str) and not raw.strip():
            object.__setattr__(self, "init_params", None)
        super().__post_init__()

    @property
    def init_values(self) -> tuple[float, ...] | None:
        """``init_params`` as numbers (None: the seeded init)."""
        if self.init_params is None:
            return None
        return parse_init_params("init_params", self.init_params)

    def validate(self) -> None:
        super().validate()
        if self.init_params is not None:
            values = self.init_values
            assert values is not None
            if self.n_layers != 0:
                raise ValueError(
                    f"init_params: only for a linear/tabular policy (n_layers=0), not "
                    f"n_layers={self.n_layers}"
                )
            from pglab.envs import make_env  # local: envs imports gymnasium

            env = make_env(self.env_id)
            try:
                n = linear_param_count(env.observation_space, env.action_space)
            finally:
                env.close()
            if len(values) != n:
                raise ValueError(
                    f"init_params: {len(values)} numbers given; the n_layers=0 policy on "
                    f"{self.env_id} has {n} parameters (give exactly {n})"
                )
        loo = self.baseline in ("loo", "min_variance")
        if loo and self.batch_mode == "episodes" and self.batch_size < 2:
            raise ValueError(
                f"batch_size: {self.batch_size} is too small for baseline={self.baseline!r} "
                "(a leave-one-out baseline needs at least 2 episodes a batch)"
            )

    @property
    def min_episodes(self) -> int:
        """Episodes a batch needs at least: the leave-one-out baseline needs two."""
        return 2 if self.baseline in ("loo", "min_variance") else 1


@dataclass
class EpisodeData:
    """One whole episode: ``obs [L, ...]``, ``actions [L, ...]``, ``rewards [L]``."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor


def pack_episodes(episodes: list[EpisodeData]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Lay m episodes out as an episode batch: column e is episode e from its first step.

    Returns ``obs [L, m, ...]``, ``actions [L, m, ...]``, ``rewards [L, m]`` and ``mask [L, m]``
    (True on real steps), L the longest episode; padding is zero (the layout of the
    whole-episode functions of :mod:`pglab.estimators`).
    """
    L, m = max(len(e.rewards) for e in episodes), len(episodes)
    first = episodes[0]
    obs = first.obs.new_zeros((L, m, *first.obs.shape[1:]))
    actions = first.actions.new_zeros((L, m, *first.actions.shape[1:]))
    rewards = first.rewards.new_zeros((L, m))
    mask = torch.zeros((L, m), dtype=torch.bool, device=first.rewards.device)
    for e, ep in enumerate(episodes):
        n = len(ep.rewards)
        obs[:n, e], actions[:n, e], rewards[:n, e], mask[:n, e] = ep.obs, ep.actions, ep.rewards, 1
    return obs, actions, rewards, mask


class Reinforce(Trainer):
    """REINFORCE with a choice of Psi and baseline, on batches of whole episodes.

    Parallel envs (``num_envs > 1``): each env plays its own share of the batch,
    ``ceil(batch_size / num_envs)`` episodes or steps, so every env contributes independent
    whole episodes and short episodes are not favoured. The vector env steps all envs
    together, so an env that has played its share idles on (its steps are taken and counted in
    ``time/env_steps``, its finished episodes are reported in ``rollout/*``, but none of them
    enter the gradient); when the batch is complete, such an env's unfinished episode is
    dropped and the env is reset, so the next batch again starts from whole episodes. With the
    default ``num_envs = 1`` nothing is dropped.

    The value baseline (``baseline="value"``) is fitted AFTER the policy step, on this batch's
    reward-to-go: a baseline fitted on the batch it is used on has seen those episodes' actions
    and outcomes, which correlates it with Psi and biases the gradient; fitted afterwards, the
    V used on batch k was trained on batches < k only (as in Spinning Up's VPG).
    """

    name = "reinforce"
    Config = ReinforceConfig
    config: ReinforceConfig

    @property  # type: ignore[override]
    def uses_value(self) -> bool:
        return self.config.baseline == "value"

    def setup(self) -> None:
        # Each net in one flat buffer, one fused Adam step each; MLP nets on CPU are
        # differentiated by hand (pglab.backprop), the rest by autograd.
        self.backprop: PolicyBackprop | None = None
        if PolicyBackprop.supports(self.policy):
            self.backprop = PolicyBackprop(self.policy)
            self.policy_params = self.backprop.flat
        else:
            self.policy_params = flatten_parameters(self.policy)
        init = self.config.init_values
        if init is not None:  # into the flat buffer the updates train (the modules view it)
            with torch.no_grad():
                self.policy_params.copy_(torch.tensor(init, dtype=self.policy_params.dtype))
        self.optimizer = FlatAdam(self.policy_params, lr=self.config.learning_rate)
        self.vf_backprop: ValueBackprop | None = None
        if self.value is not None:
            if ValueBackprop.supports(self.value):
                self.vf_backprop = ValueBackprop(self.value)
                self.value_params = self.vf_backprop.flat
            else:
                self.value_params = flatten_parameters(self.value)
            self.vf_optimizer = FlatAdam(self.value_params, lr=self.config.vf_learning_rate)
        self._noise: Tensor | None = None  # sampling noise drawn in blocks, see collect_episodes
        self._noise_np: np.ndarray | None = None
        self._noise_pos = 0
        # One env steps one observation at a time: a categorical MLP on CPU then samples in one
        # compiled call (kernels.mlp_categorical_sample), the numpy actor's maths and noise.
        self._compiled: tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], bool] | None = None
        policy = self.policy
        if (
            type(policy) is CategoricalMLP
            and NumpyActor.supports(policy)
            and policy.encode.n is None
        ):
            lins = [m for m in policy.net if isinstance(m, torch.nn.Linear)]
            self._compiled = (
                tuple(m.weight.detach().numpy() for m in lins),
                tuple(m.bias.detach().numpy() for m in lins),
                any(isinstance(m, torch.nn.ReLU) for m in policy.net),
            )

    def _next_noise(self) -> Tensor | None:
        """The next step's sampling noise ``[N, ...]``, from blocks of 1024 steps drawn at once
        (one generator call instead of one per step; the stream of numbers is the same)."""
        if self._noise is None or self._noise_pos == len(self._noise):
            self._noise = self.draw_noise((1024, self.num_envs))
            self._noise_np = None if self._noise is None else self._noise.cpu().numpy()
            self._noise_pos = 0
            if self._noise is None:
                return None
        self._noise_pos += 1
        return self._noise[self._noise_pos - 1]

    def _noise_rows(self) -> tuple[np.ndarray, int]:
        """The current block of sampling noise ``[1024, N, ...]`` and its first unused row
        (a new block where the last is used up): the compiled rollout reads the rows
        :meth:`_next_noise` would hand out one by one."""
        if self._noise is None or self._noise_pos == len(self._noise):
            self._noise = self.draw_noise((1024, self.num_envs))
            assert self._noise is not None
            self._noise_np = self._noise.cpu().numpy()
            self._noise_pos = 0
        assert self._noise_np is not None
        return self._noise_np, self._noise_pos

    def _use_noise_rows(self, pos: int) -> None:
        self._noise_pos = pos

    def _sample_np(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions and log pi(a|s) for one step's observations ``[N, ...]`` (numpy)."""
        noise = self._next_noise()
        if self._compiled is None or noise is None:
            return self.sample_actions_np(obs, noise)
        assert self._noise_np is not None
        weights, biases, relu = self._compiled
        if weights[0].ctypes.data != self.policy.net[0].weight.data_ptr():
            self._compiled = None  # the parameters were moved to new storage: numpy actor then
            return self.sample_actions_np(obs, noise)
        actions = np.empty(len(obs), dtype=np.int64)
        log_prob = np.empty(len(obs), dtype=np.float32)
        u = self._noise_np[self._noise_pos - 1]
        kernels.mlp_categorical_sample(obs, weights, biases, relu, u, actions, log_prob)
        return actions, log_prob

    # -- 1. collect ---------------------------------------------------------------------------------
    def collect_episodes(self) -> list[EpisodeData]:
        """Whole episodes from the current policy; each env plays its share (see the class doc)."""
        cfg, N = self.config, self.num_envs
        share = math.ceil(cfg.batch_size / N)  # episodes or steps per env
        count = np.zeros(N, dtype=np.int64)
        active = np.ones(N, dtype=bool)
        episodes: list[EpisodeData] = []
        obs = self._obs
        # per env: the observations (as the nets see them), actions and rewards of its episode
        buf_o: list[list[np.ndarray]] = [[] for _ in range(N)]
        buf_a: list[list[np.ndarray]] = [[] for _ in range(N)]
        buf_r: list[list[float]] = [[] for _ in range(N)]
        steps_mode = cfg.batch_mode == "steps"
        if self._compiled_rollout is not None and self._numpy_actor is not None:
            # the same loop compiled (pglab.fastrollout); without the numpy actor, torch samples
            compiled, obs = self._compiled_rollout.collect_episodes(
                share, steps_mode, cfg.min_episodes, self._noise_rows, self._use_noise_rows
            )
            episodes = [
                EpisodeData(*(torch.from_numpy(a).to(self.device) for a in ep)) for ep in compiled
            ]
            active[:] = False  # every env has played its share
        while active.any():
            o = self.obs_array(obs)
            actions, _ = self._sample_np(o)
            _, rewards, terminated, truncated, obs = self.env_step(actions)
            dones = terminated | truncated
            for i in range(N) if N == 1 else np.flatnonzero(active):
                buf_o[i].append(o[i])
                buf_a[i].append(actions[i])
                buf_r[i].append(float(rewards[i]))
                count[i] += steps_mode
                if dones[i]:
                    episodes.append(
                        EpisodeData(
                            torch.from_numpy(np.stack(buf_o[i])).to(self.device),
                            torch.from_numpy(np.stack(buf_a[i])).to(self.device),
                            torch.tensor(buf_r[i], dtype=torch.float32, device=self.device),
                        )
                    )
                    buf_o[i], buf_a[i], buf_r[i] = [], [], []
                    count[i] += not steps_mode
                    if count[i] >= share and len(episodes) >= cfg.min_episodes:
                        active[i] = False
        # Envs that idled on after their share may be mid-episode: drop those episodes.
        running = self._tracker.lengths > 0
        if running.any():
            reset_obs, _ = self.envs.reset(options={"reset_mask": running})
            obs = obs.copy()
            obs[running] = reset_obs[running]
            self._tracker.returns[running] = 0.0
            self._tracker.lengths[running] = 0
        self._obs = obs
        return episodes

    def _update(self) -> dict[str, float]:
        cfg = self.config
        episodes = self.collect_episodes()
        obs, actions, rewards, mask = pack_episodes(episodes)
        m = len(episodes)

        # 2. estimate: w_t = Psi_t - b_t on the episode batch [L, m] ------------------------------
        rtg = episode_reward_to_go(rewards, mask, cfg.gamma)
        psi = rtg if cfg.psi == "rtg" else total_return(rewards, mask, cfg.gamma)
        b_obs, b_actions = obs[mask], actions[mask]  # [B, ...] real steps only, B = sum of lengths
        b_segments = torch.arange(m, device=self.device).expand_as(mask)[
            mask
        ]  # episode of each step
        b_values: Tensor | None = None
        if cfg.baseline == "none":
            baseline: Tensor | float = 0.0
        elif cfg.baseline == "constant":
            baseline = constant_baseline(rtg, mask)
        elif cfg.baseline == "time":
            baseline = time_baseline(rtg, mask)
        elif cfg.baseline == "min_variance":
            # b_i = sum_{j!=i} y_j.z_j / sum_{j!=i} z_j.z_j, y_j = sum_t s_t Psi_t, z_j = sum_t s_t
            ones = torch.ones(b_obs.shape[0], device=self.device)
            # per-episode y.z and z.z streamed in chunks: the [m, P] scores never all in memory
            yz, zz = score_dots(self.policy, b_obs, b_actions, psi[mask], ones, b_segments, m)
            baseline = min_variance_baseline_from_dots(yz, zz).to(rtg.dtype)
        elif cfg.baseline == "loo":
            baseline = loo_baseline(rtg, mask)
        else:
            assert self.value is not None
            with torch.no_grad():
                b_values = self.value(b_obs)
            baseline = torch.zeros_like(rtg).masked_scatter(mask, b_values)
        b_weights = (psi - baseline)[mask]
        if cfg.norm_adv and b_weights.numel() > 1:
            b_weights = (b_weights - b_weights.mean()) / (b_weights.std() + 1e-8)

        metrics: dict[str, float] = {}
        if cfg.grad_diagnostics:
            metrics.update(  # compiled for a categorical MLP on CPU, else the general version
                backprop.policy_grad_diagnostics(
                    self.policy, b_obs, b_actions, b_weights, b_segments, m
                )
            )

        # 3. update: one policy step, then (value baseline) fit V on this batch ------------------
        policy_loss, ent, log_prob = self.policy_step(b_obs, b_actions, b_weights, m)
        b_returns = rtg[mask]
        value_losses: list[float] = []
        if self.value is not None:
            value_losses = [self.value_step(b_obs, b_returns) for _ in range(cfg.vf_iters)]

        # 4. report ---------------------------------------------------------------------------
        k1, k3 = approx_kl(self.policy_log_prob(b_obs, b_actions) - log_prob)
        metrics.update(
            {
                "loss/policy": policy_loss,
                "policy/entropy": ent,
                "diag/approx_kl": k3.item(),
                "diag/approx_kl_k1": k1.item(),
                "diag/grad_norm": self._grad_norm,
                "opt/learning_rate": cfg.learning_rate,
            }
        )
        if b_values is not None and value_losses:
            metrics["loss/value"] = sum(value_losses) / len(value_losses)
            metrics["value/mean"] = b_values.mean().item()
            ev = explained_variance(b_values, b_returns)
            if math.isfinite(ev):  # undefined (NaN) when the returns are constant
                metrics["diag/explained_variance"] = ev
        return metrics

    # -- the gradient steps (by hand on CPU MLPs, else autograd) ------------------------------
    def policy_step(
        self, b_obs: Tensor, b_actions: Tensor, b_weights: Tensor, m: int
    ) -> tuple[float, float, Tensor]:
        """One Adam step on  L = -(1/m) sum_b log pi(a_b|s_b) w_b.  Returns (L, mean entropy,
        log pi(a|s) ``[B]`` before the step); the gradient norm goes to ``_grad_norm``."""
        grad = self.policy_params.grad
        assert grad is not None
        if self.backprop is not None:
            with torch.no_grad():
                lp, ent = self.backprop.forward(b_obs, b_actions.numpy())
                w = b_weights.numpy()
                loss = -float(np.dot(lp.astype(np.float64), w)) / m
                self.backprop.backward(w * np.float32(-1.0 / m), 0.0)
            log_prob, entropy = torch.from_numpy(lp), float(ent.mean())
        else:
            lp_t, ent_t = self.log_prob_entropy(b_obs, b_actions)
            loss_t = -(lp_t * b_weights).sum() / m
            grad.zero_()  # keeps the module grads as views of it
            loss_t.backward()
            loss, entropy, log_prob = loss_t.item(), ent_t.mean().item(), lp_t.detach()
        self._check("policy loss", loss)
        self._grad_norm = clip_grad_norm(grad, None)
        self._check("policy gradient norm", self._grad_norm)
        self.optimizer.step()
        return loss, entropy, log_prob

    @torch.no_grad()
    def policy_log_prob(self, b_obs: Tensor, b_actions: Tensor) -> Tensor:
        """log pi(a|s) ``[B]`` of the current policy (no gradient)."""
        if self.backprop is not None:
            return torch.from_numpy(self.backprop.forward(b_obs, b_actions.numpy())[0])
        return self.log_prob_entropy(b_obs, b_actions)[0]

    def value_step(self, b_obs: Tensor, b_returns: Tensor) -> float:
        """One full-batch Adam step on the critic's  (1/B) sum_b (V(s_b) - G_b)^2;
        returns that loss (before the step)."""
        assert self.value is not None
        return self.critic_mse_step(b_obs, b_returns)

    def _check(self, name: str, value: float) -> None:
        if not math.isfinite(value):
            self.check_finite(name, torch.tensor(value))
