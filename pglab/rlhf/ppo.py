"""PPO in the InstructGPT / TRL style (Ouyang et al. 2022, https://arxiv.org/abs/2203.02155;
Ziegler et al. 2019; TRL's ``PPOTrainer``): the KL penalty is a per-token reward, the score
arrives at the last token, a value model learns the return and GAE gives the advantages::

    r_t = -beta * kl_t  (+ score(x, y) at t = L-1)            kl_t: k1 or k3 per token
    delta_t = r_t + gamma V(x, y_<t+1) - V(x, y_<t),    V(x, y_<L+1) = 0 (the response ends)
    A_t = sum_l (gamma lambda)^l delta_{t+l},   returns_t = A_t + V(x, y_<t)
    A_t <- (A_t - mean A) / std A                               (TRL whitens advantages)
    L_pi = mean_t max(-A_t rho_t, -A_t clip(rho_t, 1-eps, 1+eps)),  rho_t = pi/pi_old (y_t)
    L_V  = 0.5 mean_t max((V - R)^2, (clip(V, V_old +- eps_v) - R)^2)
    L = L_pi + vf_coef L_V,    n_epochs passes over num_minibatches minibatches

Token index t runs over the response (0 .. L-1); tensors are time-major ``[L, B]`` inside GAE
(:func:`pglab.estimators.gae`, ``terminated`` at the last token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pglab.estimators import gae
from pglab.rlhf.common import kl_estimate, objective_metrics, optimise, sample
from pglab.rlhf.world import token_log_probs

if TYPE_CHECKING:
    from pglab.rlhf.trainer import RLHFTrainer


def per_token_rewards(
    scores: Tensor, log_prob: Tensor, ref_log_prob: Tensor, beta: float, estimator: str
) -> Tensor:
    """``r_t = -beta kl_t``, plus the score on the last token: ``[B]``, ``[B, L]`` -> ``[B, L]``."""
    rewards = -beta * kl_estimate(log_prob, ref_log_prob, estimator)
    rewards[:, -1] += scores
    return rewards


def response_advantages(
    rewards: Tensor, values: Tensor, gamma: float, gae_lambda: float
) -> tuple[Tensor, Tensor]:
    """GAE over the response tokens: ``rewards, values [B, L]`` -> (advantages, returns) ``[B, L]``."""
    r, v = rewards.T, values.T  # time-major [L, B]
    next_v = torch.cat([v[1:], torch.zeros_like(v[:1])])
    terminated = torch.zeros_like(r, dtype=torch.bool)
    terminated[-1] = True  # the response is over: no bootstrap
    adv = gae(r, v, next_v, terminated, torch.zeros_like(terminated), gamma, gae_lambda)
    return adv.T, (adv + v).T


def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_coef: float) -> Tensor:
    """``L = mean max(-A rho, -A clip(rho, 1-eps, 1+eps))`` over all tokens."""
    return torch.max(
        -advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)
    ).mean()


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float) -> Tensor:
    """``L_V = 0.5 mean max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)``."""
    v_clip = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.max((values - returns) ** 2, (v_clip - returns) ** 2).mean()


def step(t: RLHFTrainer) -> dict[str, float]:
    cfg = t.config
    s = sample(t, cfg.k)
    assert t.value_model is not None
    with torch.no_grad():
        old_values = t.value_model(s.prompts, s.seqs).squeeze(-1)  # [B, L]
    rewards = per_token_rewards(s.scores, s.old_log_prob, s.ref_log_prob, cfg.beta, t.kl_estimator)
    adv, returns = response_advantages(rewards, old_values, cfg.gamma, cfg.gae_lambda)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    B = s.idx.numel()
    mb = max(1, B // cfg.num_minibatches)
    stats: dict[str, list[float]] = {
        k: [] for k in ("pg", "vf", "clip", "vclip", "akl", "ratio", "norm")
    }
    for _ in range(t.n_epochs):
        perm = torch.randperm(B, generator=t.generator)
        for start in range(0, B, mb):
            i = perm[start : start + mb]
            log_prob = token_log_probs(t.policy, s.prompts[i], s.seqs[i])
            values = t.value_model(s.prompts[i], s.seqs[i]).squeeze(-1)
            log_ratio = log_prob - s.old_log_prob[i]
            ratio = log_ratio.exp()
            pg = clipped_surrogate(ratio, adv[i], cfg.clip_coef)
            vf = clipped_value_loss(values, old_values[i], returns[i], cfg.cliprange_value)
            norm = optimise(t, pg + cfg.vf_coef * vf, t.params + t.value_params, t.opt)
            with torch.no_grad():
                stats["pg"].append(float(pg))
                stats["vf"].append(float(vf))
                stats["clip"].append(float(((ratio - 1).abs() > cfg.clip_coef).float().mean()))
                moved = (values - old_values[i]).abs() > cfg.cliprange_value
                stats["vclip"].append(float(moved.float().mean()))
                stats["akl"].append(float(0.5 * (log_ratio**2).mean()))
                stats["ratio"].append(float(ratio.mean()))
                stats["norm"].append(norm)

    def avg(k: str) -> float:
        return sum(stats[k]) / len(stats[k])

    return {
        **objective_metrics(s, cfg.beta, t.kl_estimator),
        "loss/policy_avg": avg("pg"),
        "loss/value_avg": avg("vf"),
        "policy/clipfrac": avg("clip"),
        "policy/approxkl_avg": avg("akl"),
        "val/clipfrac_avg": avg("vclip"),
        "val/ratio": avg("ratio"),
        "policy/grad_norm": avg("norm"),
        "samples": float(B),
    }
