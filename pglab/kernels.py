"""Compiled CPU kernels for the small, many-op parts of a training step (numba).

Why: at the sizes this lab trains (batches of a few hundred, hidden layers of 64) a training
step is a few matrix products and dozens of elementwise ops on arrays of a few thousand
numbers. The products go to BLAS (torch / numpy) and are fast; each elementwise op, issued
from Python, costs 2-15 us of dispatch and one pass over memory. Here the elementwise chains
are written as loops and compiled once by numba, so each chain is one call and one pass.
What stays outside: matrix products with a hidden dimension on both sides (BLAS does them
several times faster than a compiled loop) and ``tanh`` (numpy's SIMD tanh is ~30x faster
than a scalar one).

Every kernel is a pure function of numpy arrays (outputs are arguments the kernel writes, or
return values), float32 in and out, with its equation in the docstring; ``tests/`` check each
against the torch / autograd version. Compiled on first use and cached on disk
(``cache=True``), so a process after the first loads them in a fraction of a second.
``nogil``: kernels release the GIL, so runs in other threads of the run engine keep going.
``reassoc``/``contract``: sums may be reordered (vectorised), so results differ from
numpy's in the last bits; they are the same from run to run on one machine.

Shapes: ``B`` samples, ``H`` hidden units, ``A`` logits (Discrete) or ``D`` action dims (Box).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# error_model="numpy": x / 0 gives inf/nan like numpy instead of a check (and a raise) per
# division, which would also keep loops from vectorising.
_kernel = njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_TINY = float(np.finfo(np.float32).tiny)


# -- the output layers: policy head input and the value -------------------------------------
@_kernel
def output_layers(h_pi, h_v, W, b, w_v, b_v, out, values):  # pragma: no cover - compiled
    """``out = h_pi W^T + b`` ``[B, A]`` and ``values = h_v w_v + b_v`` ``[B]``.

    ``h_pi``, ``h_v`` ``[B, H]``: the last hidden layer of the actor and of the critic;
    ``W`` ``[A, H]``, ``b`` ``[A]``, ``w_v`` ``[H]``, ``b_v`` ``[1]``."""
    B, H = h_pi.shape
    A = W.shape[0]
    for i in range(B):
        for a in range(A):
            s = np.float32(0.0)
            for k in range(H):
                s += h_pi[i, k] * W[a, k]
            out[i, a] = s + b[a]
        s = np.float32(0.0)
        for k in range(H):
            s += h_v[i, k] * w_v[k]
        values[i] = s + b_v[0]


@_kernel
def output_layers_backward(
    grad_out, grad_v, h_pi, h_v, W, w_v, dW, db, dw_v, db_v, g_pi, g_v, want_g
):  # pragma: no cover - compiled
    """Backward of :func:`output_layers` given ``grad_out = dL/d out`` ``[B, A]`` and
    ``grad_v = dL/dV`` ``[B]``: writes

        dW = grad_out^T h_pi,  db = sum_b grad_out,  dw_v = grad_v^T h_v,  db_v = sum_b grad_v

    and, when ``want_g``, the gradients flowing into the last hidden layers
    ``g_pi = grad_out W`` and ``g_v = grad_v w_v^T`` (``[B, H]`` each)."""
    B, H = h_pi.shape
    A = W.shape[0]
    dW[:] = 0.0
    db[:] = 0.0
    dw_v[:] = 0.0
    sv = np.float32(0.0)
    for i in range(B):
        gv = grad_v[i]
        sv += gv
        for k in range(H):
            dw_v[k] += gv * h_v[i, k]
        if want_g:
            for k in range(H):
                g_v[i, k] = gv * w_v[k]
                g_pi[i, k] = 0.0
        for a in range(A):
            go = grad_out[i, a]
            db[a] += go
            for k in range(H):
                dW[a, k] += go * h_pi[i, k]
            if want_g:
                for k in range(H):
                    g_pi[i, k] += go * W[a, k]
    db_v[0] = sv


@_kernel
def activation_backward(g, h, db, relu):  # pragma: no cover - compiled
    """From dL/dh to dL/dz of a hidden layer ``h = act(z)``, in place, and the bias gradient.

    ``g``, ``h`` ``[S, B, H]`` (S stacked nets), ``db`` ``[S, 1, H]``:
    ``g *= 1 - h^2`` (tanh) or ``g *= [h > 0]`` (ReLU);  ``db = sum_b g``."""
    S, B, H = g.shape
    for s in range(S):
        for k in range(H):
            db[s, 0, k] = 0.0
        for i in range(B):
            for k in range(H):
                x = h[s, i, k]
                if relu:
                    v = g[s, i, k] if x > 0.0 else np.float32(0.0)
                else:
                    v = g[s, i, k] * (np.float32(1.0) - x * x)
                g[s, i, k] = v
                db[s, 0, k] += v


# -- policy heads ----------------------------------------------------------------------------
@_kernel
def _row_logsumexp(logits, i):  # pragma: no cover - compiled
    """log sum_a exp(logits[i, a]), shifted by the row's max so nothing overflows."""
    m = logits[i, 0]
    for a in range(1, logits.shape[1]):
        m = max(m, logits[i, a])
    total = 0.0
    for a in range(logits.shape[1]):
        total += math.exp(logits[i, a] - m)
    return m + math.log(total)


@_kernel
def categorical_head(logits, actions, logp_all, log_prob, entropy):  # pragma: no cover
    """Softmax policy from ``logits`` ``[B, A]`` and integer ``actions`` ``[B]``:

    log pi(.|s) = z - logsumexp(z)  -> logp_all [B, A]
    log_prob = log pi(a|s) [B],     entropy = -sum_a pi_a log pi_a [B]"""
    B, A = logits.shape
    for i in range(B):
        lse = _row_logsumexp(logits, i)
        ent = 0.0
        for a in range(A):
            lp = logits[i, a] - lse
            logp_all[i, a] = lp
            ent -= math.exp(lp) * lp
        entropy[i] = ent
        log_prob[i] = logp_all[i, actions[i]]


@_kernel
def categorical_head_backward(
    logp_all, entropy, actions, grad_log_prob, grad_entropy, grad_out
):  # pragma: no cover - compiled
    """dL/d logits ``[B, A]`` from dL/d log pi(a_b|s_b) = ``grad_log_prob[b]`` and
    dL/dH_b = ``grad_entropy`` (the same for every b):

        d log pi(a)/dz_j = [j = a] - pi_j,     dH/dz_j = -pi_j (log pi_j + H)"""
    B, A = logp_all.shape
    for i in range(B):
        g = grad_log_prob[i]
        for a in range(A):
            p = math.exp(logp_all[i, a])
            v = -p * g
            if grad_entropy != 0.0:
                v -= grad_entropy * p * (logp_all[i, a] + entropy[i])
            grad_out[i, a] = v
        grad_out[i, actions[i]] += g


@_kernel
def gaussian_head(mean, log_std, actions, u, log_prob, entropy):  # pragma: no cover
    """Diagonal Gaussian N(mean ``[B, D]``, exp(log_std ``[D]``)^2) at ``actions`` ``[B, D]``:

    u = (a - mu) / sigma -> u [B, D],  log_prob = sum_d -u_d^2/2 - log sigma_d - log(2 pi)/2,
    entropy = sum_d 1/2 + log(2 pi)/2 + log sigma_d  (the same for every b)"""
    B, D = mean.shape
    ent = 0.0
    for d in range(D):
        ent += 0.5 + _HALF_LOG_2PI + log_std[d]
    for i in range(B):
        lp = 0.0
        for d in range(D):
            x = (actions[i, d] - mean[i, d]) * math.exp(-log_std[d])
            u[i, d] = x
            lp += -0.5 * x * x - log_std[d] - _HALF_LOG_2PI
        log_prob[i] = lp
        entropy[i] = ent


@_kernel
def gaussian_head_backward(
    u, log_std, grad_log_prob, grad_entropy, grad_mean, grad_log_std
):  # pragma: no cover - compiled
    """dL/d mean ``[B, D]`` and dL/d log_std ``[D]`` of :func:`gaussian_head`:

    d log pi/d mu = u / sigma,  d log pi/d log sigma = u^2 - 1,  dH/d log sigma = 1 (each b)"""
    B, D = u.shape
    for d in range(D):
        inv_std = math.exp(-log_std[d])
        s = 0.0
        for i in range(B):
            x = u[i, d]
            grad_mean[i, d] = grad_log_prob[i] * x * inv_std
            s += grad_log_prob[i] * (x * x - 1.0)
        grad_log_std[d] = s + grad_entropy * B


# -- sampling (rollouts) ---------------------------------------------------------------------
@_kernel
def categorical_sample(logits, uniforms, actions, log_prob):  # pragma: no cover - compiled
    """Gumbel-max sampling  a = argmax_a (log pi(a|s) - log(-log U_a)),  U ~ U(0, 1)
    ``uniforms`` ``[B, A]``; writes ``actions`` ``[B]`` and their ``log_prob`` ``[B]``."""
    B, A = logits.shape
    for i in range(B):
        lse = _row_logsumexp(logits, i)
        best, best_a = -math.inf, 0
        for a in range(A):
            key = logits[i, a] - lse - math.log(-math.log(max(uniforms[i, a], _TINY)))
            if key > best:
                best, best_a = key, a
        actions[i] = best_a
        log_prob[i] = logits[i, best_a] - lse


@_kernel
def mlp_categorical_sample(
    x, weights, biases, relu, uniforms, actions, log_prob
):  # pragma: no cover
    """A categorical MLP policy's forward and Gumbel-max sampling in one call, for the tiny
    batches of a one-env rollout (``B`` of 1-4), where each of the dozen numpy calls of the
    numpy actor costs more than its arithmetic:

        h_0 = x,  h_k = act(h_{k-1} W_k^T + b_k),  logits = h_{K-1} W_K^T + b_K,
        a = argmax_a (log pi(a|s) - log(-log U_a))   (as :func:`categorical_sample`)

    ``x`` ``[B, in]``; ``weights`` / ``biases``: tuples of the K layers' ``[out, in]`` / ``[out]``
    arrays; ``uniforms`` ``[B, A]``; writes ``actions`` ``[B]`` and ``log_prob`` ``[B]``."""
    B = x.shape[0]
    K = len(weights)
    width = x.shape[1]
    for k in range(K):
        width = max(width, weights[k].shape[0])
    h = np.empty(width, dtype=np.float32)
    nxt = np.empty(width, dtype=np.float32)
    logits = np.empty((1, weights[K - 1].shape[0]), dtype=np.float32)
    for i in range(B):
        n_in = x.shape[1]
        for j in range(n_in):
            h[j] = x[i, j]
        for k in range(K):
            W = weights[k]
            b = biases[k]
            n_out = W.shape[0]
            for o in range(n_out):
                acc = np.float32(0.0)
                for j in range(n_in):
                    acc += W[o, j] * h[j]
                v = acc + b[o]
                if k < K - 1:
                    v = max(v, np.float32(0.0)) if relu else np.float32(math.tanh(v))
                    nxt[o] = v
                else:
                    logits[0, o] = v
            if k < K - 1:
                for j in range(n_out):
                    h[j] = nxt[j]
                n_in = n_out
        lse = _row_logsumexp(logits, 0)
        best, best_a = -math.inf, 0
        for a in range(logits.shape[1]):
            key = logits[0, a] - lse - math.log(-math.log(max(uniforms[i, a], _TINY)))
            if key > best:
                best, best_a = key, a
        actions[i] = best_a
        log_prob[i] = logits[0, best_a] - lse


# -- losses: value and gradient with respect to log pi / V -----------------------------------
@_kernel
def clipped_surrogate_grad(log_ratio, adv, clip_coef):  # pragma: no cover - compiled
    """PPO-Clip  L = -(1/B) sum_b min(r_b A_b, clip(r_b, 1-eps, 1+eps) A_b),  r = exp(log_ratio),
    and dL/d log pi_b = -A_b r_b / B where the clip lets r_b through (bounds included, as
    autograd's clamp), else 0. Returns ``(loss, grad [B], ratio [B])``."""
    B = log_ratio.shape[0]
    grad = np.empty_like(log_ratio)
    ratio = np.empty_like(log_ratio)
    loss = 0.0
    scale = -1.0 / B
    for i in range(B):
        r = math.exp(log_ratio[i])
        ratio[i] = r
        a = adv[i]
        c = min(r, 1.0 + clip_coef) if a > 0.0 else max(r, 1.0 - clip_coef)
        loss += c * a * scale
        grad[i] = a * scale * r if c == r else 0.0
    return loss, grad, ratio


@_kernel
def kl_penalty_surrogate_grad(log_ratio, adv, beta):  # pragma: no cover - compiled
    """PPO-Penalty  L = -(1/B) sum_b r_b A_b + beta (1/B) sum_b ((r_b - 1) - log r_b)
    and dL/d log pi_b = (beta (r_b - 1) - A_b r_b) / B. Returns ``(loss, grad, ratio)``."""
    B = log_ratio.shape[0]
    grad = np.empty_like(log_ratio)
    ratio = np.empty_like(log_ratio)
    surr, kl = 0.0, 0.0
    for i in range(B):
        r = math.exp(log_ratio[i])
        ratio[i] = r
        surr += r * adv[i]
        kl += (r - 1.0) - log_ratio[i]
        grad[i] = (beta * (r - 1.0) - adv[i] * r) / B
    return -surr / B + beta * kl / B, grad, ratio


@_kernel
def value_loss_grad(values, old_values, returns, clip_coef, clipped, scale):  # pragma: no cover
    """Critic loss and ``scale * dL/dV`` ``[B]``. Unclipped: L = (1/B) sum (V - R)^2,
    dL/dV = 2 (V - R) / B. Clipped (``clipped``): L = (1/B) sum max((V - R)^2, (Vc - R)^2),
    Vc = V_old + clip(V - V_old, -eps, eps); the gradient of the larger term, halved between
    them on a tie (autograd's rule for max), the clipped one passing only while
    |V - V_old| <= eps. Returns ``(loss, grad [B])``."""
    B = values.shape[0]
    grad = np.empty_like(values)
    loss = 0.0
    for i in range(B):
        diff = values[i] - returns[i]
        err = diff * diff
        if not clipped:
            loss += err
            grad[i] = diff * (2.0 * scale / B)
            continue
        delta = values[i] - old_values[i]
        dc = old_values[i] + min(max(delta, -clip_coef), clip_coef) - returns[i]
        err_c = dc * dc
        inside = 1.0 if abs(delta) <= clip_coef else 0.0
        w = 1.0 if err > err_c else (0.0 if err < err_c else 0.5)
        loss += max(err, err_c)
        grad[i] = (w * diff + (1.0 - w) * inside * dc) * (2.0 * scale / B)
    return loss / B, grad


# -- optimiser -------------------------------------------------------------------------------
@_kernel
def clip_grad_norm_(grad, max_norm, clip):  # pragma: no cover - compiled
    """``|g|_2`` (accumulated in float64), then, when ``clip``, ``g *= min(1, max_norm /
    (|g| + 1e-6))`` in place (``torch.nn.utils.clip_grad_norm_``'s factor). Returns the norm
    before clipping."""
    s = 0.0
    for i in range(grad.shape[0]):
        x = np.float64(grad[i])
        s += x * x
    norm = math.sqrt(s)
    if clip and math.isfinite(norm):
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            c = np.float32(coef)
            for i in range(grad.shape[0]):
                grad[i] *= c
    return norm


@_kernel
def adam_step_(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step):  # pragma: no cover
    """One Adam step on flat float32 buffers ``[P]``, in place (Kingma & Ba 2015, Alg. 1):

    m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2,
    theta -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)"""
    w1 = np.float32(1.0 - beta1)
    b2 = np.float32(beta2)
    w2 = np.float32(1.0 - beta2)
    bc2 = np.float32(math.sqrt(1.0 - beta2**step))
    step_size = np.float32(lr / (1.0 - beta1**step))
    e = np.float32(eps)
    for i in range(param.shape[0]):
        g = grad[i]
        m = exp_avg[i] + w1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * b2 + w2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] -= step_size * m / (math.sqrt(v) / bc2 + e)


@_kernel
def rmsprop_step_(param, grad, square_avg, lr, alpha, eps):  # pragma: no cover - compiled
    """One RMSprop step on flat float32 buffers ``[P]``, in place (Tieleman & Hinton 2012;
    ``torch.optim.RMSprop`` without momentum or centering, in its order of operations):

    v = alpha v + (1 - alpha) g^2,   theta -= lr * g / (sqrt(v) + eps)"""
    a = np.float32(alpha)
    w = np.float32(1.0 - alpha)
    step = np.float32(lr)
    e = np.float32(eps)
    for i in range(param.shape[0]):
        g = grad[i]
        v = square_avg[i] * a + w * g * g
        square_avg[i] = v
        param[i] -= step * g / (math.sqrt(v) + e)


# -- advantages ------------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")  # no fastmath: the exact float order
def discounted_returns(rewards, cut_boot, keep, gamma, running, out):  # pragma: no cover
    """:func:`pglab.estimators.discounted_returns`' recursion on numpy arrays ``[T, N]`` of one
    dtype, in its float order: ``G_t = r_t + gamma (cut_boot_t + keep_t G_{t+1})`` with
    ``cut_boot = cut * boot`` and ``keep = 1 - cut``; ``gamma`` of that dtype, ``running`` the
    ``[N]`` zeros to start from."""
    T, N = rewards.shape
    for t in range(T - 1, -1, -1):
        for j in range(N):
            running[j] = rewards[t, j] + gamma * (cut_boot[t, j] + keep[t, j] * running[j])
            out[t, j] = running[j]
    return out


@_kernel
def gae(rewards, values, next_values, terminated, truncated, gamma, gae_lambda):  # pragma: no cover
    """:func:`pglab.estimators.gae` on numpy arrays ``[T, N]`` (see there for the equations):

    delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}"""
    T, N = rewards.shape
    out = np.empty_like(rewards)
    for j in range(N):
        running = 0.0
        for t in range(T - 1, -1, -1):
            boot = 0.0 if terminated[t, j] else gamma * next_values[t, j]
            delta = rewards[t, j] + boot - values[t, j]
            if terminated[t, j] or truncated[t, j]:
                running = 0.0
            running = delta + gamma * gae_lambda * running
            out[t, j] = running
    return out
