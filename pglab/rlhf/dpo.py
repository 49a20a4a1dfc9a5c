"""DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290, eq. 7) and IPO (Azar et al.
2023, https://arxiv.org/abs/2310.12036), offline on the same preference pairs the reward
model is trained on; no sampling, no reward model::

    h(y) = log pi_theta(y|x) - log pi_SFT(y|x)            (beta h is DPO's implied reward)
    DPO: L = -mean log sigma(beta (h(y_w) - h(y_l)))       (loss_type="sigmoid")
    IPO: L = mean (h(y_w) - h(y_l) - 1/(2 beta))^2         (loss_type="ipo")

At the population optimum of the DPO loss with Bradley-Terry labels, beta h = r + c(x): the
policy is pi*_beta of the labelling reward. With few pairs it fits those pairs instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from pglab.rlhf.common import optimise
from pglab.rlhf.world import token_log_probs

if TYPE_CHECKING:
    from pglab.rlhf.trainer import RLHFTrainer


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    loss_type: str = "sigmoid",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair losses ``[M]`` and the implied rewards ``beta h(y_w)``, ``beta h(y_l)`` ``[M]``
    (TRL's ``dpo_loss``); all inputs are sequence log-probs ``[M]``."""
    h_w = policy_chosen_logps - ref_chosen_logps
    h_l = policy_rejected_logps - ref_rejected_logps
    logits = h_w - h_l
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"loss_type: {loss_type!r} is not allowed (one of sigmoid, ipo)")
    return losses, beta * h_w.detach(), beta * h_l.detach()


def step(t: RLHFTrainer) -> dict[str, float]:
    cfg = t.config
    pairs = t.pairs
    assert pairs is not None
    M = len(pairs)
    batch = M if cfg.dpo_batch_size is None else min(cfg.dpo_batch_size, M)
    i = t.env_step(batch)  # indices into the pairs
    prompts, w, lo = pairs.prompts[i], pairs.chosen[i], pairs.rejected[i]
    both = token_log_probs(
        t.policy, torch.cat([prompts, prompts]), torch.cat([t.world.seqs[w], t.world.seqs[lo]])
    ).sum(-1)
    ref = t.world.sft_logp
    losses, chosen, rejected = dpo_loss(
        both[:batch], both[batch:], ref[prompts, w], ref[prompts, lo], cfg.beta, cfg.loss_type
    )
    loss = losses.mean()
    norm = optimise(t, loss, t.params, t.opt)
    return {
        "loss/dpo": float(loss.detach()),
        "rewards/chosen": float(chosen.mean()),
        "rewards/rejected": float(rejected.mean()),
        "rewards/margins": float((chosen - rejected).mean()),
        "rewards/accuracies": float((chosen > rejected).float().mean()),
        "policy/grad_norm": norm,
        "samples": float(2 * batch),
    }
