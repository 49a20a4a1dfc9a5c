"""Proximal Policy Optimization (Schulman et al. 2017, https://arxiv.org/abs/1707.06347).

One update, in the order of the paper's Algorithm 1 (and of CleanRL's ``ppo.py``):

    1. collect   T steps in each of N envs with pi_old                       -> batch of B = T*N
    2. estimate  V(s_t), V(s_{t+1});  A_t = GAE(gamma, lambda);  R_t = A_t + V(s_t)
                 (rewards first divided by the running return std when normalize_reward)
    3. diagnose  per-episode gradient samples of sum_t log pi(a_t|s_t) A_t    -> grad var / SNR
    4. optimise  n_epochs passes over shuffled minibatches of ``batch_size``:
                 L = L_policy + vf_coef * L_value - ent_coef * H,  one Adam step per minibatch
                 (global gradient clipping; optional early stop when KL > target_kl)
    5. report    losses, entropy, KL (k1, k3), clip fraction, explained variance, ...

Where these definitions differ from SB3's and CleanRL's (clip fraction of the last epoch,
advantage normalisation scope, target-KL timing, the value loss without CleanRL's 0.5), see
the module docstring of :mod:`pglab.metrics`; ``norm_adv_scope="minibatch"`` is their
normalisation.

On CPU the gradient of step 4 is written out by hand (:mod:`pglab.backprop`, with the loss
gradients ``*_grad`` of :mod:`pglab.kernels`) instead of taken by autograd: the same numbers
(tests/test_backprop.py) in about a fifth of the time for nets this small;
:meth:`PPO.loss_and_grad` holds both paths. For a categorical MLP policy (CartPole, Acrobot,
FrozenLake, ...) the whole of step 4's epoch, forward, that backward, the clip and Adam, is
one compiled call (:mod:`pglab.fastppo`; the same numbers, tests/test_fastppo.py), which is
what makes PureJaxRL's config (16 minibatch steps an update) fast; :meth:`PPO._epoch`, the
minibatch loop, stays for everything else and as the reference.

Two policy objectives (``variant``):
  - "clip":       L = -E[min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)]          (PPO-Clip, eq. 7)
  - "kl_penalty": L = -E[r_t A_t] + beta * KL(pi_old || pi_theta), with beta doubled when
                  d = KL(pi_old || pi_new), measured on the whole batch after the epochs (k3
                  estimate), exceeds 1.5 x kl_target and halved below kl_target / 1.5
                  (PPO-Penalty, section 4); that d is the update's ``diag/approx_kl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from pglab import fastppo, kernels
from pglab.algos.base import Trainer, flatten_parameters
from pglab.backprop import ActorCriticBackprop
from pglab.config import BaseConfig, param
from pglab.diagnostics import approx_kl, explained_variance
from pglab.kernels import clipped_surrogate_grad, kl_penalty_surrogate_grad
from pglab.optim import FlatAdam
from pglab.rollout import RewardScaler


@dataclass(frozen=True)
class PPOConfig(BaseConfig):
    """PPO settings. Defaults are a general-purpose CleanRL/SB3-style setting (8 envs x 128
    steps, minibatches of 256, 10 epochs, Adam 3e-4); :mod:`pglab.presets` holds tuned ones."""

    algo: ClassVar[str] = "ppo"

    num_envs: int = param(8, "Parallel environments stepped together.", low=1, high=256)
    n_steps: int = param(
        128, "Steps per env in each rollout (the batch is num_envs x n_steps).", low=1, high=8192
    )
    batch_size: int = param(
        256, "Minibatch size for the gradient steps of each epoch.", low=1, high=1_048_576
    )
    n_epochs: int = param(10, "Passes over the batch per update.", low=1, high=100)
    gae_lambda: float = param(
        0.95,
        "GAE lambda: 0 = one-step TD error (low variance, biased), 1 = Monte-Carlo.",
        low=0.0,
        high=1.0,
        equation="A_t = sum_l (gamma lambda)^l delta_{t+l}",
    )
    variant: str = param(
        "clip",
        "Policy objective: clipped surrogate (PPO-Clip) or adaptive KL penalty (PPO-Penalty).",
        choices=("clip", "kl_penalty"),
    )
    clip_coef: float = param(
        0.2,
        "Clip range epsilon of the surrogate (and of the value loss when clip_vloss).",
        low=0.0,
        high=1.0,
        equation="min(r A, clip(r, 1-eps, 1+eps) A)",
    )
    clip_schedule: str = param(
        "constant",
        "Anneal the clip range linearly to 0 over training.",
        choices=("constant", "linear"),
    )
    lr_schedule: str = param(
        "constant",
        "Anneal the learning rate linearly to 0 over training.",
        choices=("constant", "linear"),
    )
    clip_vloss: bool = param(
        False,
        "Clip the value update around the old values like the policy (PPO2 baselines; "
        "Engstrom et al. 2020 find it rarely helps: https://arxiv.org/abs/2005.12729).",
    )
    ent_coef: float = param(
        0.0, "Weight of the entropy bonus (encourages exploration).", low=0.0, high=1.0
    )
    vf_coef: float = param(0.5, "Weight of the value loss in the total loss.", low=0.0, high=10.0)
    max_grad_norm: float | None = param(
        0.5,
        "Clip the global gradient norm to this value (None: no clipping).",
        low=0.0,
        high=1000.0,
    )
    norm_adv: bool = param(
        True,
        "Normalise advantages to mean 0, std 1 over the batch (scale-free step size; "
        "https://iclr-blog-track.github.io/2022/03/25/ppo-implementation-details/).",
    )
    norm_adv_scope: str = param(
        "batch",
        "Where norm_adv takes the mean and std: the whole rollout, or each minibatch as SB3 "
        "and CleanRL do (the same when one minibatch is the whole batch).",
        choices=("batch", "minibatch"),
    )
    target_kl: float | None = param(
        None,
        "Stop the epochs of an update early once the approximate KL exceeds this (None: off).",
        low=0.0,
        high=10.0,
    )
    kl_target: float = param(
        0.01, "PPO-Penalty: the KL the adaptive beta aims for.", low=1e-6, high=10.0, log=True
    )
    kl_beta_init: float = param(
        1.0, "PPO-Penalty: initial KL coefficient beta.", low=0.0, high=1000.0
    )
    kl_adaptive: bool = param(
        True,
        "PPO-Penalty: adapt beta after each update (False: beta stays kl_beta_init, the "
        "paper's fixed-KL rows of Table 1; with beta 0, the unclipped, unpenalised surrogate).",
    )
    log_std_init: float = param(
        0.0,
        "Initial log standard deviation of the Gaussian policy (Box actions only).",
        low=-5.0,
        high=2.0,
    )

    normalize_obs: bool = param(
        False,
        "Feed the nets observations standardised by their running mean/std, clipped to +-10 "
        "(SB3 VecNormalize; https://arxiv.org/abs/2006.05990 finds it often helps).",
    )
    normalize_reward: bool = param(
        False,
        "Divide rewards by the running std of the discounted return, clipped to +-10 "
        "(SB3 VecNormalize; keeps value targets O(1): https://arxiv.org/abs/2005.12729).",
    )

    def validate(self) -> None:
        super().validate()
        rollout = self.num_envs * self.n_steps
        if self.batch_size > rollout:
            raise ValueError(
                f"batch_size: {self.batch_size} is larger than the rollout num_envs x n_steps = "
                f"{rollout} (must be in [1, {rollout}])"
            )
        if self.norm_adv and rollout < 2:
            raise ValueError(
                "norm_adv: normalising advantages needs a rollout of at least 2 steps (the std "
                "of one advantage is undefined); raise num_envs or n_steps, or set "
                "norm_adv=false"
            )

    @property
    def rollout_size(self) -> int:
        return self.num_envs * self.n_steps


# -- losses: pure functions ------------------------------------------------------------------
def clipped_surrogate(ratio: Tensor, adv: Tensor, clip_coef: float) -> Tensor:
    """PPO-Clip policy loss  L = -E[min(r A, clip(r, 1-eps, 1+eps) A)]  (paper eq. 7).

    ``ratio`` = pi_theta(a|s) / pi_old(a|s) and ``adv`` have the same shape ``[B]``; returns a
    scalar. Computed as the equal  -E[A clamp(r, lo, hi)]  with  hi = 1+eps, lo = -inf  where
    A > 0  and  lo = 1-eps, hi = +inf  where  A <= 0  (min(r, clip(r)) = min(r, 1+eps) and
    max(r, clip(r)) = max(r, 1-eps)): two autograd ops instead of six, on the hot path.
    """
    positive = adv > 0
    lo = torch.where(positive, -math.inf, 1.0 - clip_coef)
    hi = torch.where(positive, 1.0 + clip_coef, math.inf)
    return torch.dot(torch.clamp(ratio, lo, hi), adv * (-1.0 / adv.numel()))


def kl_penalty_surrogate(ratio: Tensor, adv: Tensor, beta: float) -> Tensor:
    """PPO-Penalty policy loss  L = -E[r A] + beta * KL(pi_old || pi_theta)  (paper eq. 8).

    The KL is the k3 estimate from the same samples (drawn from pi_old):
    KL ~= E[(r - 1) - log r], unbiased and >= 0 per sample, and differentiable in theta.
    """
    kl = ((ratio - 1.0) - torch.log(ratio)).mean()
    return -(ratio * adv).mean() + beta * kl


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, clip_coef: float | None
) -> Tensor:
    """Critic loss  E[(V - R)^2]  (the paper's L^VF, as in SB3), or with clipping
    (``clip_coef`` not None)  E[max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)]."""
    if clip_coef is None:
        return torch.nn.functional.mse_loss(values, returns)  # one autograd op
    err = (values - returns).pow(2)
    v_clipped = old_values + torch.clamp(values - old_values, -clip_coef, clip_coef)
    return torch.max(err, (v_clipped - returns).pow(2)).mean()


def value_loss_grad(
    values: np.ndarray,
    old_values: np.ndarray,
    returns: np.ndarray,
    clip_coef: float | None,
    scale: float = 1.0,
) -> tuple[float, np.ndarray]:
    """:func:`value_loss` and ``scale`` x its gradient dL/dV ``[B]``, on numpy arrays (the CPU
    path; compiled in :func:`pglab.kernels.value_loss_grad`, which has the equations)."""
    clipped = clip_coef is not None
    return kernels.value_loss_grad(
        values, old_values, returns, clip_coef if clipped else 0.0, clipped, scale
    )


def clip_grad_norm(grad: Tensor, max_norm: float | None) -> float:
    """Scale the flat gradient ``grad`` ``[P]`` in place to norm <= ``max_norm``; returns the
    norm before clipping. The factor is  min(1, max_norm / (|g| + 1e-6)), as in
    ``torch.nn.utils.clip_grad_norm_`` (which costs several times more per call). On CPU one
    compiled pass (:func:`pglab.kernels.clip_grad_norm_`). The norm is read as a Python
    float: the caller checks it for NaN every step anyway."""
    if grad.device.type == "cpu":
        clip = max_norm is not None
        return kernels.clip_grad_norm_(grad.numpy(), max_norm if clip else 0.0, clip)
    norm = float(torch.linalg.vector_norm(grad))
    if max_norm is not None and math.isfinite(norm):
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            grad.mul_(coef)
    return norm


def adapt_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """PPO-Penalty's rule (paper section 4): beta x 2 if KL > 1.5 d_targ, / 2 if KL < d_targ / 1.5."""
    if kl > 1.5 * kl_target:
        return beta * 2.0
    if kl < kl_target / 1.5:
        return beta / 2.0
    return beta


def linear_schedule(start: float, progress_remaining: float, kind: str) -> float:
    """``start`` (constant) or ``start * progress_remaining`` (linear), progress in [0, 1]."""
    return start * progress_remaining if kind == "linear" else start


class PPO(Trainer):
    name: ClassVar[str] = "ppo"
    Config: ClassVar[type[BaseConfig]] = PPOConfig
    config: PPOConfig

    def policy_kwargs(self) -> dict[str, Any]:
        return {"log_std_init": self.config.log_std_init}

    def setup(self) -> None:
        assert self.value is not None
        # One Adam over actor and critic, as SB3 and CleanRL do, so one clip covers both; all
        # parameters live in one flat buffer so the optimiser step is one fused kernel.
        # MLP nets are differentiated by hand (pglab.backprop: the same gradients as autograd
        # in about half the time for nets this small; it owns the flat buffer then); anything
        # else goes through autograd.
        self.backprop: ActorCriticBackprop | None = None
        if ActorCriticBackprop.supports(self.policy, self.value):
            self.backprop = ActorCriticBackprop(self.policy, self.value)
            self.flat_params = self.backprop.flat
        else:
            self.flat_params = flatten_parameters(self.policy, self.value)
        self.optimizer = FlatAdam(self.flat_params, lr=self.config.learning_rate, eps=1e-5)
        self.kl_beta = self.config.kl_beta_init
        self._fused: fastppo.FusedEpochs | None = None  # made on first use (_fused_epochs)
        self.reward_scaler: RewardScaler | None = None
        if self.config.normalize_reward:
            self.reward_scaler = RewardScaler(self.num_envs, self.config.gamma)

    def loss_and_grad(
        self,
        obs: Tensor,
        actions: Tensor,
        old_log_probs: Tensor,
        advantages: Tensor,
        old_values: Tensor,
        returns: Tensor,
        clip_coef: float,
    ) -> tuple[float, float, float, Tensor]:
        """Losses of one minibatch; writes dL/dtheta into ``self.flat_params.grad``.

        L = L_policy + vf_coef * L_value - ent_coef * H. Returns (policy loss, value loss,
        mean entropy, log ratio ``[B]``).
        """
        cfg = self.config
        vclip = clip_coef if cfg.clip_vloss else None
        if self.backprop is not None:  # by hand: forward, then the chain rule from the losses
            with torch.no_grad():
                log_prob, ent, values = self.backprop.forward(obs, actions.numpy())
                log_ratio = log_prob - old_log_probs.numpy()
                adv = advantages.numpy()
                if cfg.variant == "clip":
                    pg_loss, grad_lp, _ = clipped_surrogate_grad(log_ratio, adv, clip_coef)
                else:
                    pg_loss, grad_lp, _ = kl_penalty_surrogate_grad(log_ratio, adv, self.kl_beta)
                v_loss, grad_v = value_loss_grad(
                    values, old_values.numpy(), returns.numpy(), vclip, cfg.vf_coef
                )
                grad_ent = -cfg.ent_coef / obs.shape[0]
                self.backprop.backward(grad_lp, grad_ent, grad_v)
                return pg_loss, v_loss, float(ent.mean()), torch.from_numpy(log_ratio)
        # autograd: the reference the hand-written path is tested against
        assert self.value is not None
        entropy_grad = cfg.ent_coef > 0  # otherwise the entropy is only reported
        log_prob, ent = self.log_prob_entropy(obs, actions, entropy_grad)
        log_ratio = log_prob - old_log_probs
        ratio = log_ratio.exp()
        if cfg.variant == "clip":
            pg_loss = clipped_surrogate(ratio, advantages, clip_coef)
        else:
            pg_loss = kl_penalty_surrogate(ratio, advantages, self.kl_beta)
        v_loss = value_loss(self.value(obs), old_values, returns, vclip)
        entropy = ent.mean()
        loss = pg_loss + cfg.vf_coef * v_loss
        if entropy_grad:
            loss = loss - cfg.ent_coef * entropy
        self.flat_params.grad.zero_()  # keeps the module grads as views of it
        loss.backward()
        return pg_loss.item(), v_loss.item(), entropy.item(), log_ratio.detach()

    def batch_kl(
        self, b_obs: Tensor, b_actions: Tensor, b_old_log_probs: Tensor
    ) -> tuple[float, float]:
        """(k1, k3) estimates of KL(pi_old || pi_theta) over the whole batch ``[B]`` at the
        current parameters (:func:`pglab.diagnostics.approx_kl`; samples drawn from pi_old)."""
        with torch.no_grad():
            if self.backprop is not None:
                log_prob, _, _ = self.backprop.forward(b_obs, b_actions.numpy())
                log_ratio = torch.from_numpy(log_prob) - b_old_log_probs
            else:
                log_prob, _ = self.log_prob_entropy(b_obs, b_actions, False)
                log_ratio = log_prob - b_old_log_probs
            k1, k3 = approx_kl(log_ratio.double())
        return float(k1), float(k3)

    def _fused_epochs(self) -> fastppo.FusedEpochs | None:
        """The compiled epoch (:mod:`pglab.fastppo`) where it applies, else None
        (:func:`pglab.fastppo.fused_for`)."""
        self._fused = fastppo.fused_for(self, self._fused, fastppo.FusedEpochs)
        return self._fused

    def _check_step(self, pg_loss: float, v_loss: float, grad_norm: float) -> None:
        """Raise :class:`pglab.algos.base.NonFiniteError` naming what went non-finite."""
        for name, x in (("policy loss", pg_loss), ("value loss", v_loss)):
            self.check_finite(name, torch.tensor(x))
        self.check_finite("gradient norm", torch.tensor(grad_norm))

    def _epoch(
        self,
        b_tensors: tuple[Tensor, ...],
        perm: Tensor | None,
        clip_coef: float,
        measure: bool,
        mb_norm: bool,
    ) -> np.ndarray:
        """One pass over the minibatches ``perm[start : start + batch_size]`` (the whole batch
        when ``perm`` is None), one Adam step each. Returns per minibatch the row of
        :data:`pglab.fastppo.STATS`: policy loss, value loss, entropy, gradient norm, and,
        when ``measure``, KL k1, k3 and clip fraction before the step (else NaN)."""
        cfg = self.config
        B = b_tensors[0].shape[0]
        steps: list[list[float]] = []
        kl_stats: list[Tensor] = []  # k1, k3, clip fraction per minibatch
        for start in range(0, B, cfg.batch_size):
            if perm is None:
                mb = b_tensors
            else:
                idx = perm[start : start + cfg.batch_size]
                mb = tuple(t[idx] for t in b_tensors)
            if mb_norm and mb[3].numel() > 1:  # SB3/CleanRL: normalise each minibatch
                mb_adv = (mb[3] - mb[3].mean()) / (mb[3].std() + 1e-8)
                mb = (*mb[:3], mb_adv, *mb[4:])
            pg_loss, v_loss, entropy, log_ratio = self.loss_and_grad(*mb, clip_coef)
            grad_norm = clip_grad_norm(self.flat_params.grad, cfg.max_grad_norm)
            # One check a step: a non-finite loss makes a non-finite gradient too.
            if not math.isfinite(grad_norm):
                self._check_step(pg_loss, v_loss, grad_norm)
            self.optimizer.step()
            self.poll()  # Stop / Pause land within one minibatch, not one update
            steps.append([pg_loss, v_loss, entropy, grad_norm])
            if measure:
                with torch.no_grad():
                    k1, k3 = approx_kl(log_ratio)
                    clipped = ((log_ratio.exp() - 1.0).abs() > clip_coef).float().mean()
                    kl_stats.append(torch.stack([k1, k3, clipped]))
        rows = np.full((len(steps), len(fastppo.STATS)), np.nan)
        rows[:, :4] = steps
        if measure:
            rows[:, 4:] = torch.stack(kl_stats).double().cpu().numpy()
        return rows

    def _update(self) -> dict[str, float]:
        cfg = self.config
        assert self.value is not None
        progress_remaining = max(0.0, 1.0 - self.env_steps / cfg.total_steps)
        lr = linear_schedule(cfg.learning_rate, progress_remaining, cfg.lr_schedule)
        clip_coef = linear_schedule(cfg.clip_coef, progress_remaining, cfg.clip_schedule)
        self.optimizer.lr = lr

        # 1. collect
        batch = self.collect(cfg.n_steps)

        # 2. estimate: GAE advantages and lambda-returns as value targets
        rewards = batch.rewards
        if self.reward_scaler is not None:
            scaled = self.reward_scaler(rewards.cpu().numpy(), batch.dones.cpu().numpy())
            rewards = torch.as_tensor(scaled, device=self.device)
        values, advantages, returns = self.gae_estimate(batch, cfg.gae_lambda, rewards)
        b_obs = batch.obs.flatten(0, 1)
        b_actions = batch.actions.flatten(0, 1)
        b_old_log_probs = batch.log_probs.flatten(0, 1)
        b_advantages = advantages.flatten()
        b_returns = returns.flatten()
        b_values = values.flatten()
        mb_norm = cfg.norm_adv and cfg.norm_adv_scope == "minibatch"
        if cfg.norm_adv and not mb_norm:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

        metrics: dict[str, float] = {}
        # 3. diagnose the policy gradient the first epoch will follow (weights = advantages)
        if cfg.grad_diagnostics:
            metrics.update(self.rollout_grad_diagnostics(batch, b_obs, b_actions, b_advantages))

        # 4. optimise: one compiled call per epoch where pglab.fastppo applies, else the
        # minibatch loop below (the reference; autograd on CUDA)
        B = b_obs.shape[0]
        b_tensors = (b_obs, b_actions, b_old_log_probs, b_advantages, b_values, b_returns)
        fused = self._fused_epochs()
        if fused is not None:
            fused.load(*b_tensors)
        # Per minibatch: policy loss, value loss, entropy, gradient norm.
        step_stats: list[list[float]] = []
        epochs = 0
        for epoch in range(cfg.n_epochs):
            # KL and clip fraction are needed every epoch only for the target-KL check;
            # otherwise only on the last epoch, whose values are reported.
            measure = cfg.target_kl is not None or epoch == cfg.n_epochs - 1
            # A minibatch that is the whole batch needs no shuffle: the loss is a mean.
            perm = None
            if cfg.batch_size < B:
                perm = torch.randperm(B, generator=self.generator, device=self.device)
            if fused is not None:
                rows, steps = fused.epoch(perm, clip_coef, self.kl_beta)  # polls, too
                if steps < len(rows):  # a non-finite gradient norm: raise as the loop does
                    self._check_step(*rows[steps, [0, 1, 3]])
            else:
                rows = self._epoch(b_tensors, perm, clip_coef, measure, mb_norm)
            step_stats.extend(rows[:, :4].tolist())
            epochs += 1
            if measure:
                # KL and clip fraction of this epoch: how far the policy has moved by now.
                k1, k3, clip_fraction = rows[:, 4:].mean(0).tolist()
                if cfg.target_kl is not None and k3 > cfg.target_kl:
                    break

        if cfg.variant == "kl_penalty":
            # The paper's d: KL(pi_old || pi_new) on the whole batch after the epochs, not the
            # minibatch KLs measured before each step (which read 0 on a one-step update).
            k1, k3 = self.batch_kl(b_obs, b_actions, b_old_log_probs)

        # 5. report
        pg_loss_mean, v_loss_mean, entropy_mean, grad_norm_mean = (
            math.fsum(column) / len(step_stats) for column in zip(*step_stats, strict=True)
        )
        metrics.update(
            {
                "loss/policy": pg_loss_mean,
                "loss/value": v_loss_mean,
                "policy/entropy": entropy_mean,
                "diag/approx_kl": k3,
                "diag/approx_kl_k1": k1,
                "diag/grad_norm": grad_norm_mean,
                "opt/learning_rate": lr,
                "opt/epochs": float(epochs),
                "value/mean": float(b_values.mean()),
            }
        )
        ev = explained_variance(b_values, b_returns)
        if math.isfinite(ev):
            metrics["diag/explained_variance"] = ev
        if cfg.variant == "clip":
            metrics["diag/clip_fraction"] = clip_fraction
            metrics["opt/clip_coef"] = clip_coef
        else:
            metrics["opt/kl_beta"] = self.kl_beta  # the beta this update used
            # diag/approx_kl here is the post-update batch KL the rule adapts from.
            if cfg.kl_adaptive:
                self.kl_beta = adapt_kl_beta(self.kl_beta, k3, cfg.kl_target)
        return metrics
