"""Exact maths of the RLHF Lab: the optimum, the losses against hand-computed values, DPO's
implied reward at its optimum, and RLOO's estimator against the exact gradient."""

from __future__ import annotations

import math

import pytest
import torch

from pglab.rlhf import exact as E
from pglab.rlhf.common import kl_estimate
from pglab.rlhf.dpo import dpo_loss
from pglab.rlhf.grpo import group_advantages
from pglab.rlhf.ppo import per_token_rewards, response_advantages
from pglab.rlhf.preferences import bt_loss, label_pairs, pair_accuracy
from pglab.rlhf.reinforce import reinforce_loss
from pglab.rlhf.rloo import rloo_advantages, rloo_loss
from pglab.rlhf.world import (
    WorldSpec,
    all_sequences,
    enumerated_token_log_probs,
    gold_reward,
    make_world,
    token_log_probs,
)


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)
    return make_world(WorldSpec())


def test_enumeration_and_sft_normalised(world):
    assert world.seqs.shape == (6**4, 4)
    assert torch.equal(world.seqs[7], torch.tensor([0, 0, 1, 1]))  # 7 = 0011 in base 6
    assert torch.allclose(world.sft_logp.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert len(set(map(tuple, all_sequences(6, 3).tolist()))) == 216


def test_enumeration_over_prefixes_equals_teacher_forcing(world):
    policy = world.new_policy()  # random weights: nothing special about pi_SFT
    fast = enumerated_token_log_probs(policy, 3)
    slow = token_log_probs(policy, world.flat_prompts, world.flat_seqs).view(3, -1, 4)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.allclose(world.sft_token_logp.sum(-1), E.sequence_log_probs(world.sft, world))


def test_gold_rewards_by_hand():
    # words: the cat was good great bad
    seqs = torch.tensor([[3, 4, 0, 1], [3, 3, 3, 3], [5, 0, 0, 2], [3, 1, 2, 0]])
    prompts = torch.zeros(4, dtype=torch.long)
    targets = torch.tensor([[3, 1, 2, 0]])
    assert gold_reward("sentiment", seqs, prompts, targets).tolist() == [2, 4 - 6, -1 - 2, 1]
    assert gold_reward("count", seqs, prompts, targets).tolist() == [1, 4, 0, 1]
    assert gold_reward("pattern", seqs, prompts, targets).tolist() == [1, 1, 0, 4]


def test_optimum_satisfies_the_optimality_condition(world):
    beta = 0.3
    r = world.gold("sentiment")
    ref = world.sft_logp
    z = E.optimum_log_probs(ref, r, beta).clone().requires_grad_(True)
    J = E.objective(torch.log_softmax(z, -1), ref, r, beta).sum()
    (grad,) = torch.autograd.grad(J, z)
    assert grad.abs().max() < 1e-5  # stationary on the simplex
    best = float(J.detach())
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1e-1, 1.0):
        for _ in range(5):
            zp = z.detach() + scale * torch.randn(z.shape, generator=g)
            assert float(E.objective(torch.log_softmax(zp, -1), ref, r, beta).sum()) <= best + 1e-6
    # J(pi) = beta log Z - beta KL(pi || pi*), for any pi
    lp = torch.log_softmax(torch.randn(ref.shape, generator=g), -1)
    logz = torch.logsumexp(ref + r / beta, -1)
    lhs = E.objective(lp, ref, r, beta)
    rhs = beta * logz - beta * E.kl(lp, E.optimum_log_probs(ref, r, beta))
    assert torch.allclose(lhs, rhs, atol=1e-3)


def test_win_rate_by_hand():
    gold = torch.tensor([[0.0, 1.0, 1.0, 2.0]])
    ref = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25]]))
    lp = torch.log(torch.tensor([[0.0, 0.5, 0.0, 0.5]]) + 1e-30)
    # y=1: beats 0.25, ties 0.5 -> 0.5;  y=3: beats 0.75, ties 0.25 -> 0.875
    assert float(E.win_rate(lp, ref, gold)) == pytest.approx(0.5 * 0.5 + 0.5 * 0.875)
    assert float(E.win_rate(ref, ref, gold)) == pytest.approx(0.5)


def test_bt_loss_by_hand():
    loss = bt_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    expected = 0.5 * (math.log1p(math.exp(-1)) + math.log1p(math.exp(1)))
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_dpo_and_ipo_losses_by_hand():
    args = (torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]))
    losses, chosen, rejected = dpo_loss(*args, beta=0.5)
    # h_w = 0.5, h_l = -0.5: L = -log sigma(0.5 * 1) = log(1 + e^-0.5)
    assert float(losses) == pytest.approx(math.log1p(math.exp(-0.5)), abs=1e-6)
    assert float(chosen) == pytest.approx(0.25) and float(rejected) == pytest.approx(-0.25)
    ipo, _, _ = dpo_loss(*args, beta=0.25, loss_type="ipo")
    assert float(ipo) == pytest.approx((1.0 - 2.0) ** 2)


def test_dpo_implied_reward_recovers_r_up_to_a_constant():
    """Minimise the population DPO loss (all pairs, pi_SFT-weighted, BT labels) over a tabular
    policy: beta log pi/pi_SFT - r is then the same for every response of a prompt."""
    g = torch.Generator().manual_seed(1)
    P, N, beta = 2, 12, 0.5
    ref = torch.log_softmax(torch.randn(P, N, generator=g, dtype=torch.float64), -1)
    r = torch.randn(P, N, generator=g, dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    weight = ref.exp()[:, i] * ref.exp()[:, j]  # both responses ~ pi_SFT
    p_first = torch.sigmoid(r[:, i] - r[:, j])  # Bradley-Terry on r
    z = ref.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [z],
        max_iter=2000,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        lp = torch.log_softmax(z, -1)
        fwd, _, _ = dpo_loss(lp[:, i], lp[:, j], ref[:, i], ref[:, j], beta)
        bwd, _, _ = dpo_loss(lp[:, j], lp[:, i], ref[:, j], ref[:, i], beta)
        loss = (weight * (p_first * fwd + (1 - p_first) * bwd)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    implied = beta * (torch.log_softmax(z.detach(), -1) - ref)
    gap = implied - r
    assert (gap - gap.mean(-1, keepdim=True)).abs().max() < 1e-4
    # ... so the DPO optimum is pi*_beta of r
    assert (
        float(E.kl(torch.log_softmax(z.detach(), -1), E.optimum_log_probs(ref, r, beta)).max())
        < 1e-8
    )


def test_rloo_estimator_is_unbiased(world):
    """Mean of RLOO gradients over many batches vs the exact gradient of E[r] - beta KL,
    along the exact gradient and three random directions, within 4 standard errors."""
    torch.manual_seed(0)
    policy = world.new_policy()
    policy.load_state_dict(world.sft.state_dict())
    with torch.no_grad():  # move away from pi_SFT so the KL term matters
        for p in policy.parameters():
            p.add_(0.2 * torch.randn_like(p))
    params = list(policy.parameters())
    beta, k = 0.5, 4
    r = world.gold("sentiment")
    lp = E.sequence_log_probs(policy, world)
    J = E.objective(lp, world.sft_logp, r, beta).mean()
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(J, params)])
    gen = torch.Generator().manual_seed(0)
    dirs = torch.stack([exact / exact.norm(), *torch.randn(3, exact.numel(), generator=gen)])
    with torch.no_grad():
        tok_all = token_log_probs(policy, world.flat_prompts, world.flat_seqs).view(3, -1, 4)
    probs = tok_all.sum(-1).exp()
    proj = []
    prompts = torch.arange(3).repeat_interleave(k)
    for _ in range(300):
        idx = torch.multinomial(probs, k, replacement=True, generator=gen).reshape(-1)
        seqs = world.seqs[idx]
        old = tok_all[prompts, idx]
        ref = world.sft_token_logp[prompts, idx]
        R = r[prompts, idx] - beta * kl_estimate(old, ref, "k1").sum(-1)
        logp = token_log_probs(policy, prompts, seqs).sum(-1)
        # rloo_loss averages over all P*k rows; J is a mean over prompts: same scale
        loss = rloo_loss(logp, rloo_advantages(R, k))
        g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(-loss, params)])
        proj.append(dirs @ g)
    proj = torch.stack(proj)
    mean, se = proj.mean(0), proj.std(0) / math.sqrt(len(proj))
    target = dirs @ exact
    assert ((mean - target).abs() <= 4 * se + 1e-6).all(), (mean, target, se)
    assert float(target[0]) > 6 * float(se[0])  # the test has power: the gradient is resolved


def test_advantage_estimators_by_hand():
    R = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    assert rloo_advantages(R, 3).tolist() == [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]
    assert torch.allclose(group_advantages(R, 3, "none"), torch.tensor([-1.0, 0, 1, 0, 0, 0]))
    a = group_advantages(R, 3, "group")
    assert torch.allclose(a[:3], torch.tensor([-1.0, 0, 1]) / (1 + 1e-4))
    with pytest.raises(ValueError, match="k: 1"):
        rloo_advantages(R, 1)
    logp = torch.tensor([1.0, 1.0])
    assert float(reinforce_loss(logp, torch.tensor([1.0, 3.0]), 2, "mean")) == pytest.approx(0.0)
    assert float(reinforce_loss(logp, torch.tensor([1.0, 3.0]), 2, "none")) == pytest.approx(-2.0)


def test_kl_estimators_and_ppo_rewards_by_hand():
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-2.0, -2.0]])
    assert kl_estimate(lp, ref, "k1").tolist() == [[1.0, 0.0]]
    assert kl_estimate(lp, ref, "k3")[0, 0] == pytest.approx(math.exp(-1) - 1 + 1)
    rw = per_token_rewards(torch.tensor([5.0]), lp, ref, 0.5, "k1")
    assert rw.tolist() == [[-0.5, 5.0]]
    adv, ret = response_advantages(rw, torch.tensor([[1.0, 2.0]]), 1.0, 1.0)
    # lambda = 1, gamma = 1: A_t = sum of rewards from t on - V_t
    assert ret.tolist() == [[4.5, 5.0]] and adv.tolist() == [[3.5, 3.0]]


def test_pairs_and_accuracy(world):
    gold = world.gold("sentiment")
    g = torch.Generator().manual_seed(0)
    noiseless = label_pairs(world, gold, 400, 0.0, g)
    rw, rl = gold[noiseless.prompts, noiseless.chosen], gold[noiseless.prompts, noiseless.rejected]
    assert (rw >= rl).all()
    noisy = label_pairs(world, gold, 2000, 5.0, g)
    assert 0.5 < pair_accuracy(gold, noisy) < 0.9  # T = 5: many labels flipped
