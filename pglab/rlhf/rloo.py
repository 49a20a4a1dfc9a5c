"""RLOO: REINFORCE with the leave-one-out baseline over k samples per prompt (Kool et al.
2019; Ahmadian et al. 2024, https://arxiv.org/abs/2402.14740, eq. 6)::

    R_i = r(x, y_i) - beta * sum_t kl_t(y_i)
    A_i = R_i - 1/(k-1) sum_{j != i} R_j  =  k/(k-1) (R_i - mean_j R_j)
    L   = -mean_i A_i log pi_theta(y_i | x)

The baseline of sample i does not depend on y_i, so the estimator stays unbiased while
the other k-1 samples cancel most of the reward's variance. Needs k >= 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from pglab.rlhf.common import objective_metrics, optimise, sample
from pglab.rlhf.reinforce import penalised_rewards
from pglab.rlhf.world import token_log_probs

if TYPE_CHECKING:
    from pglab.rlhf.trainer import RLHFTrainer


def rloo_advantages(rewards: Tensor, k: int) -> Tensor:
    """``A_i = R_i - mean_{j != i} R_j`` within each prompt's group of ``k``; ``[B] -> [B]``."""
    if k < 2:
        raise ValueError(
            f"k: {k} is out of range for rloo (>= 2: leave-one-out needs a second sample)"
        )
    g = rewards.view(-1, k)
    loo = (g.sum(-1, keepdim=True) - g) / (k - 1)
    return (g - loo).reshape(-1)


def rloo_loss(seq_log_prob: Tensor, advantages: Tensor) -> Tensor:
    """``L = -mean_i A_i log pi(y_i|x)``; ``seq_log_prob [B]`` with grad, ``advantages [B]``."""
    return -(advantages.detach() * seq_log_prob).mean()


def step(t: RLHFTrainer) -> dict[str, float]:
    cfg = t.config
    s = sample(t, cfg.k)
    rewards = penalised_rewards(s.scores, s.old_log_prob, s.ref_log_prob, cfg.beta, t.kl_estimator)
    adv = rloo_advantages(rewards, s.k)
    log_prob = token_log_probs(t.policy, s.prompts, s.seqs).sum(-1)
    loss = rloo_loss(log_prob, adv)
    norm = optimise(t, loss, t.params, t.opt)
    return {
        **objective_metrics(s, cfg.beta, t.kl_estimator),
        "loss/policy_avg": float(loss.detach()),
        "policy/grad_norm": norm,
        "samples": float(s.idx.numel()),
    }
