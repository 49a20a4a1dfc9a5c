"""Preference pairs labelled by Bradley-Terry on the gold reward, and the reward model r_phi.

Bradley-Terry (Ouyang et al. 2022, https://arxiv.org/abs/2203.02155, eq. 1), with a label
temperature ``T`` (``T = 0``: the better response always wins, ties split at random)::

    p(y1 > y2 | x) = sigma((r*(x,y1) - r*(x,y2)) / T)
    L_BT(phi) = -E_{(x, y_w, y_l)}[log sigma(r_phi(x,y_w) - r_phi(x,y_l))]

Both responses of a pair are sampled from pi_SFT, as in InstructGPT: the reward model sees
only the SFT distribution, which is why its correlation with r* is reported on it *and*
uniformly over all responses (off the SFT distribution, where the policy will go).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pglab.rlhf.world import PrefixMLP, World


@dataclass(frozen=True)
class Pairs:
    """``M`` labelled pairs: ``prompts [M]``, ``chosen [M]`` and ``rejected [M]`` (response
    indices into ``world.seqs``)."""

    prompts: Tensor
    chosen: Tensor
    rejected: Tensor

    def __len__(self) -> int:
        return int(self.prompts.shape[0])


def bt_loss(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """Bradley-Terry loss ``-mean log sigma(r_w - r_l)``; inputs ``[M]``, returns a scalar."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def label_pairs(
    world: World, gold: Tensor, n_pairs: int, temperature: float, generator: torch.Generator
) -> Pairs:
    """``n_pairs`` pairs: prompts cycle through the prompt set, both responses ~ pi_SFT, the
    winner drawn by Bradley-Terry on ``gold [P, N]`` at ``temperature`` (0: noiseless)."""
    P = world.n_prompts
    prompts = torch.arange(n_pairs) % P
    probs = world.sft_logp.exp()[prompts]  # [M, N]
    two = torch.multinomial(probs, 2, replacement=True, generator=generator)  # [M, 2]
    r = gold[prompts[:, None], two]  # [M, 2]
    diff = r[:, 0] - r[:, 1]
    if temperature > 0:
        p_first = torch.sigmoid(diff / temperature)
    else:
        p_first = torch.where(diff > 0, 1.0, torch.where(diff < 0, 0.0, 0.5))
    first_wins = torch.rand(n_pairs, generator=generator) < p_first
    chosen = torch.where(first_wins, two[:, 0], two[:, 1])
    rejected = torch.where(first_wins, two[:, 1], two[:, 0])
    return Pairs(prompts, chosen, rejected)


class RewardModel(torch.nn.Module):
    """``r_phi(x, y)``: a :class:`PrefixMLP` that reads the whole response (positions and a
    bag of words) and outputs one number."""

    def __init__(self, world: World, hidden_size: int = 32, activation: str = "relu"):
        super().__init__()
        s = world.spec
        self.net = PrefixMLP(
            s.n_prompts, s.vocab_size, s.seq_len, hidden_size, 1, 1, False, activation
        )

    def forward(self, prompts: Tensor, seqs: Tensor) -> Tensor:
        return self.net(prompts, seqs).squeeze(-1)

    def table(self, world: World, normalize: bool = True) -> Tensor:
        """``r_phi`` for every prompt and response, ``[P, N]``, no gradient.

        ``normalize``: shift and scale so that under pi_SFT each prompt's reward has mean 0
        and the pooled std is 1 (InstructGPT normalises its RM to mean 0 on the SFT data;
        the scale makes beta mean the same thing for every reward model)."""
        with torch.no_grad():
            r = self(world.flat_prompts, world.flat_seqs).view(world.n_prompts, world.n_responses)
        if normalize:
            q = world.sft_logp.exp()
            r = r - (q * r).sum(-1, keepdim=True)
            r = r / ((q * r * r).sum(-1).mean().sqrt() + 1e-8)
        return r


def train_reward_model(
    world: World,
    pairs: Pairs,
    *,
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    hidden_size: int = 32,
    activation: str = "relu",
    seed: int = 0,
) -> RewardModel:
    """Fit ``r_phi`` by full-batch Adam on the BT loss of ``pairs``. Weight init from ``seed``."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = RewardModel(world, hidden_size, activation)
    torch.random.set_rng_state(gen_state)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    w_seqs, l_seqs = world.seqs[pairs.chosen], world.seqs[pairs.rejected]
    for _ in range(steps):
        loss = bt_loss(model(pairs.prompts, w_seqs), model(pairs.prompts, l_seqs))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.requires_grad_(False)
    return model


def pair_accuracy(reward: Tensor, pairs: Pairs) -> float:
    """Fraction of pairs where ``reward [P, N]`` ranks the chosen response above the rejected
    one (ties count half)."""
    rw = reward[pairs.prompts, pairs.chosen]
    rl = reward[pairs.prompts, pairs.rejected]
    return float(((rw > rl).float() + 0.5 * (rw == rl).float()).mean())


def weighted_corr(a: Tensor, b: Tensor, w: Tensor) -> float:
    """Pearson correlation of ``a`` and ``b`` under weights ``w`` (all ``[P, N]``), pooled
    after removing each prompt's weighted mean (a reward is only defined up to a per-prompt
    constant)."""
    w = w / w.sum(-1, keepdim=True)
    da = a - (w * a).sum(-1, keepdim=True)
    db = b - (w * b).sum(-1, keepdim=True)
    cov = (w * da * db).sum()
    var = ((w * da * da).sum() * (w * db * db).sum()).sqrt()
    return float(cov / var) if var > 0 else float("nan")


def reward_model_report(
    world: World, proxy: Tensor, gold: Tensor, train: Pairs, held_out: Pairs
) -> dict[str, float]:
    """How good ``r_phi`` is: preference accuracy on its training and held-out pairs, and its
    correlation with r* on pi_SFT and uniformly over all responses (off-distribution)."""
    return {
        "rm/train_accuracy": pair_accuracy(proxy, train),
        "rm/heldout_accuracy": pair_accuracy(proxy, held_out),
        "rm/gold_heldout_accuracy": pair_accuracy(gold, held_out),
        "rm/corr_sft": weighted_corr(proxy, gold, world.sft_logp.exp()),
        "rm/corr_uniform": weighted_corr(proxy, gold, torch.ones_like(gold)),
        "rm/pairs": float(len(train)),
    }
