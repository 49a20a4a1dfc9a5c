"""Backpropagation through the MLP nets and policy heads, written out by hand.

Why by hand: PPO takes 20 gradient steps on 256 samples every update of the zoo CartPole
preset, and for nets this small autograd's bookkeeping (graph nodes, saved tensors, one
backward kernel per forward op) costs as much as the arithmetic. The chain rule for an MLP is
short enough to write down, and then each step is a handful of matmuls and some elementwise
ops. This is PPO's CPU path (on CUDA it uses autograd): the matmuls go through torch (MKL,
single-threaded as torch was told), everything elementwise through numpy on the same memory,
since a numpy call on arrays this small costs about 1 us where a torch op costs 3-8 us of
dispatch (and torch 2.13's CPU tanh is itself slow, see :func:`pglab.policies.tanh_`).
``python -m pglab bench --only training`` reports what it buys; ``tests/test_backprop.py``
checks every function here against autograd on the same numbers.

Forward, for an ``nn.Sequential`` of Linear layers with tanh or ReLU between them:

    h_0 = x,   z_k = h_{k-1} W_k^T + b_k,   h_k = act(z_k),   out = z_K      (no act on the last)

Backward, given  g_K = dL/d out  ``[B, out]``:

    dL/dW_k = g_k^T h_{k-1},   dL/db_k = sum_b g_k,   g_{k-1} = (g_k W_k) * act'(z_{k-1})

with  tanh' = 1 - h^2  and  relu' = [h > 0], both read from the saved ``h``. The gradients are
*written* (not accumulated) into each parameter's ``.grad``, which for PPO are views of one
flat gradient buffer (:func:`pglab.policies.flat_parameter`).

Heads map the net output to ``log pi(a|s)`` and ``H(pi(.|s))`` and back:

    categorical  log pi(a) = z_a - logsumexp(z);   d log pi(a) / dz = onehot(a) - pi
                 H = -sum_j pi_j log pi_j;          dH/dz_j = -pi_j (log pi_j + H)
    Gaussian     log pi(a) = sum_d -u_d^2/2 - log sigma_d - log(2 pi)/2,  u = (a - mu) / sigma
                 d log pi / d mu = u / sigma;   d log pi / d log sigma = u^2 - 1;   dH/d log sigma = 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from pglab.policies import CategoricalMLP, GaussianMLP, ValueMLP, flat_parameter

_LAYERS = (nn.Linear, nn.Tanh, nn.ReLU)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def tanh_grad_(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``g *= 1 - h^2`` in place: dL/dz from dL/dh for  h = tanh(z)."""
    d = h * h
    np.subtract(1.0, d, out=d)
    g *= d
    return g


@dataclass
class HeadOutput:
    """``log_prob`` and ``entropy`` ``[B]`` of the taken actions, and what backward needs."""

    log_prob: np.ndarray
    entropy: np.ndarray
    saved: tuple[np.ndarray, ...]


def categorical_head(logits: np.ndarray, actions: np.ndarray) -> HeadOutput:
    """``log pi(a|s)`` and ``H`` from logits ``[B, A]`` and integer actions ``[B]``."""
    z = logits - logits.max(-1, keepdims=True)  # log-sum-exp shifted by the max: no overflow
    e = np.exp(z)
    total = e.sum(-1, keepdims=True)
    logp_all = z - np.log(total)
    probs = e / total
    rows = np.arange(len(actions))
    entropy = -(probs * logp_all).sum(-1)
    return HeadOutput(logp_all[rows, actions], entropy, (rows, actions, probs, logp_all))


def categorical_head_backward(
    head: HeadOutput, grad_log_prob: np.ndarray, grad_entropy: float
) -> np.ndarray:
    """dL/d logits ``[B, A]`` from  dL/d log pi(a_b|s_b) = ``grad_log_prob[b]`` and
    dL/dH_b = ``grad_entropy`` (the same for every b; 0 when the entropy is only reported)."""
    rows, actions, probs, logp_all = head.saved
    grad = probs * -grad_log_prob[:, None]  # -pi_j g_b
    grad[rows, actions] += grad_log_prob  # + g_b at j = a_b
    if grad_entropy != 0.0:
        grad -= grad_entropy * probs * (logp_all + head.entropy[:, None])
    return grad


def gaussian_head(mean: np.ndarray, log_std: np.ndarray, actions: np.ndarray) -> HeadOutput:
    """``log pi(a|s)`` and ``H`` of N(mean ``[B, D]``, exp(log_std ``[D]``)^2) at ``[B, D]``."""
    inv_std = np.exp(-log_std)
    u = (actions - mean) * inv_std
    log_prob = (u * u * -0.5 - log_std - _HALF_LOG_2PI).sum(-1)
    entropy = np.full(len(u), (0.5 + _HALF_LOG_2PI + log_std).sum(), dtype=log_prob.dtype)
    return HeadOutput(log_prob, entropy, (u, inv_std))


def gaussian_head_backward(
    head: HeadOutput, grad_log_prob: np.ndarray, grad_entropy: float
) -> tuple[np.ndarray, np.ndarray]:
    """(dL/d mean ``[B, D]``, dL/d log_std ``[D]``) given dL/d log pi ``[B]`` and dL/dH_b."""
    u, inv_std = head.saved
    g = grad_log_prob[:, None]
    grad_mean = g * u * inv_std
    grad_log_std = (g * (u * u - 1.0)).sum(0) + grad_entropy * len(u)
    return grad_mean, grad_log_std


class ActorCriticBackprop:
    """A policy MLP and a value MLP of the same hidden shape, evaluated and differentiated by
    hand as one network (see the module docstring for the equations).

    The hidden layers of the two nets run stacked: one ``baddbmm``/``bmm`` on weights laid out
    ``[2, out, in]`` (actor, critic) does both nets' layer, forward and backward, so every
    hidden-layer op is issued once instead of twice. The stacked weights are not copies: the
    constructor lays every parameter of both nets out in one flat buffer
    (:func:`pglab.policies.flat_parameter`), actor layer k next to critic layer k, and the
    ``[2, out, in]`` stacks are views of the same memory (data and grad) as the modules' own
    parameters. An optimiser over :attr:`flat` updates both nets, and the modules keep working
    unchanged (sampling, checkpoints, diagnostics).

    ``forward(obs, actions)`` -> (log_prob, entropy, values), each ``[B]``;
    ``backward(grad_log_prob, grad_entropy, grad_values)`` writes the gradient of every
    parameter (both nets, and ``log_std`` for the Gaussian) into ``flat.grad``.
    Call both under ``torch.no_grad()`` (the parameters require grad). CPU only.
    """

    def __init__(self, policy: CategoricalMLP | GaussianMLP, value: nn.Module):
        assert self.supports(policy, value)
        a_lin = [m for m in policy.net if isinstance(m, nn.Linear)]
        c_lin = [m for m in value.net if isinstance(m, nn.Linear)]
        self.policy = policy
        self.encode = policy.encode
        self.relu = any(isinstance(m, nn.ReLU) for m in policy.net)
        order: list[nn.Parameter] = []
        for a, c in zip(a_lin[:-1], c_lin[:-1], strict=True):  # hidden: actor, critic adjacent
            order += [a.weight, c.weight, a.bias, c.bias]
        seen = {id(p) for p in order}
        order += [p for m in (policy, value) for p in m.parameters() if id(p) not in seen]
        self.flat = flat_parameter(order)
        self.hidden: list[tuple[nn.Parameter, nn.Parameter]] = []  # ([2, out, in], [2, 1, out])
        offset = 0
        for a in a_lin[:-1]:
            out_f, in_f = a.weight.shape
            w = _flat_view(self.flat, offset, (2, out_f, in_f))
            offset += 2 * out_f * in_f
            b = _flat_view(self.flat, offset, (2, 1, out_f))
            offset += 2 * out_f
            self.hidden.append((w, b))
        self.pi_out, self.v_out = a_lin[-1], c_lin[-1]
        # [x, h_1, ..., h_K]: the stacked input and output of each hidden layer, [2, B, .]
        self._acts: list[Tensor] = []
        self._head: HeadOutput | None = None

    @staticmethod
    def supports(policy: nn.Module, value: nn.Module | None) -> bool:
        """True for a Categorical/Gaussian MLP and a ValueMLP with equal hidden layers, on CPU."""
        if type(policy) not in (CategoricalMLP, GaussianMLP) or type(value) is not ValueMLP:
            return False
        if any(p.device.type != "cpu" for m in (policy, value) for p in m.parameters()):
            return False
        a, c = list(policy.net), list(value.net)
        if policy.encode.n != value.encode.n or len(a) != len(c):
            return False
        if any(type(x) is not type(y) or type(x) not in _LAYERS for x, y in zip(a, c)):
            return False
        return all(
            x.weight.shape == y.weight.shape
            for x, y in zip(a[:-1], c[:-1])
            if isinstance(x, nn.Linear)
        )

    def forward(
        self, obs: Tensor, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(log pi(a|s), H(pi(.|s)), V(s))``, each ``[B]``; saves what backward needs.

        ``obs`` ``[B, ...]`` is a CPU tensor, ``actions`` ``[B]`` / ``[B, D]`` a numpy array."""
        x = self.encode(obs)
        h = x.expand(2, *x.shape)  # actor and critic read the same input
        self._acts = [h]
        for w, b in self.hidden:
            h = torch.baddbmm(b, h, w.transpose(1, 2))
            z = h.numpy()
            if self.relu:
                np.maximum(z, 0.0, out=z)
            else:
                np.tanh(z, out=z)
            self._acts.append(h)
        # The output layers are tiny matmuls ([B, H] x [H, A]): numpy's are 2-3x cheaper here.
        h_pi, h_v = h.numpy()
        out = h_pi @ _np(self.pi_out.weight).T + _np(self.pi_out.bias)
        values = h_v @ _np(self.v_out.weight)[0] + _np(self.v_out.bias)[0]
        if type(self.policy) is CategoricalMLP:
            self._head = categorical_head(out, actions)
        else:
            log_std = self.policy.log_std.detach().numpy()
            self._head = gaussian_head(out, log_std, actions)
        return self._head.log_prob, self._head.entropy, values

    def backward(
        self, grad_log_prob: np.ndarray, grad_entropy: float, grad_values: np.ndarray
    ) -> None:
        """Write dL/dtheta for  dL/d log pi = ``grad_log_prob`` ``[B]``, dL/dH_b =
        ``grad_entropy`` (every b) and dL/dV = ``grad_values`` ``[B]`` of the last forward."""
        head = self._head
        assert head is not None, "forward() first"
        if type(self.policy) is CategoricalMLP:
            grad_out = categorical_head_backward(head, grad_log_prob, grad_entropy)
        else:
            grad_out, grad_log_std = gaussian_head_backward(head, grad_log_prob, grad_entropy)
            self.policy.log_std.grad.numpy()[:] = grad_log_std
        h_pi, h_v = self._acts[-1].numpy()
        np.matmul(grad_out.T, h_pi, out=self.pi_out.weight.grad.numpy())
        np.sum(grad_out, 0, out=self.pi_out.bias.grad.numpy())
        np.matmul(grad_values, h_v, out=self.v_out.weight.grad.numpy()[0])
        self.v_out.bias.grad.numpy()[0] = grad_values.sum()
        if not self.hidden:
            return
        g = torch.empty((2, *h_pi.shape), dtype=self._acts[-1].dtype)
        g_np = g.numpy()
        np.matmul(grad_out, _np(self.pi_out.weight), out=g_np[0])
        np.multiply.outer(grad_values, _np(self.v_out.weight)[0], out=g_np[1])
        for k in range(len(self.hidden) - 1, -1, -1):
            h = self._acts[k + 1].numpy()  # output of hidden layer k: g is dL/dh, make it dL/dz
            if self.relu:
                g_np *= h > 0
            else:
                tanh_grad_(g_np, h)
            w, b = self.hidden[k]
            torch.sum(g, 1, keepdim=True, out=b.grad)  # numpy's strided sum is 2x slower
            if k > 0:
                torch.bmm(g.transpose(1, 2), self._acts[k], out=w.grad)
                g = torch.bmm(g, w)
                g_np = g.numpy()
            else:  # both nets read the same x: x^T g is one matmul ([in, B] @ [2, B, out]),
                # where a bmm over the stride-0 expanded x is four times slower
                w.grad.copy_(torch.matmul(self._acts[0][0].t(), g).transpose(1, 2))


def _np(p: Tensor) -> np.ndarray:
    """A numpy view of a CPU parameter's data (no copy)."""
    return p.detach().numpy()


def _flat_view(flat: nn.Parameter, offset: int, shape: tuple[int, ...]) -> nn.Parameter:
    """A new leaf parameter sharing ``flat``'s storage, data and gradient, at ``offset``."""
    n = math.prod(shape)
    view = nn.Parameter(flat.data[offset : offset + n].view(shape))
    view.grad = flat.grad[offset : offset + n].view(shape)
    return view
