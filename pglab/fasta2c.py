"""A2C's update as one compiled call: the critic's values, GAE, the forward of both nets, the
loss, the hand-written backward, the grad clip, the RMSprop (or Adam) step and the KL after
it (numba).

Why: A2C takes one gradient step per 40-step rollout at the zoo's 8 envs x 5 steps, so an
update is tiny (~0.15 ms of arithmetic) and, issued from Python (:mod:`pglab.backprop`, the
small kernels of :mod:`pglab.kernels`, torch for the critic and the reductions), it was ~40
calls across torch, numpy and numba: the ladder's A2C rung ran at 0.74x PPO's SPS. Here the
whole of steps 2-4 of :mod:`pglab.algos.a2c` is one call (two on the updates that also
measure the gradient's variance, which needs the advantages before the step).

The same update as :meth:`pglab.algos.a2c.A2C.loss_and_grad` + :func:`pglab.algos.ppo.
clip_grad_norm` + :class:`pglab.optim.FlatRMSprop` / :class:`~pglab.optim.FlatAdam` on the
same flat parameter buffer, built from the same compiled pieces as PPO's epoch
(:mod:`pglab.fastppo`: the layers, their backward, the loss gradients, the clip and the
optimiser steps of :mod:`pglab.kernels`, called as they are):

    V(s_t), V(s_{t+1});  A = GAE(gamma, lambda);  R = A + V;  A <- (A - mean) / (std + 1e-8)
    L = -mean_t[log pi(a_t|s_t) A_t] + vf_coef mean_t[(V(s_t) - R_t)^2] - ent_coef mean_t H
    g = dL/dtheta;  g <- g min(1, max_norm / (|g| + 1e-6));  theta <- RMSprop(theta, g)
    KL(pi_old || pi_new) from log pi_new(a_t|s_t) after the step (k1, k3)

(the normalisation only with ``norm_adv``), and it returns the numbers of A2C's metrics row
(:data:`STATS`). Parameters and metrics agree with the Python path to float32 rounding
(``tests/test_fasta2c.py``). Where it applies: :func:`pglab.fastppo.applies` (categorical
MLP policy, CPU, float32); anything else takes the Python path, which stays the reference
(and autograd the CUDA path). An update is a fraction of a millisecond, so the Stop/Pause
poll between updates (and in the rollout) is soon enough.

Caching: numba's on-disk cache of a kernel here is invalidated when this file changes, not
when a :mod:`pglab.fastppo` or :mod:`pglab.kernels` function it calls does; after editing
those, touch this file (or clear ``pglab/__pycache__/fasta2c.*.nb*``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pglab import fastppo, kernels
from pglab.fastppo import (
    _backward_step_,
    _forward,
    _hidden_forward,
    _layer_offsets,
    _output_forward,
    normalise_,
)
from pglab.optim import FlatAdam

if TYPE_CHECKING:
    from pglab.algos.a2c import A2C
    from pglab.rollout import Batch

_kernel = fastppo._kernel

# What a2c_update writes into its stats row, in this order.
STATS = (
    "policy_loss", "value_loss", "entropy", "grad_norm", "approx_kl_k1", "approx_kl",
    "value_mean", "explained_variance",
)  # fmt: skip
# What a2c_update returns: the step was taken, or what stopped it (no step then).
STEP_TAKEN, LOSS_NOT_FINITE, GRAD_NOT_FINITE = 0, 1, 2


@_kernel
def _critic_values(x, flat, offs, H, n_out, relu):  # pragma: no cover - compiled
    """V(s) ``[n]`` of the critic alone on ``x`` ``[n, in]``."""
    n = x.shape[0]
    acts = _hidden_forward(x, flat, offs, H, relu, 1, 2)
    logits = np.empty((n, n_out), dtype=np.float32)  # the policy layer on critic features: unread
    values = np.empty(n, dtype=np.float32)
    _output_forward(x, acts, flat, offs, n_out, 1, 1, logits, values)
    return values


@_kernel
def _actor_log_prob(x, actions, flat, offs, H, n_out, relu):  # pragma: no cover - compiled
    """log pi(a|s) ``[n]`` of the actor alone on ``x`` ``[n, in]``."""
    n = x.shape[0]
    acts = _hidden_forward(x, flat, offs, H, relu, 0, 1)
    logits = np.empty((n, n_out), dtype=np.float32)
    values = np.empty(n, dtype=np.float32)  # the value layer on actor features: unread
    _output_forward(x, acts, flat, offs, n_out, 0, 0, logits, values)
    log_prob = np.empty(n, dtype=np.float32)
    entropy = np.empty(n, dtype=np.float32)
    kernels.categorical_head(logits, actions, logits, log_prob, entropy)
    return log_prob


@_kernel
def _estimate(
    values, next_values, rewards, terminated, truncated, gamma, gae_lambda, norm_adv, adv, ret
):  # pragma: no cover - compiled
    """Step 2 from the critic's values ``[B]`` (B = T N, time-major as the rollout ``[T, N]``):
    ``adv`` = GAE (:func:`pglab.kernels.gae`), ``ret`` = adv + values, then, when
    ``norm_adv`` and B > 1, ``adv`` <- (adv - mean) / (std + 1e-8) (ddof 1), as A2C does."""
    T, N = rewards.shape
    B = T * N
    a = kernels.gae(
        rewards, values.reshape((T, N)), next_values.reshape((T, N)), terminated, truncated,
        gamma, gae_lambda,
    ).reshape(B)  # fmt: skip
    for i in range(B):
        adv[i] = a[i]
        ret[i] = a[i] + values[i]
    if norm_adv and B > 1:
        normalise_(adv, True)


@_kernel
def _explained_variance(pred, target):  # pragma: no cover - compiled
    """1 - Var(target - pred) / Var(target) (ddof 1, :func:`pglab.diagnostics.
    explained_variance`); NaN for fewer than 2 values or a constant target."""
    n = target.shape[0]
    if n < 2:
        return math.nan
    mean_y, mean_d = 0.0, 0.0
    for i in range(n):
        mean_y += target[i]
        mean_d += target[i] - pred[i]
    mean_y /= n
    mean_d /= n
    var_y, var_d = 0.0, 0.0
    for i in range(n):
        y = target[i] - mean_y
        d = (target[i] - pred[i]) - mean_d  # the difference in float32, as torch takes it
        var_y += y * y
        var_d += d * d
    if var_y == 0.0:
        return math.nan
    return 1.0 - var_d / var_y


@_kernel
def all_finite(a):  # pragma: no cover - compiled
    """``torch.isfinite(a).all()`` for a flat float32 array, in one vectorised pass (A2C's
    check of its parameters after every update, a fraction of the two torch ops' cost at
    ~9,000 parameters): x * 0 is +-0 for a
    finite x and NaN for +-inf or NaN, NaN survives any order of addition, and a sum of
    zeros cannot overflow, so the sum of the a_i * 0 is 0 exactly when every a_i is finite.
    (The kernels' fastmath flags allow reordering, not assuming no NaN or inf, so the
    compiler may not fold x * 0 to 0.)"""
    z = np.float32(0.0)
    for i in range(a.shape[0]):
        z += a[i] * np.float32(0.0)
    return z == 0.0


@_kernel
def a2c_advantages(
    x, x_next, rewards, terminated, truncated, flat, n_layers, H, n_out, relu, gamma,
    gae_lambda, norm_adv, values, adv, ret,
):  # fmt: skip  # pragma: no cover - compiled
    """Step 2 alone, for the updates whose gradient diagnostic reads the advantages before
    the step: V(s_t) into ``values``, V(s_{t+1}) of ``x_next``, GAE into ``adv``, R into
    ``ret`` (each ``[B]``; ``x``, ``x_next`` ``[B, in]``, the rest ``[T, N]``)."""
    offs = _layer_offsets(x.shape[1], n_layers, H)
    v = _critic_values(x, flat, offs, H, n_out, relu)
    next_v = _critic_values(x_next, flat, offs, H, n_out, relu)
    for i in range(v.shape[0]):
        values[i] = v[i]
    _estimate(values, next_v, rewards, terminated, truncated, gamma, gae_lambda, norm_adv, adv, ret)


@_kernel
def a2c_update(
    x, x_next, actions, old_lp, rewards, terminated, truncated, flat, grad, n_layers, H,
    n_out, relu, gamma, gae_lambda, norm_adv, given, values, adv, ret, vf_coef, ent_coef,
    max_grad_norm, clip_grad, adam, state1, state2, lr, beta1, beta2, eps, step, stats,
):  # fmt: skip  # pragma: no cover - compiled
    """One A2C update on the rollout (``x``, ``x_next`` ``[B, in]``: s_t and its true
    successor, flattened time-major; ``actions``, ``old_lp`` ``[B]``; ``rewards``,
    ``terminated``, ``truncated`` ``[T, N]``), in place on ``flat``, ``grad`` and the
    optimiser state: Adam (``adam``: ``state1``, ``state2`` its two averages, step number
    ``step``) or RMSprop (``state1`` its square average, ``beta1`` its alpha).

    ``given``: ``values``, ``adv``, ``ret`` ``[B]`` hold step 2 already
    (:func:`a2c_advantages`); else it is computed here, from this forward's V(s_t), and
    written there. Writes the :data:`STATS` row into ``stats``; returns :data:`STEP_TAKEN`,
    or :data:`LOSS_NOT_FINITE` / :data:`GRAD_NOT_FINITE` with no step taken (the row then
    filled up to the loss terms / the gradient norm)."""
    B, n_in = x.shape
    offs = _layer_offsets(n_in, n_layers, H)
    acts, logp_all, log_prob, entropy, v = _forward(x, actions, flat, offs, H, n_out, relu)
    if not given:
        next_v = _critic_values(x_next, flat, offs, H, n_out, relu)
        for i in range(B):
            values[i] = v[i]
        _estimate(
            values, next_v, rewards, terminated, truncated, gamma, gae_lambda, norm_adv, adv,
            ret,
        )  # fmt: skip

    # -- the loss and its gradients with respect to log pi, H and V
    pg_loss, ent = 0.0, 0.0
    for i in range(B):
        pg_loss -= np.float64(log_prob[i]) * np.float64(adv[i])
        ent += entropy[i]
    pg_loss /= B
    ent /= B
    v_loss, grad_v = kernels.value_loss_grad(v, v, ret, 0.0, False, vf_coef)
    stats[0], stats[1], stats[2] = pg_loss, v_loss, ent
    if not math.isfinite(pg_loss + vf_coef * v_loss - ent_coef * ent):
        return LOSS_NOT_FINITE
    grad_lp = np.empty(B, dtype=np.float32)
    scale = np.float32(-1.0 / B)
    for i in range(B):
        grad_lp[i] = adv[i] * scale

    # -- backward, the global gradient clip and the optimiser step
    if not _backward_step_(
        x, actions, flat, grad, offs, H, n_out, relu, acts, logp_all, entropy, grad_lp,
        -ent_coef / B, grad_v, max_grad_norm, clip_grad, adam, state1, state2, lr, beta1,
        beta2, eps, step, stats,
    ):  # fmt: skip
        return GRAD_NOT_FINITE
    # -- report: the KL between the policy before and after the step, the critic's fit
    after = _actor_log_prob(x, actions, flat, offs, H, n_out, relu)
    k1, k3 = 0.0, 0.0
    for i in range(B):
        lr_i = np.float64(after[i] - old_lp[i])  # the difference in float32, as torch takes it
        k1 -= lr_i
        k3 += math.expm1(lr_i) - lr_i
    value_sum = 0.0
    for i in range(B):
        value_sum += values[i]
    stats[4], stats[5], stats[6] = k1 / B, k3 / B, value_sum / B
    stats[7] = _explained_variance(values, ret)
    return STEP_TAKEN


class FusedA2C(fastppo.FusedNets):
    """The rollout of one update, held as the arrays :func:`a2c_update` reads, and the calls
    on ``trainer``'s flat parameters, gradient and optimiser state (all updated in place).

    ``load(batch)`` once per update; ``estimate()`` fills :attr:`values`, :attr:`adv`,
    :attr:`ret` (step 2) when something must read them before the step; ``step()`` -> the
    status of :func:`a2c_update`, with :attr:`stats` its :data:`STATS` row."""

    def __init__(self, trainer: A2C):
        super().__init__(trainer)
        opt = trainer.optimizer
        self.adam = isinstance(opt, FlatAdam)
        if isinstance(opt, FlatAdam):
            self.state = (opt.exp_avg.numpy(), opt.exp_avg_sq.numpy())
            self.betas = (float(opt.beta1), float(opt.beta2))
        else:  # FlatRMSprop: one average; its alpha goes where Adam's beta1 does
            self.state = (opt.square_avg.numpy(), opt.square_avg.numpy())
            self.betas = (float(opt.alpha), 0.0)
        self.stats = np.zeros(len(STATS))
        self.given = False

    def _x(self, obs) -> np.ndarray:
        """Observations ``[T, N, ...]`` as the nets read them, ``[T N, in]`` float32."""
        flat_obs = obs.flatten(0, 1)
        if self.encode.n is not None:  # Discrete: one-hot
            flat_obs = self.encode.forward(flat_obs)
        x = np.ascontiguousarray(flat_obs.numpy().reshape(flat_obs.shape[0], -1), np.float32)
        assert x.shape[1] == self.n_in, (x.shape, self.n_in)
        return x

    def load(self, batch: Batch) -> None:
        """The update's rollout (CPU tensors, time-major ``[T, N, ...]``)."""
        self.x = self._x(batch.obs)
        self.x_next = self._x(batch.next_obs)
        self.actions = np.ascontiguousarray(batch.actions.numpy().reshape(-1))
        self.old_lp = np.ascontiguousarray(batch.log_probs.numpy().reshape(-1), np.float32)
        self.rewards = np.ascontiguousarray(batch.rewards.numpy(), np.float32)
        self.terminated = np.ascontiguousarray(batch.terminated.numpy())
        self.truncated = np.ascontiguousarray(batch.truncated.numpy())
        B = self.x.shape[0]
        self.values = np.empty(B, dtype=np.float32)
        self.adv = np.empty(B, dtype=np.float32)
        self.ret = np.empty(B, dtype=np.float32)
        self.given = False

    def estimate(self) -> None:
        """Step 2 now (V, GAE, R, normalised A) into :attr:`values`, :attr:`adv`,
        :attr:`ret`, which :meth:`step` then uses as they are."""
        cfg = self.trainer.config
        a2c_advantages(
            self.x, self.x_next, self.rewards, self.terminated, self.truncated, self.flat,
            self.n_layers, self.hidden, self.n_out, self.relu, float(cfg.gamma),
            float(cfg.gae_lambda), bool(cfg.norm_adv), self.values, self.adv, self.ret,
        )  # fmt: skip
        self.given = True

    def step(self) -> int:
        """The update (step 2 too, unless :meth:`estimate` ran); the optimiser's step count
        goes up by one when the step was taken. Returns :func:`a2c_update`'s status."""
        cfg, opt = self.trainer.config, self.trainer.optimizer
        clip_grad = cfg.max_grad_norm is not None
        status = a2c_update(
            self.x, self.x_next, self.actions, self.old_lp, self.rewards, self.terminated,
            self.truncated, self.flat, self.grad, self.n_layers, self.hidden, self.n_out,
            self.relu, float(cfg.gamma), float(cfg.gae_lambda), bool(cfg.norm_adv),
            self.given, self.values, self.adv, self.ret, float(cfg.vf_coef),
            float(cfg.ent_coef), float(cfg.max_grad_norm) if clip_grad else 0.0, clip_grad,
            self.adam, self.state[0], self.state[1], float(opt.lr), self.betas[0],
            self.betas[1], float(opt.eps), opt.steps + 1, self.stats,
        )  # fmt: skip
        if status == STEP_TAKEN:
            opt.steps += 1
        return status
