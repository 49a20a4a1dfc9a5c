"""Backpropagation through the MLP nets and policy heads, written out by hand.

Why by hand: PPO takes 20 gradient steps on 256 samples every update of the zoo CartPole
preset, and for nets this small autograd's bookkeeping (graph nodes, saved tensors, one
backward kernel per forward op) costs as much as the arithmetic. The chain rule for an MLP is
short enough to write down, and then each step is a dozen matmuls and a few elementwise ops
(``python -m pglab bench --only training`` reports what it buys). ``tests/test_backprop.py``
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

from pglab.policies import CategoricalMLP, GaussianMLP, ValueMLP, flat_parameter, tanh_

_LAYERS = (nn.Linear, nn.Tanh, nn.ReLU)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def tanh_grad_(g: Tensor, h: Tensor) -> Tensor:
    """``g *= 1 - h^2`` in place: dL/dz from dL/dh for  h = tanh(z). On CPU through numpy
    (three cheap ufuncs where torch's ``addcmul`` alone takes longer, see :func:`tanh_`)."""
    if g.device.type == "cpu" and g.is_contiguous() and h.is_contiguous():
        g_np, h_np = g.numpy(), h.numpy()
        d = h_np * h_np
        np.subtract(1.0, d, out=d)
        g_np *= d
        return g
    return g.mul_(1.0 - h * h)


@dataclass
class HeadOutput:
    """``log_prob`` and ``entropy`` ``[B]`` of the taken actions, and what backward needs."""

    log_prob: Tensor
    entropy: Tensor
    saved: tuple[Tensor, ...]


def categorical_head(logits: Tensor, actions: Tensor) -> HeadOutput:
    """``log pi(a|s)`` and ``H`` from logits ``[B, A]`` and actions ``[B]`` (integers)."""
    logp_all = torch.log_softmax(logits, -1)
    idx = actions.long().unsqueeze(-1)
    log_prob = logp_all.gather(-1, idx).squeeze(-1)
    probs = logp_all.exp()
    entropy = -(probs * logp_all).sum(-1)
    return HeadOutput(log_prob, entropy, (idx, probs, logp_all))


def categorical_head_backward(
    head: HeadOutput, grad_log_prob: Tensor, grad_entropy: float
) -> Tensor:
    """dL/d logits ``[B, A]`` from  dL/d log pi(a_b|s_b) = ``grad_log_prob[b]`` and
    dL/dH_b = ``grad_entropy`` (the same for every b; 0 when the entropy is only reported)."""
    idx, probs, logp_all = head.saved
    grad = probs * grad_log_prob.neg().unsqueeze(-1)  # -pi_j g_b
    grad.scatter_add_(1, idx, grad_log_prob.unsqueeze(-1))  # + g_b at j = a_b
    if grad_entropy != 0.0:
        grad.addcmul_(probs, logp_all + head.entropy.unsqueeze(-1), value=-grad_entropy)
    return grad


def gaussian_head(mean: Tensor, log_std: Tensor, actions: Tensor) -> HeadOutput:
    """``log pi(a|s)`` and ``H`` of N(mean ``[B, D]``, exp(log_std ``[D]``)^2) at ``[B, D]``."""
    inv_std = torch.exp(-log_std)
    u = (actions - mean) * inv_std
    log_prob = (u * u * -0.5 - log_std - _HALF_LOG_2PI).sum(-1)
    entropy = (0.5 + _HALF_LOG_2PI + log_std).sum().expand(log_prob.shape)
    return HeadOutput(log_prob, entropy, (u, inv_std))


def gaussian_head_backward(
    head: HeadOutput, grad_log_prob: Tensor, grad_entropy: float
) -> tuple[Tensor, Tensor]:
    """(dL/d mean ``[B, D]``, dL/d log_std ``[D]``) given dL/d log pi ``[B]`` and dL/dH_b."""
    u, inv_std = head.saved
    g = grad_log_prob.unsqueeze(-1)
    grad_mean = g * u * inv_std
    grad_log_std = (g * (u * u - 1.0)).sum(0) + grad_entropy * u.shape[0]
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
    Call both under ``torch.no_grad()`` (the parameters require grad).
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
        """True for a Categorical/Gaussian MLP and a ValueMLP with equal hidden layers."""
        if type(policy) not in (CategoricalMLP, GaussianMLP) or type(value) is not ValueMLP:
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

    def forward(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(log pi(a|s), H(pi(.|s)), V(s))``, each ``[B]``; saves what backward needs."""
        x = self.encode(obs)
        h = x.expand(2, *x.shape)  # actor and critic read the same input
        self._acts = [h]
        for w, b in self.hidden:
            z = torch.baddbmm(b, h, w.transpose(1, 2))
            h = z.relu_() if self.relu else tanh_(z)
            self._acts.append(h)
        h_pi, h_v = h.unbind(0)
        out = torch.addmm(self.pi_out.bias, h_pi, self.pi_out.weight.t())
        values = torch.addmm(self.v_out.bias, h_v, self.v_out.weight.t()).squeeze(-1)
        if type(self.policy) is CategoricalMLP:
            self._head = categorical_head(out, actions)
        else:
            self._head = gaussian_head(out, self.policy.log_std, actions)
        return self._head.log_prob, self._head.entropy, values

    def backward(self, grad_log_prob: Tensor, grad_entropy: float, grad_values: Tensor) -> None:
        """Write dL/dtheta for  dL/d log pi = ``grad_log_prob`` ``[B]``, dL/dH_b =
        ``grad_entropy`` (every b) and dL/dV = ``grad_values`` ``[B]`` of the last forward."""
        head = self._head
        assert head is not None, "forward() first"
        if type(self.policy) is CategoricalMLP:
            grad_out = categorical_head_backward(head, grad_log_prob, grad_entropy)
        else:
            grad_out, grad_log_std = gaussian_head_backward(head, grad_log_prob, grad_entropy)
            self.policy.log_std.grad.copy_(grad_log_std)
        grad_v = grad_values.unsqueeze(-1)  # [B, 1]
        h_pi, h_v = self._acts[-1].unbind(0)
        torch.mm(grad_out.t(), h_pi, out=self.pi_out.weight.grad)
        torch.sum(grad_out, 0, out=self.pi_out.bias.grad)
        torch.mm(grad_v.t(), h_v, out=self.v_out.weight.grad)
        torch.sum(grad_v, 0, out=self.v_out.bias.grad)
        if not self.hidden:
            return
        g = torch.empty((2, *h_pi.shape), dtype=h_pi.dtype, device=h_pi.device)
        torch.mm(grad_out, self.pi_out.weight, out=g[0])
        torch.mm(grad_v, self.v_out.weight, out=g[1])
        for k in range(len(self.hidden) - 1, -1, -1):
            h = self._acts[k + 1]  # output of hidden layer k: g holds dL/dh, make it dL/dz
            if self.relu:
                g.masked_fill_(h <= 0, 0.0)
            else:
                tanh_grad_(g, h)
            w, b = self.hidden[k]
            torch.sum(g, 1, keepdim=True, out=b.grad)
            if k > 0:
                torch.bmm(g.transpose(1, 2), self._acts[k], out=w.grad)
                g = torch.bmm(g, w)
            else:  # both nets read the same x: x^T g is one matmul ([in, B] @ [2, B, out]),
                # where a bmm over the stride-0 expanded x is four times slower
                w.grad.copy_(torch.matmul(self._acts[0][0].t(), g).transpose(1, 2))


def _flat_view(flat: nn.Parameter, offset: int, shape: tuple[int, ...]) -> nn.Parameter:
    """A new leaf parameter sharing ``flat``'s storage, data and gradient, at ``offset``."""
    n = math.prod(shape)
    view = nn.Parameter(flat.data[offset : offset + n].view(shape))
    view.grad = flat.grad[offset : offset + n].view(shape)
    return view
