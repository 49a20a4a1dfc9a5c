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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from pglab.algos.base import Trainer
from pglab.config import BaseConfig, param
from pglab.diagnostics import (
    approx_kl,
    explained_variance,
    grad_samples,
    policy_grad_diagnostics,
)
from pglab.estimators import (
    constant_baseline,
    episode_reward_to_go,
    loo_baseline,
    min_variance_baseline,
    time_baseline,
    total_return,
)

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

    def validate(self) -> None:
        super().validate()
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
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.learning_rate)
        if self.value is not None:
            self.vf_optimizer = torch.optim.Adam(
                self.value.parameters(), lr=self.config.vf_learning_rate
            )

    # -- 1. collect ---------------------------------------------------------------------------------
    def collect_episodes(self) -> list[EpisodeData]:
        """Whole episodes from the current policy; each env plays its share (see the class doc)."""
        cfg, N = self.config, self.num_envs
        share = math.ceil(cfg.batch_size / N)  # episodes or steps per env
        count = np.zeros(N, dtype=np.int64)
        active = np.ones(N, dtype=bool)
        buf: list[list[tuple[Tensor, Tensor, float]]] = [[] for _ in range(N)]
        episodes: list[EpisodeData] = []
        obs = self._obs
        while active.any():
            obs_t = self.obs_tensor(obs)
            actions, _ = self.sample_actions(obs_t)
            _, rewards, terminated, truncated, obs = self.env_step(actions)
            for i in np.flatnonzero(active):
                buf[i].append((obs_t[i], actions[i], float(rewards[i])))
                count[i] += cfg.batch_mode == "steps"
                if terminated[i] or truncated[i]:
                    o, a, r = zip(*buf[i], strict=True)
                    r_t = torch.tensor(r, dtype=torch.float32, device=self.device)
                    episodes.append(EpisodeData(torch.stack(o), torch.stack(a), r_t))
                    buf[i] = []
                    count[i] += cfg.batch_mode == "episodes"
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
            z = grad_samples(self.policy, b_obs, b_actions, ones, b_segments, m)
            y = grad_samples(self.policy, b_obs, b_actions, psi[mask], b_segments, m)
            baseline = min_variance_baseline(y, z)
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
            metrics.update(
                policy_grad_diagnostics(self.policy, b_obs, b_actions, b_weights, b_segments, m)
            )

        # 3. update: one policy step, then (value baseline) fit V on this batch ------------------
        log_prob, ent = self.log_prob_entropy(b_obs, b_actions)
        policy_loss = -(log_prob * b_weights).sum() / m
        self.check_finite("policy loss", policy_loss)
        self.optimizer.zero_grad()
        policy_loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), float("inf"))
        self.check_finite("policy gradient norm", grad_norm)
        self.optimizer.step()

        b_returns = rtg[mask]
        value_losses = []
        if self.value is not None:
            for _ in range(cfg.vf_iters):
                value_loss = (self.value(b_obs) - b_returns).pow(2).mean()
                self.check_finite("value loss", value_loss)
                self.vf_optimizer.zero_grad()
                value_loss.backward()
                self.vf_optimizer.step()
                value_losses.append(value_loss.item())

        # 4. report ---------------------------------------------------------------------------
        with torch.no_grad():
            new_log_prob, _ = self.log_prob_entropy(b_obs, b_actions)
        k1, k3 = approx_kl(new_log_prob - log_prob.detach())
        metrics.update(
            {
                "loss/policy": policy_loss.item(),
                "policy/entropy": ent.mean().item(),
                "diag/approx_kl": k3.item(),
                "diag/approx_kl_k1": k1.item(),
                "diag/grad_norm": grad_norm.item(),
                "opt/learning_rate": cfg.learning_rate,
            }
        )
        if b_values is not None:
            metrics["loss/value"] = sum(value_losses) / len(value_losses)
            metrics["value/mean"] = b_values.mean().item()
            ev = explained_variance(b_values, b_returns)
            if math.isfinite(ev):  # undefined (NaN) when the returns are constant
                metrics["diag/explained_variance"] = ev
        return metrics
