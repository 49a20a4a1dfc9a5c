"""What every method shares: the sampler, the KL estimators, the optimiser step and the
batch metrics in TRL's names. Methods live one per file (reinforce, rloo, ppo, grpo, dpo);
each exposes a pure loss and ``step(trainer) -> dict[str, float]`` (collect -> estimate ->
update -> report).

KL estimators of KL(pi || pi_SFT) from ``y ~ pi`` (Schulman 2020, http://joschu.net/blog/kl-approx.html),
per token with ``log_ratio = log pi_SFT(y_t|.) - log pi(y_t|.)``::

    k1 = -log_ratio                          unbiased, can be negative
    k3 = (exp(log_ratio) - 1) - log_ratio    unbiased, always >= 0, lower variance near pi_SFT

Summed over the L tokens of a response they estimate the sequence KL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from pglab.rlhf.trainer import RLHFTrainer


def kl_estimate(log_prob: Tensor, ref_log_prob: Tensor, estimator: str) -> Tensor:
    """Per-token KL estimate (``k1`` or ``k3``, see the module docstring); same shape as input."""
    log_ratio = ref_log_prob - log_prob
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"kl_estimator: {estimator!r} is not allowed (one of k1, k3)")


@dataclass(frozen=True)
class Samples:
    """``B = P * k`` responses, grouped by prompt (rows p*k .. p*k+k-1 share prompt p).

    ``prompts [B]``, ``idx [B]`` (index into ``world.seqs``), ``seqs [B, L]``, ``scores [B]``
    (the training reward), ``gold [B]``, ``old_log_prob [B, L]`` and ``ref_log_prob [B, L]``
    per token (pi_theta at sampling time and pi_SFT).
    """

    prompts: Tensor
    idx: Tensor
    seqs: Tensor
    scores: Tensor
    gold: Tensor
    old_log_prob: Tensor
    ref_log_prob: Tensor
    k: int


def sample(trainer: RLHFTrainer, k: int) -> Samples:
    """Draw ``k`` responses per prompt from the current pi_theta (the shared sampler).

    Drawn from the exactly enumerated ``pi_theta(.|x)``, which is the same law as sampling
    token by token; the per-token old log-probs come from the same enumerated table.
    """
    t = trainer
    P = t.world.n_prompts
    idx = t.env_step(k)  # [P, k]
    prompts = torch.arange(P).repeat_interleave(k)
    flat = idx.reshape(-1)
    return Samples(
        prompts=prompts,
        idx=flat,
        seqs=t.world.seqs[flat],
        scores=t.reward[prompts, flat],
        gold=t.gold[prompts, flat],
        old_log_prob=t.token_logp[prompts, flat],
        ref_log_prob=t.world.sft_token_logp[prompts, flat],
        k=k,
    )


def optimise(
    trainer: RLHFTrainer, loss: Tensor, params: list[Tensor], opt: torch.optim.Optimizer
) -> float:
    """One Adam step on ``loss`` with the global gradient norm clipped to ``max_grad_norm``;
    returns the norm before clipping."""
    trainer.check_finite("loss", loss)
    opt.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, trainer.config.max_grad_norm)
    opt.step()
    return float(norm)


def objective_metrics(s: Samples, beta: float, estimator: str) -> dict[str, float]:
    """TRL's ``objective/*`` batch metrics of a rollout (estimates from the samples)::

    objective/kl          = mean_i sum_t kl_t          (the chosen estimator)
    objective/scores      = mean_i score_i
    objective/rlhf_reward = mean_i (score_i - beta * sum_t kl_t)
    objective/entropy     = mean_i -sum_t log pi(y_t|.)
    """
    kl_seq = kl_estimate(s.old_log_prob, s.ref_log_prob, estimator).sum(-1)
    return {
        "objective/kl": float(kl_seq.mean()),
        "objective/scores": float(s.scores.mean()),
        "objective/rlhf_reward": float((s.scores - beta * kl_seq).mean()),
        "objective/entropy": float(-s.old_log_prob.sum(-1).mean()),
        "rollout/gold_mean": float(s.gold.mean()),
    }
