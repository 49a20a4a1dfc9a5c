"""Exact quantities of the toy world by enumeration: every function is a finite sum over the
``V^L`` responses of each prompt. Arrays are prompt-major ``[P, N]`` (``N = V^L``), log-probs
in nats; results per prompt ``[P]`` unless said otherwise.

The KL-regularised objective and its optimum (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290, eq. 4)::

    J_beta(pi) = E_{y~pi}[r(x,y)] - beta KL(pi(.|x) || pi_SFT(.|x))
    pi*_beta(y|x) = pi_SFT(y|x) exp(r(x,y)/beta) / Z_beta(x)
    J_beta(pi) = beta log Z_beta(x) - beta KL(pi || pi*_beta)

so ``KL(pi || pi*)`` is exactly the objective's shortfall divided by beta.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pglab.rlhf.world import PrefixMLP, World, enumerated_token_log_probs


def sequence_log_probs(policy: PrefixMLP, world: World) -> Tensor:
    """``log pi(y|x)`` for every prompt and response in one batched forward, ``[P, N]``."""
    return enumerated_token_log_probs(policy, world.n_prompts).sum(-1)


def kl(logp: Tensor, logq: Tensor) -> Tensor:
    """``KL(p || q) = sum_y p(y) (log p(y) - log q(y))`` per prompt, ``[P]``."""
    return (logp.exp() * (logp - logq)).sum(-1)


def expectation(logp: Tensor, values: Tensor) -> Tensor:
    """``E_{y~p}[f(y)] = sum_y p(y) f(y)`` per prompt, ``[P]``."""
    return (logp.exp() * values).sum(-1)


def optimum_log_probs(ref_logp: Tensor, reward: Tensor, beta: float) -> Tensor:
    """``log pi*_beta(y|x) = log pi_SFT(y|x) + r(x,y)/beta - log Z_beta(x)``, ``[P, N]``."""
    if beta <= 0:
        raise ValueError(f"beta: {beta!r} is out of range (> 0)")
    z = ref_logp + reward / beta
    return z - torch.logsumexp(z, -1, keepdim=True)


def objective(logp: Tensor, ref_logp: Tensor, reward: Tensor, beta: float) -> Tensor:
    """``J_beta(pi) = E_pi[r] - beta KL(pi || pi_SFT)`` per prompt, ``[P]``."""
    return expectation(logp, reward) - beta * kl(logp, ref_logp)


def win_rate(logp: Tensor, ref_logp: Tensor, gold: Tensor) -> Tensor:
    """Gold win rate against pi_SFT, ties half, per prompt ``[P]``::

        W = P[r*(y) > r*(y')] + 0.5 P[r*(y) = r*(y')],   y ~ pi,  y' ~ pi_SFT

    computed from the SFT distribution of r* (sort, cumulative sums), no N^2 table.
    """
    p, q = logp.exp(), ref_logp.exp()
    out = torch.empty(gold.shape[0], dtype=logp.dtype)
    for i in range(gold.shape[0]):
        values, inv = torch.unique(gold[i], return_inverse=True)  # sorted distinct rewards
        q_mass = torch.zeros(len(values), dtype=q.dtype).scatter_add_(0, inv, q[i])
        below = q_mass.cumsum(0) - q_mass  # P_SFT[r* < v]
        score = below + 0.5 * q_mass  # per distinct value
        out[i] = (p[i] * score[inv]).sum()
    return out


def frontier(
    ref_logp: Tensor, reward: Tensor, gold: Tensor, betas: Tensor | list[float]
) -> dict[str, list[float]]:
    """The exact reward-vs-KL path of ``pi*_beta`` for the training ``reward`` over ``betas``.

    For each beta (mean over prompts): ``kl`` = KL(pi*_beta || pi_SFT), ``reward`` =
    E_{pi*}[reward], ``gold`` = E_{pi*}[r*], ``win_rate``. With ``reward = gold`` this is the
    best gold reward any policy can have at that KL (the frontier); with a learned reward it
    is where a perfect optimiser of that reward ends up.
    """
    out: dict[str, list[float]] = {"beta": [], "kl": [], "reward": [], "gold": [], "win_rate": []}
    for beta in [float(b) for b in betas]:
        lp = optimum_log_probs(ref_logp, reward, beta)
        out["beta"].append(beta)
        out["kl"].append(float(kl(lp, ref_logp).mean()))
        out["reward"].append(float(expectation(lp, reward).mean()))
        out["gold"].append(float(expectation(lp, gold).mean()))
        out["win_rate"].append(float(win_rate(lp, ref_logp, gold).mean()))
    return out


def default_betas() -> Tensor:
    """A log grid of beta from 100 (pi* ~ pi_SFT) to 0.01 (pi* ~ argmax), 40 points."""
    return torch.logspace(2, -2, 40)
