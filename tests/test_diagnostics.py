"""Per-episode gradient samples: vectorised pass == a plain loop of backward calls."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from pglab.diagnostics import grad_samples, grad_stats, policy_grad_diagnostics, score_dots
from pglab.policies import LinearSoftmax, TabularSoftmax, log_prob, make_policy


def _loop_samples(policy, obs, actions, weights, segments, m):
    """Reference: one backward call per segment."""
    rows = []
    for i in range(m):
        policy.zero_grad()
        sel = segments == i
        if sel.any():
            (log_prob(policy(obs[sel]), actions[sel]) * weights[sel]).sum().backward()
        rows.append(
            torch.cat(
                [
                    (p.grad if p.grad is not None and sel.any() else torch.zeros_like(p)).reshape(
                        -1
                    )
                    for p in policy.parameters()
                ]
            )
        )
    return torch.stack(rows)


def _cases():
    torch.manual_seed(0)
    cart = gym.make("CartPole-v1")
    pend = gym.make("Pendulum-v1")
    B = 57
    # CategoricalMLP on CartPole-shaped inputs
    pol = make_policy(cart.observation_space, cart.action_space, hidden_size=16)
    yield pol, torch.randn(B, 4), torch.randint(0, 2, (B,))
    # GaussianMLP (its free log_std parameter too)
    pol = make_policy(pend.observation_space, pend.action_space, hidden_size=16, log_std_init=-0.3)
    yield pol, torch.randn(B, 3), torch.randn(B, 1)
    # TabularSoftmax with a non-uniform theta
    yield (
        TabularSoftmax(5, 3, torch.randn(5, 3)),
        torch.randint(0, 5, (B,)),
        torch.randint(0, 3, (B,)),
    )
    # LinearSoftmax with random state-action features
    feats = torch.randn(4, 3, 6)
    yield LinearSoftmax(feats, torch.randn(6)), torch.randint(0, 4, (B,)), torch.randint(0, 3, (B,))


@pytest.mark.parametrize("case", list(range(4)))
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_grad_samples_equal_loop_of_backwards(case, chunk_size):
    policy, obs, actions = list(_cases())[case]
    B = obs.shape[0]
    m = 9
    g = torch.Generator().manual_seed(case)
    segments = torch.randint(0, m, (B,), generator=g)
    segments[segments == 4] = 5  # segment 4 is empty: its row must be zero
    segments[:20] = 7  # one long segment (several pieces)
    weights = torch.randn(B, generator=g)
    got = grad_samples(policy, obs, actions, weights, segments, m, chunk_size=chunk_size)
    want = _loop_samples(policy, obs, actions, weights, segments, m)
    P = sum(p.numel() for p in policy.parameters())
    assert got.shape == (m, P)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert torch.all(got[4] == 0)


@pytest.mark.parametrize("case", list(range(4)))
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_score_dots_equal_the_dots_of_the_full_samples(case, chunk_size):
    """The streamed y.z and z.z (min-variance baseline) equal those of the [m, P] samples."""
    policy, obs, actions = list(_cases())[case]
    B, m = obs.shape[0], 9
    g = torch.Generator().manual_seed(10 + case)
    segments = torch.randint(0, m, (B,), generator=g)
    segments[segments == 4] = 5  # an empty segment: both dots 0
    w_y, w_z = torch.randn(B, generator=g), torch.ones(B)
    yz, zz = score_dots(policy, obs, actions, w_y, w_z, segments, m, chunk_size=chunk_size)
    y = grad_samples(policy, obs, actions, w_y, segments, m).double()
    z = grad_samples(policy, obs, actions, w_z, segments, m).double()
    assert torch.allclose(yz, (y * z).sum(1), rtol=1e-4, atol=1e-6)
    assert torch.allclose(zz, z.pow(2).sum(1), rtol=1e-4, atol=1e-6)
    assert yz[4] == 0 and zz[4] == 0


def test_grad_samples_reject_bad_segments():
    pol = TabularSoftmax(2, 2)
    with pytest.raises(ValueError, match="segment ids"):
        grad_samples(pol, torch.zeros(3), torch.zeros(3), torch.ones(3), torch.tensor([0, 1, 2]), 2)


def test_grad_stats_hand_computed():
    s = torch.tensor([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]])
    st = grad_stats(s)
    assert torch.allclose(st["mean"], torch.tensor([2.0, 2.0]))
    # per-coordinate unbiased variances: 1 and 4 -> trace 5, divided by m = 3
    assert st["variance"] == pytest.approx(5.0 / 3.0)
    assert st["snr"] == pytest.approx(8.0 / (5.0 / 3.0))
    single = grad_stats(s[:1])
    assert single["variance"] != single["variance"]  # NaN: undefined with one sample


def test_policy_grad_diagnostics_keys_and_absence():
    pol = TabularSoftmax(3, 2, torch.tensor([[0.5, -0.5], [0.0, 1.0], [2.0, 0.0]]))
    obs = torch.tensor([0, 1, 2, 0, 1, 2])
    actions = torch.tensor([0, 1, 1, 0, 0, 1])
    w = torch.tensor([1.0, -2.0, 0.5, 1.5, 1.0, -1.0])
    seg = torch.tensor([0, 0, 1, 1, 2, 2])
    d = policy_grad_diagnostics(pol, obs, actions, w, seg, 3)
    st = grad_stats(_loop_samples(pol, obs, actions, w, seg, 3))
    assert set(d) == {"diag/grad_var", "diag/grad_snr"}
    assert d["diag/grad_var"] == pytest.approx(st["variance"], rel=1e-5)
    assert d["diag/grad_snr"] == pytest.approx(st["snr"], rel=1e-5)
    # one segment: the variance is undefined, so both metrics are absent (not a fake zero)
    assert policy_grad_diagnostics(pol, obs, actions, w, torch.zeros(6, dtype=torch.long), 1) == {}
