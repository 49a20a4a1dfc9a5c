"""A2C: synchronous advantage actor-critic.

Mnih et al. (2016), "Asynchronous Methods for Deep Reinforcement Learning",
https://arxiv.org/abs/1602.01783 - run synchronously over ``num_envs`` environments, as in
OpenAI Baselines and Stable-Baselines3 (https://openai.com/index/openai-baselines-acktr-a2c/).

One update, in the order of the pseudocode:

1. collect   ``n_steps`` transitions in each of ``num_envs`` envs with the current policy
             (time-major ``[T, N]``, continuing the episodes where the last rollout stopped).
2. estimate  ``V(s_t)`` and ``V(s_{t+1})`` with the critic; advantages by GAE(gamma, lambda),
             ``A_t = sum_l (gamma*lambda)^l delta_{t+l}``, ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``;
             value targets ``R_t = A_t + V(s_t)``. lambda = 1 gives the Monte-Carlo return
             (bootstrapped where the rollout or the time limit cuts an episode) minus ``V``.
3. update    ONE gradient step on
             ``L = -mean_t[log pi(a_t|s_t) A_t] + vf_coef * mean_t[(V(s_t) - R_t)^2] - ent_coef * mean_t[H(pi(.|s_t))]``
             with the global gradient norm clipped to ``max_grad_norm`` (RMSprop or Adam).
4. report    losses, entropy, KL between the policy before and after the step, explained
             variance, gradient norm before clipping, gradient variance / SNR.

Defaults are Stable-Baselines3's A2C defaults (RMSprop, lr 7e-4, 5 steps, lambda 1) with the
rl-zoo CartPole choice of 8 envs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn import functional as F

from pglab.algos.base import Trainer
from pglab.config import BaseConfig, param
from pglab.diagnostics import approx_kl, explained_variance, policy_grad_diagnostics
from pglab.rollout import segment_ids


@dataclass(frozen=True)
class A2CConfig(BaseConfig):
    """Hyperparameters of A2C (defaults: Stable-Baselines3's ``A2C``)."""

    algo: ClassVar[str] = "a2c"

    learning_rate: float = param(
        7e-4,
        "Step size of the optimiser for the policy and the critic together.",
        low=1e-6,
        high=1.0,
        log=True,
        equation="theta <- theta - lr * RMSprop(grad L)",
    )
    num_envs: int = param(
        8, "Parallel environments stepped in lockstep (one rollout row each).", low=1, high=256
    )
    n_steps: int = param(
        5,
        "Steps per environment in each rollout; one gradient step per rollout.",
        low=1,
        high=8192,
    )
    gae_lambda: float = param(
        1.0,
        "GAE lambda: 0 = one-step TD error (low variance, biased), 1 = Monte-Carlo return "
        "minus V (https://arxiv.org/abs/1506.02438).",
        low=0.0,
        high=1.0,
        equation="A_t = sum_l (gamma*lambda)^l delta_{t+l}",
    )
    ent_coef: float = param(
        0.0,
        "Weight of the entropy bonus, which keeps the policy from collapsing too early "
        "(Mnih et al. 2016, sec. 4).",
        low=0.0,
        high=1.0,
        equation="L -= ent_coef * mean H(pi(.|s))",
    )
    vf_coef: float = param(
        0.5,
        "Weight of the critic's squared error in the shared loss.",
        low=0.0,
        high=10.0,
        equation="L += vf_coef * mean (V(s) - R)^2",
    )
    max_grad_norm: float | None = param(
        0.5,
        "Clip the global gradient norm to this before each step (None: no clipping); guards "
        "against rare huge gradients (https://arxiv.org/abs/1211.5063).",
        low=1e-3,
        high=1e3,
    )
    norm_adv: bool = param(
        False,
        "Normalise advantages to zero mean, unit std within each rollout (a PPO-era trick, "
        "https://iclr-blog-track.github.io/2022/03/25/ppo-implementation-details/).",
    )
    optimizer: str = param(
        "rmsprop",
        "Optimiser: RMSprop (alpha 0.99, eps 1e-5, as in the A2C paper and SB3) or Adam.",
        choices=("rmsprop", "adam"),
    )


class A2C(Trainer):
    """Synchronous advantage actor-critic: n-step rollouts, GAE, one gradient step each."""

    name = "a2c"
    Config = A2CConfig
    config: A2CConfig

    def setup(self) -> None:
        assert self.value is not None
        params = [*self.policy.parameters(), *self.value.parameters()]
        self.params = params
        lr = self.config.learning_rate
        if self.config.optimizer == "rmsprop":
            # SB3's A2C: RMSprop with alpha 0.99 and eps 1e-5 (PyTorch's default eps is 1e-8).
            self.optimizer: torch.optim.Optimizer = torch.optim.RMSprop(
                params, lr=lr, alpha=0.99, eps=1e-5
            )
        else:
            self.optimizer = torch.optim.Adam(params, lr=lr, eps=1e-5)

    def _update(self) -> dict[str, float]:
        cfg = self.config
        assert self.value is not None

        # 1. collect ------------------------------------------------------------------------
        batch = self.collect(cfg.n_steps)

        # 2. estimate -----------------------------------------------------------------------
        b_obs = batch.obs.flatten(0, 1)  # [T*N, ...]
        values, advantages, returns = self.gae_estimate(batch, cfg.gae_lambda)
        seg, n_seg = segment_ids(batch.dones)
        b_actions = batch.actions.flatten(0, 1)
        b_old_log_prob = batch.log_probs.flatten(0, 1)
        b_advantages = advantages.flatten()
        b_returns = returns.flatten()
        b_values = values.flatten()
        if cfg.norm_adv and b_advantages.numel() > 1:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

        metrics: dict[str, float] = {}
        if cfg.grad_diagnostics:
            metrics.update(
                policy_grad_diagnostics(
                    self.policy, b_obs, b_actions, b_advantages, seg.flatten(), n_seg
                )
            )

        # 3. update: one step on the shared loss -------------------------------------------
        new_log_prob, ent_per_state = self.log_prob_entropy(b_obs, b_actions)
        ent = ent_per_state.mean()
        policy_loss = -(new_log_prob * b_advantages).mean()
        value_loss = F.mse_loss(self.value(b_obs), b_returns)
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * ent
        self.check_finite("loss", loss)
        self.optimizer.zero_grad()
        loss.backward()
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.check_finite("gradient norm", grad_norm)
        self.optimizer.step()

        # 4. report ---------------------------------------------------------------------------
        with torch.no_grad():
            after, _ = self.log_prob_entropy(b_obs, b_actions)
        k1, k3 = approx_kl(after - b_old_log_prob)
        metrics.update(
            {
                "loss/policy": policy_loss.item(),
                "loss/value": value_loss.item(),
                "policy/entropy": ent.item(),
                "diag/approx_kl": k3.item(),
                "diag/approx_kl_k1": k1.item(),
                "diag/grad_norm": float(grad_norm),
                "opt/learning_rate": cfg.learning_rate,
                "value/mean": float(b_values.mean()),
            }
        )
        ev = explained_variance(b_values, b_returns)
        if math.isfinite(ev):  # undefined (NaN) when the targets are constant
            metrics["diag/explained_variance"] = ev
        return metrics
