"""Policies and value functions.

Every policy maps a batch of observations ``[B, obs_dim]`` to a ``torch.distributions``
object over actions, so estimators and algorithms only need ``log_prob`` and ``entropy``.

- :class:`CategoricalMLP`: Discrete actions, logits from an MLP.
- :class:`GaussianMLP`: 1-D Box actions, mean from an MLP, state-independent ``log_std``.
- :class:`ValueMLP`: state value ``V(s)``, ``[B, obs_dim] -> [B]``.
- Tabular and linear-feature softmax policies for finite MDPs live in :mod:`pglab.exact`'s
  neighbourhood (see ``TabularSoftmax`` / ``LinearSoftmax`` below).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from pglab import kernels
from pglab.envs import obs_dim

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(
    in_dim: int, out_dim: int, hidden_size: int, n_layers: int, activation: str, out_gain: float
) -> nn.Sequential:
    """MLP with orthogonal init (gain sqrt(2) hidden, ``out_gain`` last), zero biases.

    Orthogonal init with a small last-layer gain is the PPO-implementation-details default
    (Huang et al. 2022, https://iclr-blog-track.github.io/2022/03/25/ppo-implementation-details/).
    """
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_layers):
        lin = nn.Linear(d, hidden_size)
        nn.init.orthogonal_(lin.weight, math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, ACTIVATIONS[activation]()]
        d = hidden_size
    out = nn.Linear(d, out_dim)
    nn.init.orthogonal_(out.weight, out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


def tanh_(z: torch.Tensor) -> torch.Tensor:
    """``tanh`` in place, outside autograd. On CPU through numpy's ufunc on the same memory:
    torch 2.13's CPU tanh is several times slower than numpy's on this kind of machine (84 vs
    12 us for [2, 256, 64] on the 2-core AMD EPYC used for the benchmarks)."""
    if z.device.type == "cpu" and z.is_contiguous():
        a = z.numpy()
        np.tanh(a, out=a)
        return z
    return z.tanh_()


@torch.no_grad()
def mlp_predict(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for an MLP of Linear and Tanh/ReLU layers, without autograd: ``addmm`` and
    in-place activations (:func:`tanh_`). ``x`` is ``[B, in]``."""
    h = x
    for m in net:
        if isinstance(m, nn.Linear):
            h = torch.addmm(m.bias, h, m.weight.t())
        elif isinstance(m, nn.Tanh):
            h = tanh_(h)
        else:
            h = h.relu_()
    return h


class ObsEncoder(nn.Module):
    """Discrete observations -> one-hot floats; Box observations -> float32 unchanged."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.n = int(space.n) if isinstance(space, spaces.Discrete) else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.n is not None:
            # A comparison rather than F.one_hot: it also works under torch.func.vmap, which
            # the per-episode gradient diagnostic uses.
            idx = obs.long().unsqueeze(-1)  # [...] -> [..., n], leading dims kept
            return (idx == torch.arange(self.n, device=obs.device)).float()
        return obs.float()


class CategoricalMLP(nn.Module):
    """pi(a|s) = softmax(f_theta(s))_a for Discrete action spaces."""

    discrete = True

    def __init__(self, obs_space, n_actions, hidden_size=64, n_layers=2, activation="tanh"):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.net = mlp(obs_dim(obs_space), n_actions, hidden_size, n_layers, activation, 0.01)

    def forward(self, obs: torch.Tensor) -> Distribution:
        return Categorical(logits=self.net(self.encode(obs)))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.encode(obs)).argmax(-1)


class GaussianMLP(nn.Module):
    """pi(a|s) = N(mu_theta(s), exp(log_std)^2), ``log_std`` a learned state-independent vector.

    Actions are sampled unbounded; the rollout clips them to the Box before stepping the env,
    while log-probabilities are of the unclipped sample (as in SB3 and CleanRL).
    """

    discrete = False

    def __init__(
        self, obs_space, act_dim, hidden_size=64, n_layers=2, activation="tanh", log_std_init=0.0
    ):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.net = mlp(obs_dim(obs_space), act_dim, hidden_size, n_layers, activation, 0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> Distribution:
        mean = self.net(self.encode(obs))
        return Normal(mean, self.log_std.exp().expand_as(mean))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.encode(obs))


def log_prob(dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) summed over action dimensions: ``[B]`` for both policy kinds."""
    lp = dist.log_prob(actions)
    return lp.sum(-1) if isinstance(dist, Normal) else lp


def entropy(dist: Distribution) -> torch.Tensor:
    """Entropy per state ``[B]`` (summed over action dimensions for the Gaussian)."""
    ent = dist.entropy()
    return ent.sum(-1) if isinstance(dist, Normal) else ent


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def head_log_prob_entropy(
    policy: CategoricalMLP | GaussianMLP,
    out: torch.Tensor,
    actions: torch.Tensor,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log pi(a|s)`` and ``H(pi(.|s))``, both ``[B]``, from the MLP output ``out = net(x)``.

    The values of :func:`log_prob` / :func:`entropy` on ``policy(obs)`` without building a
    distribution object (about 150 us a call, on the hot path of every minibatch):
    categorical  log pi = log_softmax(out)_a,  H = -sum_a pi_a log pi_a;
    Gaussian     log pi = sum_d -z_d^2/2 - log sigma_d - log(2 pi)/2,  z = (a - mu) / sigma,
                 H = sum_d 1/2 + log(2 pi)/2 + log sigma_d.
    With ``entropy_grad`` false the entropy is computed outside autograd (it is only reported).
    """
    if type(policy) is CategoricalMLP:
        logp_all = torch.log_softmax(out, -1)
        lp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        if not entropy_grad:
            logp_all = logp_all.detach()
        return lp, -(logp_all.exp() * logp_all).sum(-1)
    log_std = policy.log_std
    z = (actions - out) * torch.exp(-log_std)
    lp = (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)
    if not entropy_grad:
        log_std = log_std.detach()
    ent = (0.5 + _HALF_LOG_2PI + log_std).sum().expand(lp.shape)
    return lp, ent


class ValueMLP(nn.Module):
    """V_phi(s): ``[B, obs_dim] -> [B]``."""

    def __init__(self, obs_space, hidden_size=64, n_layers=2, activation="tanh"):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.net = mlp(obs_dim(obs_space), 1, hidden_size, n_layers, activation, 1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.encode(obs)).squeeze(-1)

    def predict(self, obs: torch.Tensor) -> torch.Tensor:
        """``forward(obs)`` without autograd, for observations ``[..., *obs_shape]`` (leading
        dimensions kept); for the value estimates of a rollout (see :func:`mlp_predict`)."""
        x = self.encode(obs)
        lead = x.shape[:-1]
        return mlp_predict(self.net, x.reshape(-1, x.shape[-1])).reshape(lead)


def make_policy(
    obs_space: gym.Space,
    act_space: gym.Space,
    hidden_size: int = 64,
    n_layers: int = 2,
    activation: str = "tanh",
    log_std_init: float = 0.0,
) -> CategoricalMLP | GaussianMLP:
    """The MLP policy that fits ``act_space`` (Discrete -> categorical, 1-D Box -> Gaussian)."""
    if isinstance(act_space, spaces.Discrete):
        return CategoricalMLP(obs_space, int(act_space.n), hidden_size, n_layers, activation)
    if isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
        return GaussianMLP(
            obs_space, act_space.shape[0], hidden_size, n_layers, activation, log_std_init
        )
    raise ValueError(f"action space {act_space} is not supported (Discrete or 1-D Box)")


class TabularSoftmax(nn.Module):
    """pi(a|s) = softmax(theta[s])_a for Discrete observations; ``theta`` is ``[n_obs, n_actions]``.

    Zero init is the uniform policy. Observations are indices ``[B]`` (any integer dtype).
    """

    discrete = True

    def __init__(self, n_obs: int, n_actions: int, theta: torch.Tensor | None = None):
        super().__init__()
        init = torch.zeros(n_obs, n_actions) if theta is None else torch.as_tensor(theta).float()
        if init.shape != (n_obs, n_actions):
            raise ValueError(f"theta: shape {tuple(init.shape)} != ({n_obs}, {n_actions})")
        self.theta = nn.Parameter(init.clone())

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.theta[obs.long().reshape(-1)]

    def forward(self, obs: torch.Tensor) -> Distribution:
        return Categorical(logits=self.logits(obs))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs).argmax(-1)


class LinearSoftmax(nn.Module):
    """pi(a|s) = softmax_a(theta . x(s, a)) with fixed state-action features ``x``.

    ``features`` is ``[n_obs, n_actions, d]`` (Sutton & Barto 2018, eq. 13.3); observations are
    indices ``[B]``. ``theta`` is ``[d]``, zero by default (the uniform policy).
    """

    discrete = True

    def __init__(self, features: torch.Tensor, theta: torch.Tensor | None = None):
        super().__init__()
        features = torch.as_tensor(features).float()
        if features.dim() != 3:
            raise ValueError(f"features: need [n_obs, n_actions, d], got {tuple(features.shape)}")
        self.register_buffer("features", features.clone())
        d = features.shape[-1]
        init = torch.zeros(d) if theta is None else torch.as_tensor(theta).float()
        if init.shape != (d,):
            raise ValueError(f"theta: shape {tuple(init.shape)} != ({d},)")
        self.theta = nn.Parameter(init.clone())

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.features[obs.long().reshape(-1)] @ self.theta

    def forward(self, obs: torch.Tensor) -> Distribution:
        return Categorical(logits=self.logits(obs))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs).argmax(-1)


def flat_parameter(params: list[nn.Parameter]) -> nn.Parameter:
    """Put ``params`` (and their gradients) into one contiguous buffer, in the order given.

    Returns a flat ``nn.Parameter`` ``[P]`` whose ``.grad`` ``[P]`` is the matching flat
    gradient buffer; each parameter becomes a view of the first and its ``.grad`` a view of
    the second, so backward accumulates straight into the flat gradient. Never zero the
    parameters' gradients with ``set_to_none=True``: that would cut them loose from the buffer.
    """
    with torch.no_grad():
        flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat.data[offset : offset + n].view_as(p)
        p.grad = flat.grad[offset : offset + n].view_as(p)
        offset += n
    return flat


class NumpyActor:
    """Sample actions from a :class:`CategoricalMLP` / :class:`GaussianMLP` with numpy, on CPU.

    A rollout step is one policy forward on a handful of observations and one env step. For
    inputs that small torch's per-op dispatch dominates (about 100 us a step, interleaved with
    the env), while the same arithmetic in numpy takes about 30 us: the largest single cost of
    a PPO rollout on CartPole besides the env. The weights are zero-copy numpy views of the
    torch parameters, checked at every call, so optimiser steps, checkpoint loads and TRPO's
    parameter assignment all show through. Sampling is the torch path's, noise included:
    categorical by Gumbel-max  a = argmax_a (log pi(a|s) + G_a)  (the softmax and the argmax
    in one compiled kernel, :func:`pglab.kernels.categorical_sample`), Gaussian
    a = mu + sigma eps.
    ``tests/test_ppo.py`` checks it against ``torch.distributions`` and the torch path.
    """

    def __init__(self, policy: CategoricalMLP | GaussianMLP):
        assert self.supports(policy)
        self.policy = policy
        self.params = [
            p for m in policy.net if isinstance(m, nn.Linear) for p in (m.weight, m.bias)
        ]
        if isinstance(policy, GaussianMLP):
            self.params.append(policy.log_std)
        self.relu = any(isinstance(m, nn.ReLU) for m in policy.net)
        self._ptrs: tuple[int, ...] = ()
        self._arrays: list[np.ndarray] = []

    @staticmethod
    def supports(policy: nn.Module) -> bool:
        """MLP policies (Linear layers with tanh or ReLU between them) whose weights are on CPU."""
        return (
            type(policy) in (CategoricalMLP, GaussianMLP)
            and all(isinstance(m, (nn.Linear, nn.Tanh, nn.ReLU)) for m in policy.net)
            and all(p.device.type == "cpu" for p in policy.parameters())
        )

    def weights(self) -> list[np.ndarray]:
        """Numpy views of the parameters (W_1, b_1, ..., W_K, b_K[, log_std]).

        Rebuilt only when a parameter's storage moved (TRPO's ``vector_to_parameters`` swaps
        ``.data``); a view keeps its storage alive, so a moved one always has a new address.
        """
        ptrs = tuple(p.data_ptr() for p in self.params)
        if ptrs != self._ptrs:
            self._arrays = [p.detach().numpy() for p in self.params]
            self._ptrs = ptrs
        return self._arrays

    def sample(self, obs: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions ``[B]`` (int64) or ``[B, D]`` (float32) and log pi(a|s) ``[B]`` (float32)
        for observations ``[B, ...]`` (float32; Discrete observations as indices).

        ``noise`` is what the torch path (:meth:`pglab.algos.base.Trainer.sample_actions`)
        uses: uniforms ``[B, A]`` for the categorical's Gumbel-max, normals ``[B, D]`` for the
        Gaussian (:meth:`pglab.algos.base.Trainer.draw_noise`), so from the same noise both
        paths draw the same actions.
        """
        if self.policy.encode.n is not None:
            h = np.eye(self.policy.encode.n, dtype=np.float32)[obs.astype(np.int64)]
        else:
            h = obs
        arrays = self.weights()
        last = len(self.params) // 2 - 1
        for k in range(last + 1):
            h = h @ arrays[2 * k].T
            h += arrays[2 * k + 1]
            if k < last:
                if self.relu:
                    np.maximum(h, 0.0, out=h)
                else:
                    np.tanh(h, out=h)
        log_prob = np.empty(len(h), dtype=np.float32)
        if type(self.policy) is CategoricalMLP:
            actions = np.empty(len(h), dtype=np.int64)
            kernels.categorical_sample(h, noise, actions, log_prob)
            return actions, log_prob
        log_std = arrays[-1]
        actions = h + np.exp(log_std) * noise
        log_prob = (-0.5 * noise * noise - log_std - _HALF_LOG_2PI).sum(-1)
        return actions, log_prob


def linear_param_count(obs_space: gym.Space, act_space: gym.Space) -> int:
    """Parameters of the ``n_layers=0`` policy :func:`make_policy` builds: a linear policy on Box
    observations, a tabular one (with a shared bias) on one-hot Discrete observations.

    Order (that of ``policy.parameters()`` and of the trainers' flat buffers): the output
    layer's weight ``[A, obs_dim]`` row by row, its bias ``[A]``, then ``log_std`` ``[A]`` for
    a Box action space.
    """
    n_out = int(act_space.n) if isinstance(act_space, spaces.Discrete) else int(act_space.shape[0])
    extra = 0 if isinstance(act_space, spaces.Discrete) else n_out
    return n_out * obs_dim(obs_space) + n_out + extra


def parse_init_params(name: str, value: str | list | tuple) -> tuple[float, ...]:
    """``"0.5, -1, 2"`` or ``[0.5, -1, 2]`` -> ``(0.5, -1.0, 2.0)``; ``ValueError`` naming
    ``name`` for anything that is not a non-empty list of finite numbers."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for k, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ValueError(f"{name}: item {k} ({item!r:.40}) is not a number (finite numbers)")
        try:
            x = float(item)
        except (ValueError, OverflowError):
            raise ValueError(
                f"{name}: item {k} ({str(item).strip()!r:.40}) is not a number (finite numbers)"
            ) from None
        if not math.isfinite(x):
            raise ValueError(f"{name}: item {k} is {x!r}; only finite numbers are allowed")
        out.append(x)
    if not out:
        raise ValueError(f"{name}: no numbers given (comma-separated finite numbers)")
    return tuple(out)
