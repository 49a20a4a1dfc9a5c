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
import torch
from gymnasium import spaces
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

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


_ACTS = (nn.Tanh, nn.ReLU)


class FusedActorCritic:
    """An MLP policy and a :class:`ValueMLP` of the same shape, evaluated as one network.

    PPO evaluates both nets on the same minibatch 20 times an update. Here the hidden layers
    of the two nets run as one batched matmul each (``torch.baddbmm`` on weights stacked to
    ``[2, out, in]``): half the ops of two separate passes, forward and backward (about 12%
    less time for the zoo CartPole nets, where tanh and the matmuls themselves dominate).
    The outputs equal ``policy.net(x)`` and ``value(x)`` and the gradients theirs up to
    float rounding (``tests/test_ppo.py`` checks both).

    The stacked weights are not copies: the constructor lays every parameter of both nets
    out in one flat buffer (:func:`flat_parameter`), actor layer k next to critic layer k,
    and the stacked ``[2, out, in]`` leaves are views of the same memory (data and grad) as
    the modules' own parameters. An optimiser over :attr:`flat` updates both, gradients of
    the fused pass land in ``flat.grad``, and the modules keep working unchanged (sampling,
    checkpoints). Use :meth:`supports` first; other policies take the plain path.
    """

    def __init__(self, policy: nn.Module, value: nn.Module):
        assert self.supports(policy, value)
        a_lin = [m for m in policy.net if isinstance(m, nn.Linear)]
        c_lin = [m for m in value.net if isinstance(m, nn.Linear)]
        self.encode = policy.encode
        self.act = torch.relu if any(isinstance(m, nn.ReLU) for m in policy.net) else torch.tanh
        order: list[nn.Parameter] = []
        for a, c in zip(a_lin[:-1], c_lin[:-1], strict=True):  # hidden: actor, critic adjacent
            order += [a.weight, c.weight, a.bias, c.bias]
        seen = {id(p) for p in order}
        order += [p for m in (policy, value) for p in m.parameters() if id(p) not in seen]
        self.flat = flat_parameter(order)
        self.hidden: list[tuple[nn.Parameter, nn.Parameter]] = []
        offset = 0
        for a in a_lin[:-1]:
            out_f, in_f = a.weight.shape
            w = _flat_view(self.flat, offset, (2, out_f, in_f))
            offset += 2 * out_f * in_f
            b = _flat_view(self.flat, offset, (2, 1, out_f))
            offset += 2 * out_f
            self.hidden.append((w, b))
        self.pi_out, self.v_out = a_lin[-1], c_lin[-1]

    @staticmethod
    def supports(policy: nn.Module, value: nn.Module | None) -> bool:
        """True for a Categorical/Gaussian MLP and a ValueMLP with equal hidden layers."""
        if type(policy) not in (CategoricalMLP, GaussianMLP) or type(value) is not ValueMLP:
            return False
        return policy.encode.n == value.encode.n and _same_hidden(list(policy.net), list(value.net))

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(policy.net(x) [B, out], value(x) [B])`` for observations ``[B, ...]``, with grad."""
        x = self.encode(obs)
        h = x.expand(2, *x.shape)  # actor and critic read the same input
        for w, b in self.hidden:
            h = self.act(torch.baddbmm(b, h, w.transpose(1, 2)))
        h_pi, h_v = h.unbind(0)
        out = nn.functional.linear(h_pi, self.pi_out.weight, self.pi_out.bias)
        values = nn.functional.linear(h_v, self.v_out.weight, self.v_out.bias)
        return out, values.squeeze(-1)


def _flat_view(flat: nn.Parameter, offset: int, shape: tuple[int, ...]) -> nn.Parameter:
    """A new leaf parameter sharing ``flat``'s storage, data and gradient, at ``offset``."""
    n = math.prod(shape)
    view = nn.Parameter(flat.data[offset : offset + n].view(shape))
    view.grad = flat.grad[offset : offset + n].view(shape)
    return view


def _same_hidden(a: list[nn.Module], c: list[nn.Module]) -> bool:
    """Layer lists of equal length and types whose hidden Linear layers have equal shapes."""
    if len(a) != len(c) or any(type(x) is not type(y) for x, y in zip(a, c)):
        return False
    if any(type(x) not in (nn.Linear, *_ACTS) for x in a):
        return False
    return all(
        x.weight.shape == y.weight.shape for x, y in zip(a[:-1], c[:-1]) if isinstance(x, nn.Linear)
    )
