"""Exact J and gradients of finite MDPs: finite differences, values, the short corridor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from pglab.corridor import ShortCorridorEnv
from pglab.envs import SHORT_CORRIDOR_ID
from pglab.exact import (
    exact_gradient,
    exact_J,
    exact_values,
    frozenlake_mdp,
    short_corridor_curve,
    short_corridor_J,
    short_corridor_mdp,
    short_corridor_optimum,
)
from pglab.policies import CategoricalMLP, LinearSoftmax, TabularSoftmax


def _fd_grad(mdp, policy, eps=1e-5):
    out = []
    for p in policy.parameters():
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + eps
            jp = float(exact_J(mdp, policy).detach())
            flat[i] = old - eps
            jm = float(exact_J(mdp, policy).detach())
            flat[i] = old
            out.append((jp - jm) / (2 * eps))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("slippery", [True, False])
def test_frozenlake_exact_gradient_equals_finite_differences(slippery):
    mdp = frozenlake_mdp(slippery, gamma=0.95, horizon=30)
    torch.manual_seed(0)
    policy = TabularSoftmax(mdp.n_obs, 4, torch.randn(mdp.n_obs, 4)).double()
    J, g = exact_gradient(mdp, policy)
    assert J > 0
    assert torch.allclose(g, _fd_grad(mdp, policy), atol=1e-8, rtol=1e-5)
    assert float(g.norm()) > 1e-4  # not trivially zero


def test_mlp_and_linear_exact_gradient_equal_finite_differences():
    mdp = frozenlake_mdp(True, gamma=0.9, horizon=20)
    torch.manual_seed(1)
    # the MLP encodes observations in float32, so finite differences are coarser here
    mlp = CategoricalMLP(spaces.Discrete(mdp.n_obs), 4, hidden_size=4, n_layers=1)
    _, g = exact_gradient(mdp, mlp)
    fd = _fd_grad(mdp, mlp, eps=1e-2)
    assert float((g - fd).norm()) < 1e-2 * float(g.norm())
    corridor = short_corridor_mdp()
    lin = LinearSoftmax(
        torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.tensor([0.3, -0.2])
    ).double()
    _, g = exact_gradient(corridor, lin)
    assert torch.allclose(g, _fd_grad(corridor, lin), atol=1e-7, rtol=1e-5)


def test_exact_values_consistent_with_J():
    mdp = frozenlake_mdp(True, gamma=0.99, horizon=100)
    policy = TabularSoftmax(
        mdp.n_obs, 4, torch.randn(mdp.n_obs, 4, generator=torch.Generator().manual_seed(2))
    )
    V = exact_values(mdp, policy)
    assert V.shape == (101, mdp.n_states)
    assert float(mdp.mu0 @ V[0]) == pytest.approx(exact_J(mdp, policy).item(), rel=1e-9)
    assert torch.all(V[-1] == 0) and torch.all(V[:, mdp.terminal] == 0)


def test_frozenlake_model_matches_gymnasium_table():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    table = env.unwrapped.P
    mdp = frozenlake_mdp(True)
    for s in range(16):
        for a in range(4):
            assert float(mdp.P[s, a].sum()) == pytest.approx(1.0)
            want = sum(prob * r for prob, _, r, _ in table[s][a])
            assert float(mdp.R[s, a]) == pytest.approx(want)


def test_corridor_env_matches_its_model():
    env = gym.make(SHORT_CORRIDOR_ID)
    assert env.spec.max_episode_steps == 100
    assert env.observation_space == spaces.Discrete(1)
    mdp = short_corridor_mdp()
    raw = ShortCorridorEnv()
    for s in range(3):
        for a in range(2):
            raw.reset()
            raw.state = s
            obs, r, term, trunc, info = raw.step(a)
            assert obs == 0 and r == -1.0 and not trunc
            s2 = info["state"]
            assert float(mdp.P[s, a, s2]) == 1.0
            assert term == bool(mdp.terminal[s2])
    # the switched state: right goes left
    raw.reset()
    raw.state = 1
    assert raw.step(1)[4]["state"] == 0


def test_short_corridor_optimum_where_the_book_puts_it():
    p_star, J_star = short_corridor_optimum()
    # Sutton & Barto (2018), Example 13.1: best p(right) about 0.59, value about -11.6
    assert p_star == pytest.approx(0.59, abs=0.006)
    assert J_star == pytest.approx(-11.6, abs=0.07)
    p, J = short_corridor_curve(201)
    assert p.shape == J.shape == (201,)
    assert float(J.max()) <= J_star + 1e-9
    assert abs(p[np.argmax(J)] - p_star) < 0.006
    # the exact finite-horizon recursion agrees with the closed form when H is long
    mdp = short_corridor_mdp(horizon=2000)
    logit = float(np.log(p_star / (1 - p_star)))
    lin = LinearSoftmax(
        torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.tensor([logit, 0.0])
    ).double()
    J_rec, g = exact_gradient(mdp, lin)
    assert J_rec == pytest.approx(J_star, abs=1e-6)
    assert float(g.norm()) < 1e-4  # a stationary point of J(theta)
    assert float(short_corridor_J(0.5)[0]) < J_star
