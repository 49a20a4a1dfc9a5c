"""Exact objective, gradient and values of a policy on a finite MDP with a finite horizon.

For a finite MDP with transitions ``P[s, a, s']``, expected rewards ``R[s, a]``, initial
distribution ``mu0``, discount ``gamma`` and horizon ``H`` (the time limit), the objective is

    J(theta) = E[ sum_{t<H} gamma^t r_t ] = sum_{t<H} gamma^t  d_t . r_pi,
    d_0 = mu0,   d_{t+1}(s') = sum_{s,a} d_t(s) pi(a|s) P[s, a, s'],   r_pi(s) = sum_a pi(a|s) R[s, a]

computed by this forward recursion over state distributions and differentiated by autograd,
which gives the exact gradient for *any* differentiable policy evaluated on all states
(tabular softmax, linear softmax, an MLP on one-hot states). Terminal states are absorbing
with zero reward. Time-indexed state values come from the backward recursion
``V_H = 0, V_t = r_pi + gamma P_pi V_{t+1}``; any function of (s_t, t) is a valid baseline,
so ``V_t(s_t)`` is the exact value baseline of a time-limited task.

MDPs offered: gymnasium's toy-text environments through their published transition tables
(``env.unwrapped.P``; FrozenLake-v1 slippery or not) and Sutton & Barto's short corridor
(Example 13.1), whose J(p) and optimum are computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pglab.corridor import GOAL, N_STATES, corridor_next_state
from pglab.envs import SHORT_CORRIDOR_ID


@dataclass(frozen=True)
class FiniteMDP:
    """A finite MDP with a horizon. Tensors are float64.

    ``P`` ``[S, A, S]`` transition probabilities; ``R`` ``[S, A]`` expected reward of taking a
    in s; ``R_sas`` ``[S, A, S]`` expected reward of the transition (s, a, s') (what a sampled
    episode receives; ``R = sum_s' P R_sas``); ``mu0`` ``[S]``; ``obs`` ``[S]`` int64, the observation the policy sees in each state
    (the short corridor shows 0 everywhere); ``terminal`` ``[S]`` absorbing zero-reward states.
    """

    name: str
    P: Tensor
    R: Tensor
    R_sas: Tensor
    mu0: Tensor
    obs: Tensor
    terminal: Tensor
    gamma: float
    horizon: int

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    @property
    def n_obs(self) -> int:
        return int(self.obs.max()) + 1


def policy_probs(mdp: FiniteMDP, policy: nn.Module) -> Tensor:
    """pi(a|s) for every state, ``[S, A]`` float64, differentiable in the policy parameters."""
    return policy(mdp.obs).probs.to(torch.float64)


def exact_J(mdp: FiniteMDP, policy: nn.Module) -> Tensor:
    """J(theta) = sum_{t<H} gamma^t d_t . r_pi by the forward recursion (a 0-d tensor)."""
    pi = policy_probs(mdp, policy)
    P_pi = torch.einsum("sa,sax->sx", pi, mdp.P)
    r_pi = (pi * mdp.R).sum(1)
    d = mdp.mu0
    J = torch.zeros((), dtype=torch.float64)
    discount = 1.0
    for _ in range(mdp.horizon):
        J = J + discount * (d @ r_pi)
        d = d @ P_pi
        discount *= mdp.gamma
    return J


def exact_gradient(mdp: FiniteMDP, policy: nn.Module) -> tuple[float, Tensor]:
    """(J, grad_theta J): the gradient flattened ``[P]`` in ``policy.parameters()`` order."""
    params = list(policy.parameters())
    J = exact_J(mdp, policy)
    grads = torch.autograd.grad(J, params, allow_unused=True)
    flat = [
        (torch.zeros_like(p) if g is None else g).reshape(-1).to(torch.float64)
        for p, g in zip(params, grads)
    ]
    return float(J.detach()), torch.cat(flat)


def exact_values(mdp: FiniteMDP, policy: nn.Module) -> Tensor:
    """Time-indexed values ``V [H+1, S]``: V_t(s) = E[sum_{k=t}^{H-1} gamma^(k-t) r_k | s_t = s]."""
    with torch.no_grad():
        pi = policy_probs(mdp, policy)
        P_pi = torch.einsum("sa,sax->sx", pi, mdp.P)
        r_pi = (pi * mdp.R).sum(1)
        V = torch.zeros(mdp.horizon + 1, mdp.n_states, dtype=torch.float64)
        for t in range(mdp.horizon - 1, -1, -1):
            V[t] = r_pi + mdp.gamma * P_pi @ V[t + 1]
    return V


# -- MDPs ----------------------------------------------------------------------------------------


def toy_text_mdp(
    env_id: str, gamma: float = 1.0, horizon: int | None = None, **env_kwargs
) -> FiniteMDP:
    """A finite MDP from a toy-text env's published table ``env.unwrapped.P``.

    ``P[s][a]`` lists ``(prob, next_state, reward, terminated)``. A terminated transition leads
    to one extra absorbing state (index S) so the episode really stops there, whatever the
    table says about the state it lands in. ``horizon`` defaults to the env's time limit.
    """
    env = gym.make(env_id, **env_kwargs)
    try:
        base = env.unwrapped
        table = base.P
        S = len(table)
        A = env.action_space.n
        P = torch.zeros(S + 1, A, S + 1, dtype=torch.float64)
        R = torch.zeros(S + 1, A, dtype=torch.float64)
        PR = torch.zeros(S + 1, A, S + 1, dtype=torch.float64)  # sum of prob * reward
        for s in range(S):
            for a in range(A):
                for prob, s2, reward, terminated in table[s][a]:
                    P[s, a, S if terminated else s2] += prob
                    PR[s, a, S if terminated else s2] += prob * reward
                    R[s, a] += prob * reward
        P[S, :, S] = 1.0
        R_sas = torch.where(P > 0, PR / P.clamp_min(1e-300), torch.zeros_like(P))
        mu0 = torch.zeros(S + 1, dtype=torch.float64)
        mu0[:S] = torch.as_tensor(np.asarray(base.initial_state_distrib, dtype=np.float64))
        obs = torch.arange(S + 1)
        obs[S] = 0  # never acted on meaningfully: absorbing, zero reward
        terminal = torch.zeros(S + 1, dtype=torch.bool)
        terminal[S] = True
        H = horizon if horizon is not None else env.spec.max_episode_steps
    finally:
        env.close()
    if H is None or H < 1:
        raise ValueError(f"horizon: {H!r} is not allowed (a positive integer)")
    name = env_id + "".join(f" {k}={v}" for k, v in env_kwargs.items())
    return FiniteMDP(name, P, R, R_sas, mu0, obs, terminal, float(gamma), int(H))


def frozenlake_mdp(
    is_slippery: bool = True, gamma: float = 1.0, horizon: int = 100, map_name: str = "4x4"
) -> FiniteMDP:
    """FrozenLake-v1 (4x4 by default), slippery or not; reward 1 on reaching the goal."""
    return toy_text_mdp("FrozenLake-v1", gamma, horizon, is_slippery=is_slippery, map_name=map_name)


def short_corridor_mdp(gamma: float = 1.0, horizon: int = 100) -> FiniteMDP:
    """Exact model of :class:`pglab.corridor.ShortCorridorEnv`: states 0, 1, 2 and the goal 3."""
    S, A = N_STATES + 1, 2
    P = torch.zeros(S, A, S, dtype=torch.float64)
    R = torch.zeros(S, A, dtype=torch.float64)
    for s in range(N_STATES):
        for a in range(A):
            P[s, a, corridor_next_state(s, a)] = 1.0
            R[s, a] = -1.0
    P[GOAL, :, GOAL] = 1.0
    mu0 = torch.zeros(S, dtype=torch.float64)
    mu0[0] = 1.0
    obs = torch.zeros(S, dtype=torch.long)
    terminal = torch.zeros(S, dtype=torch.bool)
    terminal[GOAL] = True
    R_sas = R.unsqueeze(2).expand(S, A, S).clone()
    return FiniteMDP(SHORT_CORRIDOR_ID, P, R, R_sas, mu0, obs, terminal, float(gamma), int(horizon))


def mdp_for_env(env_id: str, gamma: float, horizon: int | None = None) -> FiniteMDP | None:
    """The exact model behind a lab env id, or None when the env is not a known finite MDP."""
    if env_id == SHORT_CORRIDOR_ID:
        return short_corridor_mdp(gamma, horizon or 100)
    if env_id == "FrozenLake-v1":
        return frozenlake_mdp(True, gamma, horizon or 100)
    return None


# -- the short corridor's J(p) -------------------------------------------------------------------


def short_corridor_J(p: np.ndarray | float, gamma: float = 1.0) -> np.ndarray:
    """Infinite-horizon J(p) = v_pi(s0) of the corridor, p = pi(right), by solving (I - gamma P_p) v = r.

    ``p`` in (0, 1) (J is -inf at 0 and 1: the goal is never reached). Vectorised over p.
    """
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    out = np.empty_like(p)
    for i, pi_right in enumerate(p):
        M = np.zeros((N_STATES, N_STATES))
        for s in range(N_STATES):
            for a, pa in ((1, pi_right), (0, 1.0 - pi_right)):
                s2 = corridor_next_state(s, a)
                if s2 != GOAL:
                    M[s, s2] += pa
        v = np.linalg.solve(np.eye(N_STATES) - gamma * M, -np.ones(N_STATES))
        out[i] = v[0]
    return out


def short_corridor_curve(n: int = 201, gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(p, J(p)) on n points strictly inside (0, 1): Sutton & Barto's Figure for Example 13.1."""
    if n < 2:
        raise ValueError(f"n: {n} is not allowed (an integer >= 2)")
    p = np.linspace(0.0, 1.0, n + 2)[1:-1]
    return p, short_corridor_J(p, gamma)


def short_corridor_optimum(gamma: float = 1.0, tol: float = 1e-10) -> tuple[float, float]:
    """(p*, J(p*)) maximising the corridor's J by golden-section search (J is unimodal in p)."""
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    lo, hi = 1e-6, 1.0 - 1e-6
    a, b = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    fa, fb = float(short_corridor_J(a, gamma)[0]), float(short_corridor_J(b, gamma)[0])
    while hi - lo > tol:
        if fa < fb:
            lo, a, fa = a, b, fb
            b = lo + inv_phi * (hi - lo)
            fb = float(short_corridor_J(b, gamma)[0])
        else:
            hi, b, fb = b, a, fa
            a = hi - inv_phi * (hi - lo)
            fa = float(short_corridor_J(a, gamma)[0])
    p_star = 0.5 * (lo + hi)
    return p_star, float(short_corridor_J(p_star, gamma)[0])
