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
