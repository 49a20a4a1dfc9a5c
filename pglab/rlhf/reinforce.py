"""REINFORCE at the sequence level on the KL-regularised reward (Williams 1992; as an RLHF
baseline in Ahmadian et al. 2024, https://arxiv.org/abs/2402.14740)::

    R_i = r(x, y_i) - beta * sum_t kl_t(y_i)           (KL penalty in the reward, k1 or k3)
    L   = -mean_i (R_i - b) log pi_theta(y_i | x)
    b   = 0 (baseline="none")  or  mean_j R_j over the prompt's k samples (baseline="mean")

With k1, ``E[R grad log pi]`` is exactly the gradient of E[r] - beta KL(pi || pi_SFT). The
mean baseline includes the sample itself, which scales the gradient by (k-1)/k (RLOO removes
that); with k1 a baseline never moves the expected gradient otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from pglab.rlhf.common import kl_estimate, objective_metrics, optimise, sample
from pglab.rlhf.world import token_log_probs

if TYPE_CHECKING:
    from pglab.rlhf.trainer import RLHFTrainer


def penalised_rewards(
    scores: Tensor, log_prob: Tensor, ref_log_prob: Tensor, beta: float, estimator: str
) -> Tensor:
    """``R_i = score_i - beta * sum_t kl_t``: ``scores [B]``, log-probs ``[B, L]`` -> ``[B]``."""
    return scores - beta * kl_estimate(log_prob, ref_log_prob, estimator).sum(-1)


def reinforce_loss(seq_log_prob: Tensor, rewards: Tensor, k: int, baseline: str) -> Tensor:
    """``L = -mean_i (R_i - b) log pi(y_i|x)``; ``seq_log_prob [B]`` (with grad), ``rewards [B]``
    (no grad) grouped ``k`` per prompt; ``baseline`` is ``none`` or ``mean`` (per prompt)."""
    adv = rewards
    if baseline == "mean":
        adv = rewards - rewards.view(-1, k).mean(-1).repeat_interleave(k)
    elif baseline != "none":
        raise ValueError(f"baseline: {baseline!r} is not allowed (one of none, mean)")
    return -(adv.detach() * seq_log_prob).mean()


def step(t: RLHFTrainer) -> dict[str, float]:
    cfg = t.config
    s = sample(t, cfg.k)
    rewards = penalised_rewards(s.scores, s.old_log_prob, s.ref_log_prob, cfg.beta, t.kl_estimator)
    log_prob = token_log_probs(t.policy, s.prompts, s.seqs).sum(-1)
    loss = reinforce_loss(log_prob, rewards, s.k, cfg.baseline)
    norm = optimise(t, loss, t.params, t.opt)
    return {
        **objective_metrics(s, cfg.beta, t.kl_estimator),
        "loss/policy_avg": float(loss.detach()),
        "policy/grad_norm": norm,
        "samples": float(s.idx.numel()),
    }
