"""TRPO: trust region policy optimisation with a natural-gradient step.

Schulman et al. (2015), https://arxiv.org/abs/1502.05477; the practical recipe (conjugate
gradient on Fisher-vector products, backtracking line search, a critic fitted separately) as in
Spinning Up (https://spinningup.openai.com/en/latest/algorithms/trpo.html) and sb3-contrib.

One update, in the order of the pseudocode:

1. collect   ``n_steps`` transitions in each of ``num_envs`` envs (time-major ``[T, N]``).
2. estimate  advantages ``A_t`` by GAE(gamma, lambda) with the critic, targets ``R_t = A_t + V(s_t)``.
3. update    the policy: maximise the surrogate ``L(theta) = mean_t[pi_theta(a_t|s_t) / pi_old(a_t|s_t) A_t]``
             subject to ``mean_t KL(pi_old(.|s_t) || pi_theta(.|s_t)) <= max_kl``:
               g   = grad L at theta_old
               x  ~= F^-1 g   by conjugate gradient, F v = grad (grad KL . v) + damping * v
               step = sqrt(2 max_kl / x^T F x) * x        (the largest step the quadratic KL allows)
               try theta_old + decay^k * step, k = 0, 1, ...; keep the first that improves L with
               KL <= max_kl, or keep theta_old if none does (``trpo/line_search_ok`` = 0).
           then fit the critic: ``vf_iters`` epochs of Adam on minibatches of ``(V(s) - R)^2``.
4. report    surrogate and value losses, entropy, KL, line-search outcome, explained variance.

Every parameter of the policy takes part in the natural-gradient step, including the Gaussian
policy's state-independent ``log_std`` (the Normal's KL depends on it, so F covers it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal, kl_divergence
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from pglab.algos.base import Trainer
from pglab.config import BaseConfig, param
from pglab.diagnostics import approx_kl, explained_variance, policy_grad_diagnostics
from pglab.policies import entropy, log_prob
from pglab.rollout import segment_ids


@dataclass(frozen=True)
class TRPOConfig(BaseConfig):
    """Hyperparameters of TRPO (defaults: sb3-contrib's ``TRPO``)."""

    algo: ClassVar[str] = "trpo"
    unused_fields: ClassVar[tuple[str, ...]] = ("learning_rate",)

    learning_rate: float = param(
        1e-3,
        "Not used by TRPO: the policy step is sized by max_kl and the critic's step by "
        "vf_learning_rate.",
        low=1e-6,
        high=1.0,
        log=True,
    )
    num_envs: int = param(1, "Parallel environments stepped in lockstep.", low=1, high=256)
    n_steps: int = param(
        2048,
        "Steps per environment in each rollout; one policy step per rollout.",
        low=2,
        high=65536,
    )
    gae_lambda: float = param(
        0.95,
        "GAE lambda: 0 = one-step TD error, 1 = Monte-Carlo return minus V "
        "(https://arxiv.org/abs/1506.02438).",
        low=0.0,
        high=1.0,
        equation="A_t = sum_l (gamma*lambda)^l delta_{t+l}",
    )
    max_kl: float = param(
        0.01,
        "Trust-region radius delta: the largest mean KL(old || new) a policy step may have.",
        low=1e-5,
        high=1.0,
        log=True,
        equation="mean KL(pi_old || pi_new) <= delta",
    )
    cg_iters: int = param(
        15, "Conjugate-gradient iterations to approximate F^-1 g.", low=1, high=100
    )
    cg_damping: float = param(
        0.1,
        "Added to the Fisher matrix (F + damping I) so conjugate gradient stays well posed.",
        low=0.0,
        high=10.0,
    )
    line_search_steps: int = param(
        10, "Backtracking steps tried before giving up (keeping the old policy).", low=1, high=50
    )
    line_search_decay: float = param(
        0.8, "Each backtracking step shrinks the step by this factor.", low=0.01, high=0.99
    )
    vf_learning_rate: float = param(
        1e-3, "Adam step size of the critic.", low=1e-6, high=1.0, log=True
    )
    vf_iters: int = param(
        10, "Epochs of critic fitting per rollout (minibatches of vf_batch_size).", low=1, high=200
    )
    vf_batch_size: int = param(128, "Minibatch size of critic fitting.", low=1, high=1_000_000)
    norm_adv: bool = param(
        True,
        "Normalise advantages within each rollout; scale-free surrogate, as in sb3-contrib "
        "(https://iclr-blog-track.github.io/2022/03/25/ppo-implementation-details/).",
    )


# -- the maths, as pure functions of callables ---------------------------------------------------
def conjugate_gradient(
    fvp: Callable[[Tensor], Tensor], b: Tensor, iters: int, residual_tol: float = 1e-10
) -> Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite A given only ``v -> A v``.

    Standard CG (Nocedal & Wright 2006, Alg. 5.2), starting at x = 0; stops after ``iters``
    products or when ``|r|^2 < residual_tol``. In exact arithmetic it solves an n x n system in
    n iterations. ``b`` is ``[P]``; returns ``x`` ``[P]``.
    """
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x
    p = b.clone()  # search direction
    rr = torch.dot(r, r)
    for _ in range(iters):
        if float(rr) < residual_tol:
            break
        Ap = fvp(p)
        alpha = rr / torch.dot(p, Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of :func:`backtracking_line_search`."""

    ok: bool  # a step improved the objective within the KL limit
    fraction: float  # fraction of the full step taken (0.0 when not ok)
    steps: int  # candidate steps evaluated
    improvement: float  # objective gain of the accepted step (0.0 when not ok)
    kl: float  # KL of the accepted step (0.0 when not ok: the old policy is kept)


def backtracking_line_search(
    evaluate: Callable[[float], tuple[float, float]],
    max_kl: float,
    max_steps: int,
    decay: float,
) -> LineSearchResult:
    """Try step fractions ``1, decay, decay^2, ...`` and accept the first that is safe.

    ``evaluate(f)`` applies ``f`` times the full step and returns ``(improvement, kl)``: the
    surrogate objective's gain over the old policy and the mean KL from it. A step is accepted
    when ``improvement > 0`` and ``kl <= max_kl`` (both finite). After ``max_steps`` failures
    the result has ``ok=False`` and the caller must restore the old parameters.
    """
    fraction = 1.0
    for k in range(1, max_steps + 1):
        improvement, kl = evaluate(fraction)
        if math.isfinite(improvement) and math.isfinite(kl) and improvement > 0 and kl <= max_kl:
            return LineSearchResult(True, fraction, k, improvement, kl)
        fraction *= decay
    return LineSearchResult(False, 0.0, max_steps, 0.0, 0.0)


def mean_kl(old: Distribution, new: Distribution) -> Tensor:
    """Mean over states of KL(old || new), summed over action dimensions for a Gaussian."""
    kl = kl_divergence(old, new)
    return (kl.sum(-1) if isinstance(old, Normal) else kl).mean()


def flat_grad(
    output: Tensor, params: list[torch.nn.Parameter], create_graph: bool = False
) -> Tensor:
    """Gradient of a scalar w.r.t. ``params``, flattened to ``[P]`` in parameter order."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=True)
    return torch.cat([g.reshape(-1) for g in grads])


# -- the trainer ---------------------------------------------------------------------------------
class TRPO(Trainer):
    """TRPO: natural-gradient policy step inside a KL trust region, critic fitted separately."""

    name = "trpo"
    Config = TRPOConfig
    config: TRPOConfig

    def setup(self) -> None:
        assert self.value is not None
        self.vf_optimizer = torch.optim.Adam(
            self.value.parameters(), lr=self.config.vf_learning_rate
        )

    def _update(self) -> dict[str, float]:
        cfg = self.config
        assert self.value is not None

        # 1. collect ------------------------------------------------------------------------
        batch = self.collect(cfg.n_steps)

        # 2. estimate -----------------------------------------------------------------------
        b_obs = batch.obs.flatten(0, 1)  # [T*N, ...]
        b_actions = batch.actions.flatten(0, 1)
        values, advantages, returns = self.gae_estimate(batch, cfg.gae_lambda)
        b_advantages = advantages.flatten()
        b_returns = returns.flatten()
        b_values = values.flatten()
        if cfg.norm_adv and b_advantages.numel() > 1:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

        metrics: dict[str, float] = {}
        if cfg.grad_diagnostics:
            seg, n_seg = segment_ids(batch.dones)
            metrics.update(
                policy_grad_diagnostics(
                    self.policy, b_obs, b_actions, b_advantages, seg.flatten(), n_seg
                )
            )

        # 3a. update the policy: natural gradient + line search ---------------------------------
        params = list(self.policy.parameters())
        with torch.no_grad():
            old_dist = self.policy(b_obs)  # detached: the fixed "old" policy of the KL
            old_log_prob = log_prob(old_dist, b_actions)
            old_entropy = entropy(old_dist).mean()

        def surrogate() -> Tensor:
            ratio = torch.exp(log_prob(self.policy(b_obs), b_actions) - old_log_prob)
            return (ratio * b_advantages).mean()

        surr_old = surrogate()
        g = flat_grad(surr_old, params)
        self.check_finite("policy gradient", g)
        kl_grad = flat_grad(mean_kl(old_dist, self.policy(b_obs)), params, create_graph=True)

        def fvp(v: Tensor) -> Tensor:
            # F v = d/dtheta (grad KL . v): the KL's Hessian at theta_old is the Fisher matrix.
            return flat_grad(torch.dot(kl_grad, v), params) + cfg.cg_damping * v

        step_dir = conjugate_gradient(fvp, g, cfg.cg_iters)
        shs = torch.dot(step_dir, fvp(step_dir))  # x^T F x, > 0 for F positive definite
        self.check_finite("natural-gradient direction", shs)
        full_step = torch.sqrt(2.0 * cfg.max_kl / shs.clamp_min(1e-12)) * step_dir
        theta_old = parameters_to_vector(params).detach()
        surr_old_value = surr_old.item()

        @torch.no_grad()
        def evaluate(fraction: float) -> tuple[float, float]:
            vector_to_parameters(theta_old + fraction * full_step, params)
            return surrogate().item() - surr_old_value, mean_kl(old_dist, self.policy(b_obs)).item()

        search = backtracking_line_search(
            evaluate, cfg.max_kl, cfg.line_search_steps, cfg.line_search_decay
        )
        with torch.no_grad():
            vector_to_parameters(theta_old + search.fraction * full_step, params)
            new_log_prob = log_prob(self.policy(b_obs), b_actions)
            policy_loss = -surrogate().item()

        # 3b. fit the critic on the targets computed before the policy moved ---------------------
        n = b_obs.shape[0]
        value_losses = []
        for _ in range(cfg.vf_iters):
            perm = torch.as_tensor(self.rng.permutation(n), device=self.device)
            for start in range(0, n, cfg.vf_batch_size):
                mb = perm[start : start + cfg.vf_batch_size]
                value_loss = F.mse_loss(self.value(b_obs[mb]), b_returns[mb])
                self.check_finite("value loss", value_loss)
                self.vf_optimizer.zero_grad()
                value_loss.backward()
                self.vf_optimizer.step()
                value_losses.append(value_loss.item())

        # 4. report ---------------------------------------------------------------------------
        k1, k3 = approx_kl(new_log_prob - old_log_prob)
        metrics.update(
            {
                "loss/policy": policy_loss,
                "loss/value": sum(value_losses) / len(value_losses),
                "policy/entropy": old_entropy.item(),
                "diag/approx_kl": k3.item(),
                "diag/approx_kl_k1": k1.item(),
                "diag/grad_norm": g.norm().item(),
                "trpo/line_search_ok": float(search.ok),
                "trpo/line_search_steps": float(search.steps),
                "trpo/kl": search.kl,
                "value/mean": b_values.mean().item(),
            }
        )
        ev = explained_variance(b_values, b_returns)
        if math.isfinite(ev):  # undefined (NaN) when the targets are constant
            metrics["diag/explained_variance"] = ev
        return metrics
