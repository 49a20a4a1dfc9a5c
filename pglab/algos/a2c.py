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

On CPU the MLP nets take PPO's fast path: the numpy actor for the rollout, the shared loss's
gradient written out by hand for actor and critic together
(:class:`pglab.backprop.ActorCriticBackprop`) and one fused optimiser step on the flat
parameter buffer (:class:`pglab.optim.FlatRMSprop` / :class:`~pglab.optim.FlatAdam`);
``tests/test_a2c.py`` checks the update against autograd's, which stays the CUDA path. For a
categorical MLP policy (CartPole, Acrobot, FrozenLake, ...) steps 2-4 are one compiled call
(:mod:`pglab.fasta2c`, from the same compiled pieces as PPO's epoch; the same numbers,
``tests/test_fasta2c.py``); the code below them stays for everything else and as the
reference.

Defaults are Stable-Baselines3's A2C defaults (RMSprop, lr 7e-4, 5 steps, lambda 1) with the
rl-zoo CartPole choice of 8 envs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from pglab import fasta2c, fastppo
from pglab.algos.base import Trainer, flatten_parameters
from pglab.algos.ppo import clip_grad_norm, value_loss_grad
from pglab.backprop import ActorCriticBackprop
from pglab.config import BaseConfig, param
from pglab.diagnostics import approx_kl, explained_variance
from pglab.optim import FlatAdam, FlatRMSprop
from pglab.rollout import Batch

# A2C's gradient diagnostic runs on every k-th update, k = ceil(DIAG_MIN_STEPS / batch steps):
# every update from 200-step batches up, every 5th at the zoo's 8 envs x 5 steps.
DIAG_MIN_STEPS = 200


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
        # One flat buffer for actor and critic (one optimiser step, one clip), owned by the
        # hand-written backprop for MLP nets on CPU.
        self.backprop: ActorCriticBackprop | None = None
        if ActorCriticBackprop.supports(self.policy, self.value):
            self.backprop = ActorCriticBackprop(self.policy, self.value)
            self.flat_params = self.backprop.flat
        else:
            self.flat_params = flatten_parameters(self.policy, self.value)
        self.params = [self.flat_params]
        batch_steps = self.config.num_envs * self.config.n_steps
        # The gradient diagnostic on every update of A2C's tiny batches (40 steps at the zoo
        # settings, 8-10 episode segments) cost as much as the update itself (it halved the
        # SPS); it runs every k-th update instead (the first included), so measurements come
        # at least every DIAG_MIN_STEPS env steps and cost ~10% of training.
        self.diag_every = max(1, math.ceil(DIAG_MIN_STEPS / batch_steps))
        lr = self.config.learning_rate
        if self.config.optimizer == "rmsprop":
            # SB3's A2C: RMSprop with alpha 0.99 and eps 1e-5 (PyTorch's default eps is 1e-8).
            self.optimizer: FlatRMSprop | FlatAdam = FlatRMSprop(
                self.flat_params, lr=lr, alpha=0.99, eps=1e-5
            )
        else:
            self.optimizer = FlatAdam(self.flat_params, lr=lr, eps=1e-5)
        self._fused: fasta2c.FusedA2C | None = None  # made on first use (_fused_update)
        flat = self.flat_params
        self._flat_np = (  # a view for the compiled parameter check (CPU, float32)
            flat.detach().numpy()
            if flat.device.type == "cpu" and flat.dtype == torch.float32
            else None
        )

    def loss_and_grad(
        self, b_obs: torch.Tensor, b_actions: torch.Tensor, b_advantages: torch.Tensor,
        b_returns: torch.Tensor,
    ) -> tuple[float, float, float]:  # fmt: skip
        """The shared loss of step 3; writes dL/dtheta into ``flat_params.grad``.
        Returns (policy loss, value loss, mean entropy)."""
        cfg = self.config
        assert self.value is not None
        if self.backprop is not None:  # by hand (pglab.backprop), the same numbers as below
            with torch.no_grad():
                lp, ent, values = self.backprop.forward(b_obs, b_actions.numpy())
                adv = b_advantages.numpy()
                B = adv.shape[0]
                policy_loss = -float(np.dot(lp.astype(np.float64), adv)) / B
                value_loss, grad_v = value_loss_grad(
                    values, values, b_returns.numpy(), None, cfg.vf_coef
                )
                self.backprop.backward(adv * np.float32(-1.0 / B), -cfg.ent_coef / B, grad_v)
                return policy_loss, value_loss, float(ent.mean())
        # autograd: the reference the hand-written path is tested against
        new_log_prob, ent_per_state = self.log_prob_entropy(b_obs, b_actions)
        ent = ent_per_state.mean()
        policy_loss_t = -(new_log_prob * b_advantages).mean()
        value_loss_t = F.mse_loss(self.value(b_obs), b_returns)
        loss = policy_loss_t + cfg.vf_coef * value_loss_t - cfg.ent_coef * ent
        self.check_finite("loss", loss)
        self.flat_params.grad.zero_()  # keeps the module grads as views of it
        loss.backward()
        return policy_loss_t.item(), value_loss_t.item(), ent.item()

    def _fused_update(self) -> fasta2c.FusedA2C | None:
        """The compiled update (:mod:`pglab.fasta2c`) where it applies, else None
        (:func:`pglab.fastppo.fused_for`)."""
        self._fused = fastppo.fused_for(self, self._fused, fasta2c.FusedA2C)
        return self._fused

    def check_parameters(self) -> None:
        # One compiled pass over the flat buffer instead of torch.isfinite(...).all() (the
        # same answer, see fasta2c.all_finite); the base class names the culprit otherwise.
        if self._flat_np is not None and fasta2c.all_finite(self._flat_np):
            return
        super().check_parameters()

    def _update(self) -> dict[str, float]:
        cfg = self.config
        assert self.value is not None

        # 1. collect ------------------------------------------------------------------------
        batch = self.collect(cfg.n_steps)
        fused = self._fused_update()
        if fused is not None:  # steps 2-4 in one compiled call, the same numbers as below
            return self._update_fused(fused, batch)

        # 2. estimate -----------------------------------------------------------------------
        b_obs = batch.obs.flatten(0, 1)  # [T*N, ...]
        values, advantages, returns = self.gae_estimate(batch, cfg.gae_lambda)
        b_actions = batch.actions.flatten(0, 1)
        b_old_log_prob = batch.log_probs.flatten(0, 1)
        b_advantages = advantages.flatten()
        b_returns = returns.flatten()
        b_values = values.flatten()
        if cfg.norm_adv and b_advantages.numel() > 1:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

        metrics: dict[str, float] = {}
        if cfg.grad_diagnostics and self.updates % self.diag_every == 0:
            metrics.update(self.rollout_grad_diagnostics(batch, b_obs, b_actions, b_advantages))

        # 3. update: one step on the shared loss -------------------------------------------
        policy_loss, value_loss, ent = self.loss_and_grad(b_obs, b_actions, b_advantages, b_returns)
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * ent
        if not math.isfinite(loss):
            self.check_finite("loss", torch.tensor(loss))
        grad_norm = clip_grad_norm(self.flat_params.grad, cfg.max_grad_norm)
        if not math.isfinite(grad_norm):
            self.check_finite("gradient norm", torch.tensor(grad_norm))
        self.optimizer.step()

        # 4. report ---------------------------------------------------------------------------
        with torch.no_grad():
            if self.backprop is not None:
                lp_after = self.backprop.forward(b_obs, b_actions.numpy())[0]
                after = torch.from_numpy(lp_after)
            else:
                after, _ = self.log_prob_entropy(b_obs, b_actions)
        k1, k3 = approx_kl(after - b_old_log_prob)
        ev = explained_variance(b_values, b_returns)
        stats = (policy_loss, value_loss, ent, float(grad_norm), k1.item(), k3.item())
        return self._report(metrics, *stats, float(b_values.mean()), ev)

    def _report(
        self, metrics: dict[str, float], policy_loss: float, value_loss: float, ent: float,
        grad_norm: float, k1: float, k3: float, value_mean: float, ev: float,
    ) -> dict[str, float]:  # fmt: skip
        """Step 4's metrics row (after any diagnostic already in ``metrics``), for both the
        Python update and the compiled one."""
        metrics.update(
            {
                "loss/policy": policy_loss,
                "loss/value": value_loss,
                "policy/entropy": ent,
                "diag/approx_kl": k3,
                "diag/approx_kl_k1": k1,
                "diag/grad_norm": grad_norm,
                "opt/learning_rate": self.config.learning_rate,
                "value/mean": value_mean,
            }
        )
        if math.isfinite(ev):  # undefined (NaN) when the targets are constant
            metrics["diag/explained_variance"] = ev
        return metrics

    def _update_fused(self, fused: fasta2c.FusedA2C, batch: Batch) -> dict[str, float]:
        """Steps 2-4 of :meth:`_update` through :mod:`pglab.fasta2c`: the same metrics row."""
        cfg = self.config
        fused.load(batch)
        metrics: dict[str, float] = {}
        if cfg.grad_diagnostics and self.updates % self.diag_every == 0:
            fused.estimate()  # the diagnostic reads the advantages before the step
            b_obs = batch.obs.flatten(0, 1)
            b_actions = batch.actions.flatten(0, 1)
            b_advantages = torch.from_numpy(fused.adv)
            metrics.update(self.rollout_grad_diagnostics(batch, b_obs, b_actions, b_advantages))
        status = fused.step()
        policy_loss, value_loss, ent, grad_norm, k1, k3, value_mean, ev = fused.stats.tolist()
        if status == fasta2c.LOSS_NOT_FINITE:
            loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * ent
            self.check_finite("loss", torch.tensor(loss))
        if status == fasta2c.GRAD_NOT_FINITE:
            self.check_finite("gradient norm", torch.tensor(grad_norm))
        return self._report(
            metrics, policy_loss, value_loss, ent, grad_norm, k1, k3, value_mean, ev
        )
