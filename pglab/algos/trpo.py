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

On CPU the MLP nets take the fast path: the numpy actor for the rollout; g, the Fisher-vector
products and the line search's forwards by hand (:class:`pglab.backprop.PolicyBackprop`:
``F v = J^T M J v / B`` with ``J v`` in forward mode, instead of autograd's double backward);
the critic's minibatch steps by hand (:class:`~pglab.backprop.ValueBackprop`) with a fused Adam
(:class:`pglab.optim.FlatAdam`). ``tests/test_trpo.py`` checks g, F v and whole updates against
autograd, which stays the CUDA path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution, Normal, kl_divergence

from pglab.algos.base import _HALF_LOG_2PI, Trainer, flatten_parameters
from pglab.backprop import PolicyBackprop, ValueBackprop
from pglab.config import BaseConfig, param
from pglab.diagnostics import approx_kl, explained_variance
from pglab.optim import FlatAdam
from pglab.policies import entropy, log_prob


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
        # Each net in one flat buffer (the natural-gradient step moves the policy's in place);
        # MLP nets on CPU are differentiated by hand.
        self.backprop: PolicyBackprop | None = None
        if PolicyBackprop.supports(self.policy):
            self.backprop = PolicyBackprop(self.policy)
            self.policy_params = self.backprop.flat
        else:
            self.policy_params = flatten_parameters(self.policy)
        self.vf_backprop: ValueBackprop | None = None
        if ValueBackprop.supports(self.value):
            self.vf_backprop = ValueBackprop(self.value)
            self.value_params = self.vf_backprop.flat
        else:
            self.value_params = flatten_parameters(self.value)
        self.vf_optimizer = FlatAdam(self.value_params, lr=self.config.vf_learning_rate)

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
            metrics.update(self.rollout_grad_diagnostics(batch, b_obs, b_actions, b_advantages))

        # 3a. update the policy: natural gradient + line search ---------------------------------
        step = self.policy_step_by_hand if self.backprop is not None else self.policy_step
        g_norm, search, old_log_prob, new_log_prob, old_entropy, policy_loss = step(
            b_obs, b_actions, b_advantages
        )

        # 3b. fit the critic on the targets computed before the policy moved ---------------------
        n = b_obs.shape[0]
        value_losses = []
        for _ in range(cfg.vf_iters):
            perm = torch.as_tensor(self.rng.permutation(n), device=self.device)
            for start in range(0, n, cfg.vf_batch_size):
                mb = perm[start : start + cfg.vf_batch_size]
                value_losses.append(self.value_step(b_obs[mb], b_returns[mb]))

        # 4. report ---------------------------------------------------------------------------
        k1, k3 = approx_kl(new_log_prob - old_log_prob)
        metrics.update(
            {
                "loss/policy": policy_loss,
                "loss/value": sum(value_losses) / len(value_losses),
                "policy/entropy": old_entropy,
                "diag/approx_kl": k3.item(),
                "diag/approx_kl_k1": k1.item(),
                "diag/grad_norm": g_norm,
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

    # -- the policy step: autograd (the reference, and CUDA's) ----------------------------------
    def policy_step(
        self, b_obs: Tensor, b_actions: Tensor, b_advantages: Tensor
    ) -> tuple[float, LineSearchResult, Tensor, Tensor, float, float]:
        """Natural-gradient step with line search. Returns (|g|, line search, log pi_old,
        log pi_new, mean entropy of pi_old, policy loss -L at the new parameters)."""
        cfg = self.config
        params = list(self.policy.parameters())
        with torch.no_grad():
            old_dist = self.policy(b_obs)  # detached: the fixed "old" policy of the KL
            old_log_prob = log_prob(old_dist, b_actions)
            old_entropy = entropy(old_dist).mean().item()

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
        theta = self.policy_params.data
        theta_old = theta.clone()
        surr_old_value = surr_old.item()

        @torch.no_grad()
        def evaluate(fraction: float) -> tuple[float, float]:
            theta.copy_(theta_old + fraction * full_step)
            return surrogate().item() - surr_old_value, mean_kl(old_dist, self.policy(b_obs)).item()

        search = backtracking_line_search(
            evaluate, cfg.max_kl, cfg.line_search_steps, cfg.line_search_decay
        )
        with torch.no_grad():
            theta.copy_(theta_old + search.fraction * full_step)
            new_log_prob = log_prob(self.policy(b_obs), b_actions)
            policy_loss = -surrogate().item()
        return g.norm().item(), search, old_log_prob, new_log_prob, old_entropy, policy_loss

    # -- the policy step by hand (CPU MLP policies): the same maths ------------------------------
    def _np_policy(self, b_obs: Tensor, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log pi(a|s) ``[B]`` and the distribution's parameters (``log pi(.|s)`` ``[B, A]`` or
        the mean ``[B, D]``) at the current parameters, numpy, no gradient."""
        assert self.backprop is not None
        out = self.backprop.forward_net(b_obs)
        if self.backprop.categorical:
            m = out.max(1, keepdims=True)
            logp_all = out - (m + np.log(np.exp(out - m).sum(1, keepdims=True)))
            return logp_all[np.arange(len(out)), actions], logp_all
        log_std = self.backprop.log_std
        u = (actions - out) * np.exp(-log_std)
        return (-0.5 * u * u - log_std - _HALF_LOG_2PI).sum(1), out.copy()

    def _np_kl(self, old: np.ndarray, new: np.ndarray, old_log_std: np.ndarray | None) -> float:
        """mean_b KL(pi_old(.|s_b) || pi(.|s_b)) from :meth:`_np_policy`'s parameters."""
        if old_log_std is None:
            return float((np.exp(old) * (old - new)).sum(1).mean())
        assert self.backprop is not None
        ls = self.backprop.log_std
        var_old, var_new = np.exp(2.0 * old_log_std), np.exp(2.0 * ls)
        kl = ls - old_log_std + (var_old + (old - new) ** 2) / (2.0 * var_new) - 0.5
        return float(kl.sum(1).mean())

    @torch.no_grad()
    def policy_step_by_hand(
        self, b_obs: Tensor, b_actions: Tensor, b_advantages: Tensor
    ) -> tuple[float, LineSearchResult, Tensor, Tensor, float, float]:
        """:meth:`policy_step` with g = grad L (ratio 1 at theta_old: dL/d log pi_b = A_b / B),
        F v (:meth:`pglab.backprop.PolicyBackprop.fisher_vector_product`) and the line
        search's surrogate and KL computed by hand."""
        cfg, bp = self.config, self.backprop
        assert bp is not None
        actions = b_actions.numpy()
        adv = b_advantages.numpy()
        B = adv.shape[0]
        old_lp, old_dist = self._np_policy(b_obs, actions)
        old_log_std = None if bp.categorical else bp.log_std.copy()
        _, ent = bp.forward(b_obs, actions)  # saves the activations F v is taken at
        bp.backward(adv * np.float32(1.0 / B), 0.0)
        g = self.policy_params.grad.clone()
        g_norm = float(torch.linalg.vector_norm(g))
        if not math.isfinite(g_norm):
            self.check_finite("policy gradient", g)
        damping = cfg.cg_damping

        def fvp(v: Tensor) -> Tensor:
            return bp.fisher_vector_product(v, old_dist).add_(v, alpha=damping)

        step_dir = conjugate_gradient(fvp, g, cfg.cg_iters)
        shs = torch.dot(step_dir, fvp(step_dir))
        self.check_finite("natural-gradient direction", shs)
        full_step = torch.sqrt(2.0 * cfg.max_kl / shs.clamp_min(1e-12)) * step_dir
        theta = self.policy_params.data
        theta_old = theta.clone()
        surr_old = float(np.dot(np.ones(B, np.float32), adv)) / B  # ratio 1 at theta_old

        def surrogate_and_kl() -> tuple[float, float, np.ndarray]:
            lp, dist = self._np_policy(b_obs, actions)
            surr = float(np.dot(np.exp(lp - old_lp), adv)) / B
            return surr, self._np_kl(old_dist, dist, old_log_std), lp

        def evaluate(fraction: float) -> tuple[float, float]:
            theta.copy_(theta_old + fraction * full_step)
            surr, kl, _ = surrogate_and_kl()
            return surr - surr_old, kl

        search = backtracking_line_search(
            evaluate, cfg.max_kl, cfg.line_search_steps, cfg.line_search_decay
        )
        theta.copy_(theta_old + search.fraction * full_step)
        surr, _, new_lp = surrogate_and_kl()
        return (
            g_norm, search, torch.from_numpy(old_lp), torch.from_numpy(new_lp),
            float(ent.mean()), -surr,
        )  # fmt: skip

    # -- the critic ----------------------------------------------------------------------------
    def value_step(self, obs: Tensor, returns: Tensor) -> float:
        """One Adam step on the minibatch loss (1/b) sum (V(s) - R)^2; returns that loss."""
        assert self.value is not None
        return self.critic_mse_step(obs, returns)
