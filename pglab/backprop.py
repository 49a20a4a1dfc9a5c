"""Backpropagation through the MLP nets and policy heads, written out by hand.

Why by hand: PPO takes 20 gradient steps on 256 samples every update of the zoo CartPole
preset, and for nets this small autograd's bookkeeping (graph nodes, saved tensors, one
backward kernel per forward op) costs as much as the arithmetic. The chain rule for an MLP is
short enough to write down, and then each step is a handful of matmuls and some elementwise
ops. This is PPO's CPU path (on CUDA it uses autograd): the matmuls with a hidden dimension
on both sides go through torch (MKL, single-threaded as torch was told), ``tanh`` through
numpy's SIMD ufunc on the same memory, and every other chain of elementwise ops (output
layers, heads, activation derivatives, bias sums) is one compiled kernel of
:mod:`pglab.kernels`, where numpy would issue a dozen calls of 2-15 us each.
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

import numpy as np
import torch
from torch import Tensor, nn

from pglab import kernels
from pglab.policies import CategoricalMLP, GaussianMLP, ValueMLP, flat_parameter

_LAYERS = (nn.Linear, nn.Tanh, nn.ReLU)


class ActorCriticBackprop:
    """A policy MLP and a value MLP of the same hidden shape, evaluated and differentiated by
    hand as one network (see the module docstring for the equations).

    The hidden layers of the two nets run stacked: one ``baddbmm``/``bmm`` on weights laid out
    ``[2, out, in]`` (actor, critic) does both nets' layer, forward and backward, so every
    hidden-layer product is issued once instead of twice. The stacked weights are not copies:
    the constructor lays every parameter of both nets out in one flat buffer
    (:func:`pglab.policies.flat_parameter`), actor layer k next to critic layer k, and the
    ``[2, out, in]`` stacks are views of the same memory (data and grad) as the modules' own
    parameters. An optimiser over :attr:`flat` updates both nets, and the modules keep working
    unchanged (sampling, checkpoints, diagnostics).

    Products with a hidden dimension on both sides go to torch (MKL); the output layers, the
    heads and the activation derivatives are compiled kernels (:mod:`pglab.kernels`).

    ``forward(obs, actions)`` -> (log_prob, entropy, values), each ``[B]``;
    ``backward(grad_log_prob, grad_entropy, grad_values)`` writes the gradient of every
    parameter (both nets, and ``log_std`` for the Gaussian) into ``flat.grad``.
    Call both under ``torch.no_grad()`` (the parameters require grad). CPU only.
    """

    def __init__(self, policy: CategoricalMLP | GaussianMLP, value: nn.Module):
        assert self.supports(policy, value)
        a_lin = [m for m in policy.net if isinstance(m, nn.Linear)]
        c_lin = [m for m in value.net if isinstance(m, nn.Linear)]
        self.encode = policy.encode
        self.categorical = type(policy) is CategoricalMLP
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
        # numpy views (data, grad) of the output layers; the flat buffer never moves
        pi_out, v_out = a_lin[-1], c_lin[-1]
        self.W_pi, self.b_pi = _np(pi_out.weight), _np(pi_out.bias)
        self.w_v, self.b_v = _np(v_out.weight)[0], _np(v_out.bias)
        self.dW_pi, self.db_pi = pi_out.weight.grad.numpy(), pi_out.bias.grad.numpy()
        self.dw_v, self.db_v = v_out.weight.grad.numpy()[0], v_out.bias.grad.numpy()
        self.n_out = pi_out.weight.shape[0]
        if not self.categorical:
            self.log_std, self.d_log_std = _np(policy.log_std), policy.log_std.grad.numpy()
        # [x, h_1, ..., h_K]: the input and the stacked output of each hidden layer, [2, B, .]
        self._acts: list[Tensor] = []
        self._saved: tuple[np.ndarray, ...] = ()

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
        self._acts = [x]
        h_pi = h_v = x.numpy()
        if self.hidden:
            h = x.expand(2, *x.shape)  # actor and critic read the same input
            for w, b in self.hidden:
                h = torch.baddbmm(b, h, w.transpose(1, 2))
                z = h.numpy()
                if self.relu:
                    np.maximum(z, 0.0, out=z)
                else:
                    np.tanh(z, out=z)
                self._acts.append(h)
            h_pi, h_v = h.numpy()
        B = len(h_pi)
        out = np.empty((B, self.n_out), dtype=np.float32)
        values = np.empty(B, dtype=np.float32)
        kernels.output_layers(h_pi, h_v, self.W_pi, self.b_pi, self.w_v, self.b_v, out, values)
        log_prob = np.empty(B, dtype=np.float32)
        entropy = np.empty(B, dtype=np.float32)
        if self.categorical:
            kernels.categorical_head(out, actions, out, log_prob, entropy)  # out: log pi(.|s)
        else:
            kernels.gaussian_head(out, self.log_std, actions, out, log_prob, entropy)  # out: u
        self._saved = (h_pi, h_v, out, entropy, actions)
        return log_prob, entropy, values

    def backward(
        self, grad_log_prob: np.ndarray, grad_entropy: float, grad_values: np.ndarray
    ) -> None:
        """Write dL/dtheta for  dL/d log pi = ``grad_log_prob`` ``[B]``, dL/dH_b =
        ``grad_entropy`` (every b) and dL/dV = ``grad_values`` ``[B]`` of the last forward."""
        assert self._saved, "forward() first"
        h_pi, h_v, saved, entropy, actions = self._saved
        grad_out = np.empty_like(saved)
        if self.categorical:
            kernels.categorical_head_backward(
                saved, entropy, actions, grad_log_prob, grad_entropy, grad_out
            )
        else:
            kernels.gaussian_head_backward(
                saved, self.log_std, grad_log_prob, grad_entropy, grad_out, self.d_log_std
            )
        B, H = h_pi.shape
        g = torch.empty((2, B, H) if self.hidden else (2, 0, 0))
        g_np = g.numpy()
        kernels.output_layers_backward(
            grad_out, grad_values, h_pi, h_v, self.W_pi, self.w_v,
            self.dW_pi, self.db_pi, self.dw_v, self.db_v, g_np[0], g_np[1], bool(self.hidden),
        )  # fmt: skip
        for k in range(len(self.hidden) - 1, -1, -1):
            w, b = self.hidden[k]
            # g is dL/dh_k; make it dL/dz_k and take the bias gradient in the same pass
            kernels.activation_backward(g_np, self._acts[k + 1].numpy(), b.grad.numpy(), self.relu)
            if k > 0:
                torch.bmm(g.transpose(1, 2), self._acts[k], out=w.grad)
                g = torch.bmm(g, w)
                g_np = g.numpy()
            else:  # both nets read the same x: x^T g is one matmul ([in, B] @ [2, B, out]),
                # where a bmm over the stride-0 expanded x is four times slower
                w.grad.copy_(torch.matmul(self._acts[0].t(), g).transpose(1, 2))


def _np(p: Tensor) -> np.ndarray:
    """A numpy view of a CPU parameter's data (no copy)."""
    return p.detach().numpy()


def _flat_view(flat: nn.Parameter, offset: int, shape: tuple[int, ...]) -> nn.Parameter:
    """A new leaf parameter sharing ``flat``'s storage, data and gradient, at ``offset``."""
    n = math.prod(shape)
    view = nn.Parameter(flat.data[offset : offset + n].view(shape))
    view.grad = flat.grad[offset : offset + n].view(shape)
    return view


class MLPBackprop:
    """One MLP (a policy or a value net) evaluated and differentiated by hand, on CPU.

    The same equations as :class:`ActorCriticBackprop` (module docstring) for a single net:
    the algorithms that step the actor and the critic apart (REINFORCE's critic fit after the
    policy step, TRPO's natural-gradient policy step and critic epochs, A2C's autograd-free
    policy-only diagnostics) need one net at a time. The constructor lays the module's
    parameters out in one flat buffer (:func:`pglab.policies.flat_parameter`; data and grad,
    attribute :attr:`flat`) so one fused optimiser step (:class:`pglab.optim.FlatAdam`)
    updates them; the module keeps working unchanged.

    Hidden-layer products go to torch (``addmm``/``mm``, MKL), ``tanh`` to numpy's SIMD ufunc,
    the activation derivatives and the heads to :mod:`pglab.kernels`.

    - ``forward_net(obs)`` -> ``out = net(encode(obs))`` ``[B, out]`` (numpy, saved for backward)
    - ``backward_net(grad_out)`` writes dL/dtheta of every Linear layer for dL/d out ``[B, out]``

    Call both under ``torch.no_grad()``.
    """

    def __init__(self, module: CategoricalMLP | GaussianMLP | ValueMLP):
        assert self.supports(module)
        self.module = module
        self.encode = module.encode
        self.linears = [m for m in module.net if isinstance(m, nn.Linear)]
        self.relu = any(isinstance(m, nn.ReLU) for m in module.net)
        self.flat = flat_parameter(list(module.parameters()))
        self._acts: list[Tensor] = []

    @staticmethod
    def supports(module: nn.Module) -> bool:
        """True for a Categorical/Gaussian/Value MLP (Linear, tanh, ReLU) on CPU."""
        if type(module) not in (CategoricalMLP, GaussianMLP, ValueMLP):
            return False
        if any(p.device.type != "cpu" for p in module.parameters()):
            return False
        return all(type(m) in _LAYERS for m in module.net)

    def forward_net(self, obs: Tensor) -> np.ndarray:
        x = self.encode(obs)
        if x.dtype != torch.float32:
            x = x.float()
        self._acts = [x]
        h = x
        last = len(self.linears) - 1
        for k, lin in enumerate(self.linears):
            h = torch.addmm(lin.bias, h, lin.weight.t())
            if k < last:
                z = h.numpy()
                if self.relu:
                    np.maximum(z, 0.0, out=z)
                else:
                    np.tanh(z, out=z)
                self._acts.append(h)
        return h.numpy()

    def backward_net(self, grad_out: np.ndarray) -> None:
        assert self._acts, "forward first"
        g = torch.from_numpy(np.ascontiguousarray(grad_out, dtype=np.float32))
        last = len(self.linears) - 1
        for k in range(last, -1, -1):
            lin = self.linears[k]
            assert lin.weight.grad is not None and lin.bias.grad is not None
            torch.mm(g.t(), self._acts[k], out=lin.weight.grad)
            if k == last:
                torch.sum(g, 0, out=lin.bias.grad)
            if k > 0:
                g = torch.mm(g, lin.weight)  # dL/dh_k; made dL/dz_k in place, with layer k's bias
                prev_bias = self.linears[k - 1].bias.grad
                assert prev_bias is not None
                kernels.activation_backward(
                    g.numpy()[None], self._acts[k].numpy()[None],
                    prev_bias.numpy().reshape(1, 1, -1), self.relu,
                )  # fmt: skip


class PolicyBackprop(MLPBackprop):
    """:class:`MLPBackprop` for a policy, with its head (module docstring's equations).

    ``forward(obs, actions)`` -> ``(log pi(a|s), H(pi(.|s)))``, each ``[B]`` numpy;
    ``backward(grad_log_prob [B], grad_entropy)`` writes dL/dtheta into ``flat.grad``
    (``log_std`` included for the Gaussian), for dL/dH_b = ``grad_entropy`` for every b."""

    def __init__(self, policy: CategoricalMLP | GaussianMLP):
        super().__init__(policy)
        self.categorical = type(policy) is CategoricalMLP
        if not self.categorical:
            assert isinstance(policy, GaussianMLP)
            self.log_std = _np(policy.log_std)
            assert policy.log_std.grad is not None
            self.d_log_std = policy.log_std.grad.numpy()
        self._saved: tuple[np.ndarray, ...] = ()

    @staticmethod
    def supports(module: nn.Module) -> bool:
        return type(module) in (CategoricalMLP, GaussianMLP) and MLPBackprop.supports(module)

    def forward(self, obs: Tensor, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.forward_net(obs)
        B = len(out)
        log_prob = np.empty(B, dtype=np.float32)
        entropy = np.empty(B, dtype=np.float32)
        if self.categorical:
            kernels.categorical_head(out, actions, out, log_prob, entropy)  # out: log pi(.|s)
        else:
            actions = np.ascontiguousarray(actions, dtype=np.float32)
            kernels.gaussian_head(out, self.log_std, actions, out, log_prob, entropy)  # out: u
        self._saved = (out, entropy, actions)
        return log_prob, entropy

    def _slices(self) -> dict[int, slice]:
        """Where each parameter lies in :attr:`flat` (``id(param) -> slice``)."""
        out, offset = {}, 0
        for p in self.module.parameters():
            out[id(p)] = slice(offset, offset + p.numel())
            offset += p.numel()
        return out

    def jvp(self, v: Tensor) -> Tensor:
        """Forward-mode derivative of the net output along a parameter direction ``v`` ``[P]``
        at the last :meth:`forward` (its saved activations): ``J v`` ``[B, out]``,

            dz_k = dh_{k-1} W_k^T + h_{k-1} dW_k^T + db_k,   dh_k = act'(h_k) * dz_k,   dh_0 = 0
        """
        sl = self._slices()
        dh: Tensor | None = None
        last = len(self.linears) - 1
        for k, lin in enumerate(self.linears):
            dW = v[sl[id(lin.weight)]].view_as(lin.weight)
            db = v[sl[id(lin.bias)]]
            dz = torch.addmm(db, self._acts[k], dW.t())
            if dh is not None:
                dz.addmm_(dh, lin.weight.t())
            if k < last:
                h = self._acts[k + 1]
                dh = dz * (h > 0) if self.relu else dz * (1.0 - h * h)
        return dz

    def fisher_vector_product(self, v: Tensor, dist: np.ndarray) -> Tensor:
        """``F v`` ``[P]`` for the Fisher matrix of the mean over the batch of KL(pi_old || pi),
        F = Hessian of that KL at pi = pi_old = J^T M J / B (TRPO's F), with ``dist`` the old
        policy's ``log pi(.|s)`` ``[B, A]`` (categorical) at the last :meth:`forward`'s
        parameters, or unused (Gaussian):

            categorical  M_b = diag(pi_b) - pi_b pi_b^T     (on the logits)
            Gaussian     M_b = diag(1 / sigma^2) on the mean;  d^2 KL / d log_sigma_d^2 = 2

        Written into ``flat.grad`` and returned as a new tensor."""
        jv = self.jvp(v).numpy()
        B = jv.shape[0]
        if self.categorical:
            p = np.exp(dist)
            pjv = p * jv
            grad_out = (pjv - p * pjv.sum(1, keepdims=True)) / np.float32(B)
        else:
            grad_out = jv * (np.exp(-2.0 * self.log_std) / np.float32(B))
        self.backward_net(grad_out.astype(np.float32, copy=False))
        out = self.flat.grad.clone()
        if not self.categorical:
            ls = self._slices()[id(self.module.log_std)]
            out[ls] = 2.0 * v[ls]
        return out

    def backward(self, grad_log_prob: np.ndarray, grad_entropy: float) -> None:
        assert self._saved, "forward() first"
        saved, entropy, actions = self._saved
        grad_out = np.empty_like(saved)
        grad_log_prob = np.ascontiguousarray(grad_log_prob, dtype=np.float32)
        if self.categorical:
            kernels.categorical_head_backward(
                saved, entropy, actions, grad_log_prob, grad_entropy, grad_out
            )
        else:
            kernels.gaussian_head_backward(
                saved, self.log_std, grad_log_prob, grad_entropy, grad_out, self.d_log_std
            )
        self.backward_net(grad_out)


class ValueBackprop(MLPBackprop):
    """:class:`MLPBackprop` for a :class:`pglab.policies.ValueMLP`: ``forward(obs)`` -> V(s)
    ``[B]``; ``backward(grad_values [B])`` writes dL/dphi for dL/dV = ``grad_values``."""

    @staticmethod
    def supports(module: nn.Module) -> bool:
        return type(module) is ValueMLP and MLPBackprop.supports(module)

    def forward(self, obs: Tensor) -> np.ndarray:
        return self.forward_net(obs)[:, 0]

    def backward(self, grad_values: np.ndarray) -> None:
        self.backward_net(np.asarray(grad_values, dtype=np.float32).reshape(-1, 1))


# Rows x layer size above which segment_grads' per-step outer products get too big (floats);
# past it the caller uses pglab.diagnostics' piecewise version.
SEGMENT_GRADS_MAX_FLOATS = 1 << 22


def categorical_stats_fit(policy: nn.Module, n_segments: int) -> bool:
    """Whether the compiled per-segment gradient statistics take ``policy`` (a categorical MLP
    on CPU) for ``n_segments`` episodes: they hold one row of every parameter per segment."""
    if type(policy) is not CategoricalMLP or not PolicyBackprop.supports(policy):
        return False
    n_params = sum(p.numel() for p in policy.parameters())
    return n_segments * n_params <= SEGMENT_GRADS_MAX_FLOATS


def segment_grads_fit(policy: nn.Module, batch: int) -> bool:
    """Whether :func:`segment_grads` takes ``policy`` (an MLP on CPU) at ``batch`` steps."""
    if not PolicyBackprop.supports(policy):
        return False
    largest = max(m.weight.numel() for m in policy.net if isinstance(m, nn.Linear))
    return batch * largest <= SEGMENT_GRADS_MAX_FLOATS


@torch.no_grad()
def segment_grads(
    policy: CategoricalMLP | GaussianMLP,
    obs: Tensor,
    actions: Tensor,
    weights: Tensor,
    segments: Tensor,
    n_segments: int,
    params: list[nn.Parameter] | None = None,
) -> Tensor:
    """:func:`pglab.diagnostics.grad_samples` for an MLP policy on CPU, by hand:

        g_i = grad_theta sum_{t: segments[t] = i} log pi(a_t|s_t) w_t      -> [m, P]

    in ``policy.parameters()`` order. One forward, the heads' backward with
    dL/d log pi_t = w_t, then per layer the per-step products ``delta_t x_t^T`` summed into
    their segments (``index_add_``); no autograd graph. For A2C's 40-step rollouts this is
    several times cheaper than the general version; it needs ``B x`` (largest layer) floats
    (:func:`segment_grads_fit`). ``tests/test_backprop.py`` checks it against grad_samples."""
    x = policy.encode(obs).float()
    linears = [m for m in policy.net if isinstance(m, nn.Linear)]
    relu = any(isinstance(m, nn.ReLU) for m in policy.net)
    acts = [x]
    h = x
    for k, lin in enumerate(linears):
        h = torch.addmm(lin.bias, h, lin.weight.t())
        if k < len(linears) - 1:
            h = h.relu() if relu else torch.tanh(h)
            acts.append(h)
    out = h.numpy()
    B = out.shape[0]
    w = np.ascontiguousarray(weights.numpy(), dtype=np.float32)
    seg = segments.to(torch.long)
    log_prob = np.empty(B, dtype=np.float32)
    entropy = np.empty(B, dtype=np.float32)
    grad_out = np.empty_like(out)
    rows: dict[int, Tensor] = {}
    if type(policy) is CategoricalMLP:
        a = actions.numpy()
        kernels.categorical_head(out, a, out, log_prob, entropy)
        kernels.categorical_head_backward(out, entropy, a, w, 0.0, grad_out)
    else:
        assert isinstance(policy, GaussianMLP)
        log_std = _np(policy.log_std)
        a = np.ascontiguousarray(actions.numpy(), dtype=np.float32)
        kernels.gaussian_head(out, log_std, a, out, log_prob, entropy)  # out: u
        grad_out = w[:, None] * out * np.exp(-log_std)  # d log pi / d mu, weighted
        per_step = torch.from_numpy(w[:, None] * (out * out - 1.0))  # d / d log_std
        rows[id(policy.log_std)] = torch.zeros(n_segments, per_step.shape[1]).index_add_(
            0, seg, per_step
        )
    g = torch.from_numpy(grad_out)
    for k in range(len(linears) - 1, -1, -1):
        lin = linears[k]
        per_w = g.unsqueeze(2) * acts[k].unsqueeze(1)  # [B, out, in]
        rows[id(lin.weight)] = torch.zeros(n_segments, *lin.weight.shape).index_add_(0, seg, per_w)
        rows[id(lin.bias)] = torch.zeros(n_segments, lin.bias.shape[0]).index_add_(0, seg, g)
        if k > 0:
            g = g @ lin.weight
            hk = acts[k]
            g = g * (hk > 0) if relu else g * (1.0 - hk * hk)
    order = list(policy.parameters()) if params is None else params  # params: cached order
    return torch.cat([rows[id(p)].reshape(n_segments, -1) for p in order], dim=1)


def policy_grad_diagnostics(
    policy: nn.Module,
    obs: Tensor,
    actions: Tensor,
    weights: Tensor,
    segments: Tensor,
    n_segments: int,
    fits: bool | None = None,
    params: list[nn.Parameter] | None = None,
) -> dict[str, float]:
    """:func:`pglab.diagnostics.policy_grad_diagnostics` (``diag/grad_var``, ``diag/grad_snr``)
    with the samples from :func:`segment_grads` where it fits, else from the general version.
    ``fits`` (:func:`segment_grads_fit`) and ``params`` (``list(policy.parameters())``) may be
    passed in, computed once by the caller: both walk the module tree, a cost per call."""
    from pglab import diagnostics

    if type(policy) is CategoricalMLP and categorical_stats_fit(policy, n_segments):
        # compiled, without the per-step outer products: the batch's size does not matter
        variance, snr = _categorical_grad_stats(policy, obs, actions, weights, segments, n_segments)
        stats: dict[str, float | Tensor] = {"variance": variance, "snr": snr}
    else:
        if fits is None:
            fits = segment_grads_fit(policy, int(obs.shape[0]))
        if not fits:
            return diagnostics.policy_grad_diagnostics(
                policy, obs, actions, weights, segments, n_segments
            )
        assert isinstance(policy, CategoricalMLP | GaussianMLP)
        samples = segment_grads(policy, obs, actions, weights, segments, n_segments, params)
        stats = diagnostics.grad_stats(samples)
    out: dict[str, float] = {}
    if math.isfinite(stats["variance"]):
        out["diag/grad_var"] = float(stats["variance"])
    if math.isfinite(stats["snr"]):
        out["diag/grad_snr"] = float(stats["snr"])
    return out


def _categorical_grad_stats(
    policy: CategoricalMLP,
    obs: Tensor,
    actions: Tensor,
    weights: Tensor,
    segments: Tensor,
    n_segments: int,
) -> tuple[float, float]:
    """(variance, snr) of :func:`segment_grads`' samples, by
    :func:`pglab.fastppo.categorical_segment_grad_stats` (one compiled call)."""
    from pglab.fastppo import categorical_segment_grad_stats

    linears = [m for m in policy.net if isinstance(m, nn.Linear)]
    relu = any(isinstance(m, nn.ReLU) for m in policy.net)
    x = np.ascontiguousarray(policy.encode(obs).numpy(), dtype=np.float32)
    return categorical_segment_grad_stats(
        x,
        tuple(np.ascontiguousarray(_np(m.weight)) for m in linears),
        tuple(np.ascontiguousarray(_np(m.bias)) for m in linears),
        relu,
        np.ascontiguousarray(actions.numpy()),
        np.ascontiguousarray(weights.numpy(), dtype=np.float32),
        np.ascontiguousarray(segments.numpy()),
        int(n_segments),
    )
