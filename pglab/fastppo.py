"""PPO's epoch of minibatch steps as one compiled call: forward, hand-written backward, grad
clip and Adam for every minibatch of a shuffled pass over the batch (numba).

Why: at PureJaxRL's CartPole config (4 envs x 128 steps, 4 epochs x 4 minibatches of 128)
a 500k-step run takes 15.6k minibatch steps. Issued from Python (:mod:`pglab.backprop` and
the small kernels of :mod:`pglab.kernels`), each step is ~25 calls across torch, numpy and
numba: ~380 us, of which ~100 us is arithmetic. Here the whole epoch is one call: a minibatch
step costs its arithmetic, and Python is left one call per epoch.

The same update as :meth:`pglab.algos.ppo.PPO.loss_and_grad` + :func:`pglab.algos.ppo.
clip_grad_norm` + :class:`pglab.optim.FlatAdam` on the same flat parameter buffer
(:class:`pglab.backprop.ActorCriticBackprop`'s layout; the equations are in
:mod:`pglab.backprop`'s docstring), minibatch by minibatch in the permutation's order:

    mb = perm[start : start + batch_size]                            (the caller's permutation)
    A_mb <- (A_mb - mean) / (std + 1e-8)                             (norm_adv_scope="minibatch")
    L = L_clip(r, A) or L_KLpen(r, A; beta) + vf_coef L_V - ent_coef H,   r = pi / pi_old
    g = dL/dtheta;  g <- g min(1, max_norm / (|g| + 1e-6));  theta <- Adam(theta, g)

with the loss gradients, the heads, the gradient clip and the Adam step of
:mod:`pglab.kernels` called as they are (the same numbers); what is new is the layers: the
matrix products as compiled dot-product loops (4 x 4 blocks, which vectorise; at these
sizes as fast as torch's MKL once its call overhead is counted) and tanh as the rational
function of :mod:`pglab.fastrollout` (within 3e-7 of numpy's). Gradients and parameters agree
with the Python path and with autograd to float32 rounding (``tests/test_fastppo.py``: rtol
1e-4 after a whole update).

Per minibatch it returns the numbers PPO reports (:data:`STATS`), so the metrics row is
unchanged; the Python loop over epochs stays, with the target-KL stop, and the Stop/Pause
poll comes between calls (an epoch is cut into calls of at most :data:`CHUNK_SAMPLES`).
Where it applies: see :func:`applies` (categorical MLP policy, CPU, float32); anything
else takes the Python path, which stays the reference (and autograd the CUDA path).

Caching: numba's on-disk cache of a kernel here is invalidated when this file changes, not
when a :mod:`pglab.kernels` function it calls does; after editing those, touch this file (or
clear ``pglab/__pycache__/fastppo.*.nb*``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from numba import njit

from pglab import kernels
from pglab.fastrollout import _TA, _TANH_CLAMP, _TANH_SMALL, _TB

if TYPE_CHECKING:
    from pglab.algos.a2c import A2C
    from pglab.algos.ppo import PPO

# As pglab.kernels: sums may be reordered (vectorised); x / 0 is inf/nan, not a raise.
_kernel = njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")

# At most this many samples of minibatches per compiled call (~10 ms at hidden 64), so the
# driver's Stop/Pause (Trainer.poll, between calls) lands within that even on big batches.
CHUNK_SAMPLES = 8192

# The columns of ppo_epoch's per-minibatch output.
STATS = ("policy_loss", "value_loss", "entropy", "grad_norm", "approx_kl_k1", "approx_kl", "clip")


@_kernel
def _mm_abt(a, b, out):  # pragma: no cover - compiled
    """``out = a b^T``: ``a`` ``[m, k]``, ``b`` ``[n, k]``, ``out`` ``[m, n]`` (C order each),
    as dot products over k in 4 x 4 blocks of out: sixteen sums per pass over k, each
    vectorised over k, reading each loaded row of ``a`` and ``b`` four times (20-30% faster
    than 2 x 2 blocks at 128-256 x 64 x 64)."""
    m, k = a.shape
    n = b.shape[0]
    m4, n4 = m - m % 4, n - n % 4
    for i in range(0, m4, 4):
        for o in range(0, n4, 4):
            s00 = s01 = s02 = s03 = np.float32(0.0)
            s10 = s11 = s12 = s13 = np.float32(0.0)
            s20 = s21 = s22 = s23 = np.float32(0.0)
            s30 = s31 = s32 = s33 = np.float32(0.0)
            for j in range(k):
                a0, a1, a2, a3 = a[i, j], a[i + 1, j], a[i + 2, j], a[i + 3, j]
                b0, b1, b2, b3 = b[o, j], b[o + 1, j], b[o + 2, j], b[o + 3, j]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
                s20 += a2 * b0
                s21 += a2 * b1
                s22 += a2 * b2
                s23 += a2 * b3
                s30 += a3 * b0
                s31 += a3 * b1
                s32 += a3 * b2
                s33 += a3 * b3
            out[i, o], out[i, o + 1], out[i, o + 2], out[i, o + 3] = s00, s01, s02, s03
            out[i + 1, o], out[i + 1, o + 1], out[i + 1, o + 2], out[i + 1, o + 3] = (
                s10, s11, s12, s13,
            )  # fmt: skip
            out[i + 2, o], out[i + 2, o + 1], out[i + 2, o + 2], out[i + 2, o + 3] = (
                s20, s21, s22, s23,
            )  # fmt: skip
            out[i + 3, o], out[i + 3, o + 1], out[i + 3, o + 2], out[i + 3, o + 3] = (
                s30, s31, s32, s33,
            )  # fmt: skip
    for i in range(m):  # the rows and columns past the last whole block
        for o in range(n4 if i < m4 else 0, n):
            s = np.float32(0.0)
            for j in range(k):
                s += a[i, j] * b[o, j]
            out[i, o] = s


@_kernel
def _transpose(a, out):  # pragma: no cover - compiled
    """``out = a^T`` (``[m, n]`` -> ``[n, m]``), eight rows of ``a`` at a time: a plain
    column walk of ``out`` strides by a power of two at these sizes and thrashes the cache
    (13x slower at 256 x 64)."""
    m, n = a.shape
    m8 = m - m % 8
    for i0 in range(0, m8, 8):
        for j in range(n):
            dst = out[j]
            for i in range(8):
                dst[i0 + i] = a[i0 + i, j]
    for i in range(m8, m):
        for j in range(n):
            out[j, i] = a[i, j]


@_kernel
def _bias_act(z, b, relu):  # pragma: no cover - compiled
    """``z = act(z + b)`` in place, ``z`` ``[n, H]``, ``b`` ``[H]``; tanh as
    :func:`pglab.fastrollout._tanh_inplace` (rational, |error| <= 3e-7), or ReLU."""
    a1, a3, a5, a7, a9, a11, a13 = _TA
    b0, b2, b4, b6 = _TB
    n, H = z.shape
    for i in range(n):
        for j in range(H):
            y = z[i, j] + b[j]
            if relu:
                z[i, j] = max(y, np.float32(0.0))
                continue
            x = min(max(y, -_TANH_CLAMP), _TANH_CLAMP)
            x2 = x * x
            p = x2 * (x2 * (x2 * (x2 * (x2 * (x2 * a13 + a11) + a9) + a7) + a5) + a3) + a1
            q = x2 * (x2 * (x2 * b6 + b4) + b2) + b0
            z[i, j] = y if abs(y) < _TANH_SMALL else x * p / q


@_kernel
def _layer_offsets(n_in, n_layers, H):  # pragma: no cover - compiled
    """Where hidden layer k of :class:`pglab.backprop.ActorCriticBackprop`'s flat buffer
    starts (``offs[k]``, k < K: actor W, critic W, actor b, critic b) and where the output
    layers start (``offs[K]``: W_pi, b_pi, w_v, b_v)."""
    offs = np.empty(n_layers + 1, dtype=np.int64)
    off = 0
    for k in range(n_layers):
        offs[k] = off
        off += 2 * H * (n_in if k == 0 else H) + 2 * H
    offs[n_layers] = off
    return offs


@_kernel
def _hidden_forward(x, flat, offs, H, relu, s_lo, s_hi):  # pragma: no cover - compiled
    """The hidden layers of nets ``s_lo .. s_hi - 1`` (0: actor, 1: critic) on ``x``
    ``[n, in]``: returns ``acts`` ``[max(K, 1), 2, n, H]``, ``acts[k, s]`` = h_{k+1} of net s
    (the other net's rows left unset)."""
    n, n_in = x.shape
    K = offs.shape[0] - 1
    acts = np.empty((max(K, 1), 2, n, H), dtype=np.float32)
    for k in range(K):
        off = offs[k]
        k_in = n_in if k == 0 else H
        for s in range(s_lo, s_hi):
            W = flat[off + s * H * k_in : off + (s + 1) * H * k_in].reshape((H, k_in))
            b = flat[off + 2 * H * k_in + s * H : off + 2 * H * k_in + (s + 1) * H]
            _mm_abt(x if k == 0 else acts[k - 1, s], W, acts[k, s])
            _bias_act(acts[k, s], b, relu)
    return acts


@_kernel
def _output_forward(x, acts, flat, offs, n_out, s_pi, s_v, logits, values):  # pragma: no cover
    """The output layers (:func:`pglab.kernels.output_layers`): ``logits`` ``[n, A]`` from
    net ``s_pi``'s last hidden layer, ``values`` ``[n]`` from net ``s_v``'s (``x`` itself
    without hidden layers). Asking for one net only, pass its index twice: the other output
    is then computed from the same features and not meant to be read."""
    K = offs.shape[0] - 1
    width = acts.shape[3] if K > 0 else x.shape[1]
    o_Wpi = offs[K]
    o_bpi = o_Wpi + n_out * width
    o_wv = o_bpi + n_out
    o_bv = o_wv + width
    h_pi = acts[K - 1, s_pi] if K > 0 else x
    h_v = acts[K - 1, s_v] if K > 0 else x
    kernels.output_layers(
        h_pi, h_v, flat[o_Wpi:o_bpi].reshape((n_out, width)), flat[o_bpi:o_wv],
        flat[o_wv:o_bv], flat[o_bv : o_bv + 1], logits, values,
    )  # fmt: skip


@_kernel
def _forward(x, actions, flat, offs, H, n_out, relu):  # pragma: no cover - compiled
    """Both nets on ``x`` ``[n, in]``: ``(acts, log pi(.|s) [n, A], log pi(a|s) [n],
    H(pi(.|s)) [n], V(s) [n])``, ``acts`` as :func:`_hidden_forward` (what :func:`_backward`
    reads)."""
    n = x.shape[0]
    acts = _hidden_forward(x, flat, offs, H, relu, 0, 2)
    logits = np.empty((n, n_out), dtype=np.float32)
    values = np.empty(n, dtype=np.float32)
    _output_forward(x, acts, flat, offs, n_out, 0, 1, logits, values)
    log_prob = np.empty(n, dtype=np.float32)
    entropy = np.empty(n, dtype=np.float32)
    kernels.categorical_head(logits, actions, logits, log_prob, entropy)  # logits: log pi(.|s)
    return acts, logits, log_prob, entropy, values


@_kernel
def _backward(
    x, actions, flat, grad, offs, H, n_out, relu, acts, logp_all, entropy, grad_lp, grad_ent,
    grad_v,
):  # fmt: skip  # pragma: no cover - compiled
    """Write dL/dtheta of both nets into ``grad`` (the flat layout) for dL/d log pi(a|s) =
    ``grad_lp`` ``[n]``, dL/dH_b = ``grad_ent`` (every b) and dL/dV = ``grad_v`` ``[n]`` at
    the :func:`_forward` that gave ``acts``, ``logp_all`` and ``entropy``: the head, the
    output layers, then the hidden layers top down (:mod:`pglab.backprop`'s equations)."""
    n, n_in = x.shape
    K = offs.shape[0] - 1
    width = H if K > 0 else n_in
    o_Wpi = offs[K]
    o_bpi = o_Wpi + n_out * width
    o_wv = o_bpi + n_out
    o_bv = o_wv + width
    W_pi = flat[o_Wpi:o_bpi].reshape((n_out, width))
    w_v = flat[o_wv:o_bv]
    h_pi = acts[K - 1, 0] if K > 0 else x
    h_v = acts[K - 1, 1] if K > 0 else x
    grad_out = np.empty((n, n_out), dtype=np.float32)
    kernels.categorical_head_backward(logp_all, entropy, actions, grad_lp, grad_ent, grad_out)
    g = np.empty((2, n, width), dtype=np.float32)
    kernels.output_layers_backward(
        grad_out, grad_v, h_pi, h_v, W_pi, w_v,
        grad[o_Wpi:o_bpi].reshape((n_out, width)), grad[o_bpi:o_wv], grad[o_wv:o_bv],
        grad[o_bv : o_bv + 1], g[0], g[1], K > 0,
    )  # fmt: skip
    gT = np.empty((H, n), dtype=np.float32)
    xT = np.empty((n_in, n), dtype=np.float32)
    hT = np.empty((H, n), dtype=np.float32)
    for k in range(K - 1, -1, -1):
        off = offs[k]
        k_in = n_in if k == 0 else H
        db = grad[off + 2 * H * k_in : off + 2 * H * k_in + 2 * H].reshape((2, 1, H))
        kernels.activation_backward(g, acts[k], db, relu)  # g: dL/dz_k now
        g_prev = np.empty((2, n, H), dtype=np.float32)
        for s in range(2):
            _transpose(g[s], gT)
            dW = grad[off + s * H * k_in : off + (s + 1) * H * k_in].reshape((H, k_in))
            if k == 0:  # dL/dW_k = g^T h_{k-1}
                if s == 0:
                    _transpose(x, xT)
                _mm_abt(gT, xT, dW)
            else:
                _transpose(acts[k - 1, s], hT)
                _mm_abt(gT, hT, dW)
            if k > 0:
                W = flat[off + s * H * k_in : off + (s + 1) * H * k_in].reshape((H, k_in))
                WT = np.empty((k_in, H), dtype=np.float32)
                _transpose(W, WT)
                _mm_abt(g[s], WT, g_prev[s])  # dL/dh_{k-1} = g W_k
        g = g_prev


@_kernel
def _backward_step_(
    x, actions, flat, grad, offs, H, n_out, relu, acts, logp_all, entropy, grad_lp, grad_ent,
    grad_v, max_grad_norm, clip_grad, adam, state1, state2, lr, beta1, beta2, eps, step, stats,
):  # fmt: skip  # pragma: no cover - compiled
    """:func:`_backward`, the global grad-norm clip (the norm into ``stats[3]``) and one
    optimiser step in place: Adam (``state1``, ``state2``: exp_avg, exp_avg_sq) or RMSprop
    (``state1``: square_avg; ``beta1``: its alpha). False, and no step, when the norm is
    not finite."""
    _backward(
        x, actions, flat, grad, offs, H, n_out, relu, acts, logp_all, entropy, grad_lp,
        grad_ent, grad_v,
    )  # fmt: skip
    norm = kernels.clip_grad_norm_(grad, max_grad_norm, clip_grad)
    stats[3] = norm
    if not math.isfinite(norm):
        return False
    if adam:
        kernels.adam_step_(flat, grad, state1, state2, lr, beta1, beta2, eps, step)
    else:
        kernels.rmsprop_step_(flat, grad, state1, lr, beta1, eps)
    return True


@_kernel
def normalise_(adv, as_float32):  # pragma: no cover - compiled
    """``adv = (adv - mean) / (std + 1e-8)`` in place, the std with ddof=1, the sums in
    float64. ``as_float32``: mean and std rounded to float32 first, as torch computes
    ``(a - a.mean()) / (a.std() + 1e-8)`` on a float32 tensor (A2C's whole batch); else in
    float64 (PPO's minibatches)."""
    n = adv.shape[0]
    mean = 0.0
    for i in range(n):
        mean += adv[i]
    mean /= n
    var = 0.0
    for i in range(n):
        d = adv[i] - mean
        var += d * d
    if as_float32:
        m = np.float32(mean)
        s = np.float32(math.sqrt(var / (n - 1))) + np.float32(1e-8)
        for i in range(n):
            adv[i] = (adv[i] - m) / s
    else:
        std = math.sqrt(var / (n - 1))
        for i in range(n):
            adv[i] = (adv[i] - mean) / (std + 1e-8)


@_kernel
def _minibatch_step(
    x, actions, old_lp, adv, old_v, ret, flat, grad, n_layers, H, n_out, relu,
    clip_variant, clip_coef, kl_beta, clip_vloss, vf_coef, ent_coef, max_grad_norm, clip_grad,
    mb_norm, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step, stats,
):  # fmt: skip  # pragma: no cover - compiled
    """One minibatch (already gathered, ``[n, ...]`` each): losses, gradient into ``grad``,
    clip, Adam step on ``flat`` (skipped when the gradient norm is not finite). Writes the
    :data:`STATS` row into ``stats``; returns whether the step was taken."""
    n, n_in = x.shape
    if mb_norm and n > 1:  # SB3/CleanRL: normalise each minibatch (ddof=1 std)
        normalise_(adv, False)

    # -- forward: both nets, the output layers and the head
    offs = _layer_offsets(n_in, n_layers, H)
    acts, logp_all, log_prob, entropy, values = _forward(x, actions, flat, offs, H, n_out, relu)

    # -- losses and their gradients with respect to log pi, H and V
    log_ratio = np.empty(n, dtype=np.float32)
    for i in range(n):
        log_ratio[i] = log_prob[i] - old_lp[i]
    if clip_variant:
        pg_loss, grad_lp, ratio = kernels.clipped_surrogate_grad(log_ratio, adv, clip_coef)
    else:
        pg_loss, grad_lp, ratio = kernels.kl_penalty_surrogate_grad(log_ratio, adv, kl_beta)
    v_loss, grad_v = kernels.value_loss_grad(values, old_v, ret, clip_coef, clip_vloss, vf_coef)
    ent, k1, k3, clipped = 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        ent += entropy[i]
        lr_i = np.float64(log_ratio[i])
        k1 -= lr_i
        k3 += math.expm1(lr_i) - lr_i
        if abs(ratio[i] - np.float32(1.0)) > clip_coef:
            clipped += 1.0
    stats[0], stats[1], stats[2] = pg_loss, v_loss, ent / n
    stats[4], stats[5], stats[6] = k1 / n, k3 / n, clipped / n

    # -- backward, the global gradient clip and the Adam step
    return _backward_step_(
        x, actions, flat, grad, offs, H, n_out, relu, acts, logp_all, entropy, grad_lp,
        -ent_coef / n, grad_v, max_grad_norm, clip_grad, True, exp_avg, exp_avg_sq, lr, beta1,
        beta2, eps, step, stats,
    )  # fmt: skip


@_kernel
def ppo_epoch(
    x, actions, old_lp, adv, old_v, ret, perm, batch_size, m_lo, m_hi, flat, grad, n_layers,
    H, n_out, relu, clip_variant, clip_coef, kl_beta, clip_vloss, vf_coef, ent_coef,
    max_grad_norm, clip_grad, mb_norm, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step0,
    stats,
):  # fmt: skip  # pragma: no cover - compiled
    """Minibatches ``m_lo .. m_hi - 1`` of an epoch, minibatch m being the samples
    ``perm[m * batch_size : (m + 1) * batch_size]`` of the batch ``[B, ...]``, in order, one
    :func:`_minibatch_step` each (Adam steps ``step0 + 1, step0 + 2, ...``). Writes minibatch
    m's :data:`STATS` row into ``stats[m]``; returns the number of steps taken (fewer than
    ``m_hi - m_lo`` when a gradient norm was not finite: that minibatch's row is written, its
    step not taken)."""
    B = perm.shape[0]
    n_in = x.shape[1]
    done = 0
    for m in range(m_lo, m_hi):
        start = m * batch_size
        n = min(batch_size, B - start)
        mx = np.empty((n, n_in), dtype=np.float32)
        ma = np.empty(n, dtype=actions.dtype)
        mlp = np.empty(n, dtype=np.float32)
        madv = np.empty(n, dtype=np.float32)
        mv = np.empty(n, dtype=np.float32)
        mret = np.empty(n, dtype=np.float32)
        for i in range(n):
            j = perm[start + i]
            for c in range(n_in):
                mx[i, c] = x[j, c]
            ma[i] = actions[j]
            mlp[i] = old_lp[j]
            madv[i] = adv[j]
            mv[i] = old_v[j]
            mret[i] = ret[j]
        ok = _minibatch_step(
            mx, ma, mlp, madv, mv, mret, flat, grad, n_layers, H, n_out, relu, clip_variant,
            clip_coef, kl_beta, clip_vloss, vf_coef, ent_coef, max_grad_norm, clip_grad,
            mb_norm, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step0 + done + 1, stats[m],
        )  # fmt: skip
        if not ok:
            return done
        done += 1
    return done


@_kernel
def categorical_segment_grad_stats(
    x, weights, biases, relu, actions, w, seg, n_seg
):  # pragma: no cover - compiled
    """``(variance, snr)`` of :func:`pglab.diagnostics.grad_stats` on the per-segment samples

        g_i = grad_theta sum_{t: seg[t] = i} w_t log pi(a_t|s_t)        [n_seg, P]

    of a categorical MLP policy (what :func:`pglab.backprop.segment_grads` computes, without
    the per-step outer products): one forward, the head's backward with dL/d log pi_t = w_t,
    then per layer each step's ``delta_t h_{t-1}^T`` added into its segment's row. ``x``
    ``[B, in]``, ``weights`` / ``biases`` the Linear layers' ``[out, in]`` / ``[out]``,
    ``actions`` ``[B]``, ``w`` ``[B]``, ``seg`` ``[B]`` ids in ``[0, n_seg)``. The statistics
    do not depend on the parameters' order, so the samples are kept in this layer order.
    variance = sum_p Var_i(g_ip) / m (ddof 1; NaN for m < 2), snr = |mean g|^2 / variance."""
    K = len(weights)
    B = x.shape[0]
    hs = [x]
    for k in range(K):
        W = weights[k]
        z = np.empty((B, W.shape[0]), dtype=np.float32)
        _mm_abt(hs[k], W, z)
        if k < K - 1:
            _bias_act(z, biases[k], relu)
        else:
            for i in range(B):
                for a in range(W.shape[0]):
                    z[i, a] += biases[k][a]
        hs.append(z)
    logits = hs[K]
    log_prob = np.empty(B, dtype=np.float32)
    entropy = np.empty(B, dtype=np.float32)
    kernels.categorical_head(logits, actions, logits, log_prob, entropy)
    g = np.empty_like(logits)
    kernels.categorical_head_backward(logits, entropy, actions, w, 0.0, g)
    P = 0
    for k in range(K):
        P += weights[k].shape[0] * (weights[k].shape[1] + 1)
    samples = np.zeros((n_seg, P), dtype=np.float32)
    off = P
    for k in range(K - 1, -1, -1):
        W = weights[k]
        n_o, n_i = W.shape
        off -= n_o * (n_i + 1)
        h = hs[k]
        for t in range(B):  # step t's delta_t h_t^T into its segment's row
            row = samples[seg[t]]
            h_t = h[t]
            for o in range(n_o):
                a = g[t, o]
                dst = row[off + o * n_i : off + (o + 1) * n_i]  # a slice: the loop vectorises
                for j in range(n_i):
                    dst[j] += a * h_t[j]
                row[off + n_o * n_i + o] += a
        if k > 0:  # dL/dz_{k-1} = (g W_k) * act'(h_{k-1})
            WT = np.empty((n_i, n_o), dtype=np.float32)
            _transpose(W, WT)
            g_prev = np.empty((B, n_i), dtype=np.float32)
            _mm_abt(g, WT, g_prev)
            for t in range(B):
                for j in range(n_i):
                    v = h[t, j]
                    if relu:
                        if v <= 0.0:
                            g_prev[t, j] = 0.0
                    else:
                        g_prev[t, j] *= np.float32(1.0) - v * v
            g = g_prev
    if n_seg < 2:
        return math.nan, math.nan
    mean = np.zeros(P)  # row by row (float64): the columns would stride
    for i in range(n_seg):
        for p in range(P):
            mean[p] += samples[i, p]
    sq = 0.0
    for p in range(P):
        mean[p] /= n_seg
        sq += mean[p] * mean[p]
    var = 0.0
    for i in range(n_seg):
        for p in range(P):
            d = samples[i, p] - mean[p]
            var += d * d
    variance = var / (n_seg - 1) / n_seg
    return variance, (sq / variance if variance > 0.0 else math.nan)


def _layout_size(n_in: int, hidden: int, n_layers: int, n_out: int) -> int:
    """Floats in :class:`pglab.backprop.ActorCriticBackprop`'s flat buffer for these shapes."""
    size, k_in = 0, n_in
    for _ in range(n_layers):
        size += 2 * hidden * k_in + 2 * hidden
        k_in = hidden
    return size + n_out * k_in + n_out + k_in + 1


def applies(trainer: PPO | A2C) -> bool:
    """Whether ``trainer``'s update goes through the compiled kernels here (PPO's
    :func:`ppo_epoch`, A2C's :func:`pglab.fasta2c.a2c_update`): the hand-written backward is
    in use (:class:`pglab.backprop.ActorCriticBackprop`: MLP nets on CPU) with a categorical
    head, float32, the optimiser stepping the flat buffer, and that buffer laid out as the
    kernels read it. The one place the dispatch is decided; PPO and A2C ask every update (a
    test may switch a path off)."""
    bp = trainer.backprop
    if bp is None or not bp.categorical or trainer.flat_params.dtype != torch.float32:
        return False
    if trainer.optimizer.param is not trainer.flat_params:
        return False
    n_in = bp.hidden[0][0].shape[2] if bp.hidden else bp.W_pi.shape[1]
    hidden = bp.hidden[0][0].shape[1] if bp.hidden else 0
    size = _layout_size(n_in, hidden, len(bp.hidden), bp.n_out)
    base = bp.flat.data_ptr()
    return (
        bp.flat.numel() == size
        and bp.b_v.ctypes.data == base + 4 * (size - 1)  # the last float: the critic's bias
        and all(w.shape[1:] == (hidden, hidden) for w, _ in bp.hidden[1:])
    )


class FusedNets:
    """What a compiled update reads of ``trainer`` (:func:`applies`): numpy views of its flat
    parameters and gradient, and the layer layout. Kept while the trainer's backprop and
    optimiser are the objects it was made from (:func:`fused_for`)."""

    def __init__(self, trainer: PPO | A2C):
        assert applies(trainer)
        bp = trainer.backprop
        assert bp is not None
        self.trainer = trainer
        self.backprop, self.optimizer = bp, trainer.optimizer  # what the arrays below view
        self.flat = bp.flat.detach().numpy()
        self.grad = bp.flat.grad.numpy()
        self.n_layers = len(bp.hidden)
        self.hidden = bp.hidden[0][0].shape[1] if bp.hidden else 0
        self.n_in = bp.hidden[0][0].shape[2] if bp.hidden else bp.W_pi.shape[1]
        self.n_out = bp.n_out
        self.relu = bp.relu
        self.encode = bp.encode


F = TypeVar("F", bound=FusedNets)


def fused_for(trainer: PPO | A2C, cached: F | None, make: type[F]) -> F | None:
    """``cached`` if it was made for ``trainer``'s current backprop and optimiser, else a new
    ``make(trainer)`` where :func:`applies` (None where it does not). PPO and A2C ask every
    update, so switching ``backprop`` off (tests, the reference) switches the path off too;
    the layout check runs only when something changed."""
    if (
        cached is not None
        and cached.backprop is trainer.backprop
        and cached.optimizer is trainer.optimizer
    ):
        return cached
    return make(trainer) if applies(trainer) else None


class FusedEpochs(FusedNets):
    """The batch of one update, held as the arrays :func:`ppo_epoch` reads, and one call per
    epoch on ``trainer``'s flat parameters, gradient and Adam state (all updated in place).

    ``load(...)`` once per update; ``epoch(perm, clip_coef, kl_beta)`` -> (rows, steps): the
    :data:`STATS` rows ``[n_minibatches, 7]`` and how many Adam steps were taken (all, unless a
    gradient norm came out non-finite)."""

    def __init__(self, trainer: PPO):
        super().__init__(trainer)
        cfg = trainer.config
        self.clip_variant = cfg.variant == "clip"
        self.mb_norm = cfg.norm_adv and cfg.norm_adv_scope == "minibatch"
        self.batch: tuple[np.ndarray, ...] = ()
        self.identity = np.empty(0, dtype=np.int64)

    def load(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        values: torch.Tensor,
        returns: torch.Tensor,
    ) -> None:
        """The update's batch, each ``[B, ...]`` on CPU (advantages as the loss reads them:
        already normalised over the batch where ``norm_adv_scope="batch"``)."""
        x = self.encode(obs)
        self.batch = tuple(
            np.ascontiguousarray(t.numpy(), dtype=np.float32)
            for t in (x, old_log_probs, advantages, values, returns)
        )
        self.actions = np.ascontiguousarray(actions.numpy())
        B = x.shape[0]
        if self.identity.shape[0] != B:
            self.identity = np.arange(B, dtype=np.int64)

    def epoch(
        self, perm: torch.Tensor | None, clip_coef: float, kl_beta: float
    ) -> tuple[np.ndarray, int]:
        """One pass over the minibatches of ``perm`` (the batch in order when None), in calls
        of at most :data:`CHUNK_SAMPLES` samples with the trainer's Stop/Pause poll after each.
        Returns the :data:`STATS` rows and the number of Adam steps taken (on a non-finite
        gradient norm: up to that minibatch, whose row is the last filled in)."""
        tr = self.trainer
        cfg, opt = tr.config, tr.optimizer
        x, old_lp, adv, old_v, ret = self.batch
        order = self.identity if perm is None else perm.numpy()
        B, bs = x.shape[0], cfg.batch_size
        n_mb = -(-B // bs)
        rows = np.zeros((n_mb, len(STATS)))
        clip_grad = cfg.max_grad_norm is not None
        per_call = max(1, CHUNK_SAMPLES // bs)
        steps = 0
        for m_lo in range(0, n_mb, per_call):
            m_hi = min(n_mb, m_lo + per_call)
            done = ppo_epoch(
                x, self.actions, old_lp, adv, old_v, ret, order, bs, m_lo, m_hi, self.flat,
                self.grad, self.n_layers, self.hidden, self.n_out, self.relu,
                self.clip_variant, float(clip_coef), float(kl_beta), bool(cfg.clip_vloss),
                float(cfg.vf_coef), float(cfg.ent_coef),
                float(cfg.max_grad_norm) if clip_grad else 0.0, clip_grad, self.mb_norm,
                opt.exp_avg.numpy(), opt.exp_avg_sq.numpy(), float(opt.lr), float(opt.beta1),
                float(opt.beta2), float(opt.eps), opt.steps, rows,
            )  # fmt: skip
            opt.steps += done
            steps += done
            if done < m_hi - m_lo:
                return rows[: steps + 1], steps
            tr.poll()  # Stop / Pause land within one call, a few milliseconds
        return rows, steps
