"""GRPO (Shao et al. 2024, DeepSeekMath, https://arxiv.org/abs/2402.03300; TRL's
``GRPOTrainer``): no value model; each prompt's k responses form a group, and the advantage is
the score normalised within its group, shared by all of a response's tokens::

    A_i = (r_i - mean_g r) / (std_g r + 1e-4)      (scale_rewards="group"; "none": r_i - mean_g r)
    L = mean_i mean_t [ -min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) + beta k3_it ]
    k3_it = pi_SFT/pi_theta - log(pi_SFT/pi_theta) - 1          (per token, with gradient)

The KL term sits in the loss, not the reward. Its gradient on samples from pi_theta is
that of KL(pi_SFT || pi_theta), not KL(pi_theta || pi_SFT), and the group std rescales the
reward per prompt, so GRPO's fixed point is near, not at, pi*_beta; the lab shows by how
much. ``kl_estimator="k1"`` instead puts the k1 penalty in the score before the group
normalisation, like REINFORCE/RLOO, and drops the loss term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pglab.rlhf.common import kl_estimate, objective_metrics, optimise, sample
from pglab.rlhf.world import token_log_probs

if TYPE_CHECKING:
    from pglab.rlhf.trainer import RLHFTrainer


def group_advantages(scores: Tensor, k: int, scale_rewards: str) -> Tensor:
    """``A_i = (r_i - mean_g r) / (std_g r + 1e-4)`` per group of ``k``; ``[B] -> [B]``."""
    if k < 2:
        raise ValueError(f"k: {k} is out of range for grpo (>= 2: a group needs two samples)")
    g = scores.view(-1, k)
    adv = g - g.mean(-1, keepdim=True)
    if scale_rewards == "group":
        adv = adv / (g.std(-1, keepdim=True) + 1e-4)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards: {scale_rewards!r} is not allowed (one of group, none)")
    return adv.reshape(-1)


def grpo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    ref_log_prob: Tensor,
    advantages: Tensor,
    clip_coef: float,
    beta: float,
) -> tuple[Tensor, Tensor]:
    """GRPO's loss (module docstring) and the clipped fraction; log-probs ``[B, L]``, ``advantages [B]``.

    ``beta = 0`` drops the k3 term."""
    ratio = (log_prob - old_log_prob).exp()
    a = advantages[:, None]
    per_token = -torch.min(ratio * a, ratio.clamp(1 - clip_coef, 1 + clip_coef) * a)
    if beta > 0:
        per_token = per_token + beta * kl_estimate(log_prob, ref_log_prob, "k3")
    clipped = ((ratio - 1).abs() > clip_coef).float().mean()
    return per_token.mean(-1).mean(), clipped


def step(t: RLHFTrainer) -> dict[str, float]:
    cfg = t.config
    s = sample(t, cfg.k)
    scores, loss_beta = s.scores, cfg.beta
    if t.kl_estimator == "k1":
        scores = scores - cfg.beta * kl_estimate(s.old_log_prob, s.ref_log_prob, "k1").sum(-1)
        loss_beta = 0.0
    adv = group_advantages(scores, s.k, cfg.scale_rewards)
    B = s.idx.numel()
    mb = max(1, B // cfg.num_minibatches)
    losses, clips, ratios, norms = [], [], [], []
    for _ in range(t.n_epochs):
        perm = torch.randperm(B, generator=t.generator)
        for start in range(0, B, mb):
            i = perm[start : start + mb]
            log_prob = token_log_probs(t.policy, s.prompts[i], s.seqs[i])
            loss, clipped = grpo_loss(
                log_prob, s.old_log_prob[i], s.ref_log_prob[i], adv[i], cfg.clip_coef, loss_beta
            )
            norms.append(optimise(t, loss, t.params, t.opt))
            losses.append(float(loss.detach()))
            clips.append(float(clipped))
            ratios.append(float((log_prob.detach() - s.old_log_prob[i]).exp().mean()))
    n = len(losses)
    return {
        **objective_metrics(s, cfg.beta, "k3" if t.kl_estimator == "k3" else "k1"),
        "loss/policy_avg": sum(losses) / n,
        "policy/clipfrac": sum(clips) / n,
        "val/ratio": sum(ratios) / n,
        "policy/grad_norm": sum(norms) / n,
        "samples": float(B),
    }
