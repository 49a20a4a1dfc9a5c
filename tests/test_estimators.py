"""Estimators of Psi_t: hand-computed values, identities, loop == vectorised."""

from __future__ import annotations

import pytest
import torch

from pglab.estimators import (
    constant_baseline,
    discounted_returns,
    episode_reward_to_go,
    episode_scores,
    gae,
    loo_baseline,
    min_variance_baseline,
    nstep_advantage,
    td0_advantage,
    time_baseline,
    total_return,
)

R = torch.tensor([[1.0], [2.0], [3.0]])
V = torch.tensor([[0.5], [1.0], [1.5]])
NV = torch.tensor([[1.0], [1.5], [10.0]])
Z = torch.zeros(3, 1, dtype=torch.bool)


def _flag(t: int) -> torch.Tensor:
    f = Z.clone()
    f[t] = True
    return f


def test_discounted_returns_hand_and_terminated_vs_truncated():
    g = discounted_returns(R, Z, Z, 0.5)
    assert torch.allclose(g[:, 0], torch.tensor([2.75, 3.5, 3.0]))
    nv = torch.tensor([[0.0], [10.0], [0.0]])
    trunc = discounted_returns(R, Z, _flag(1), 0.5, nv)
    term = discounted_returns(R, _flag(1), Z, 0.5, nv)
    assert torch.allclose(trunc[:, 0], torch.tensor([4.5, 7.0, 3.0]))
    assert torch.allclose(term[:, 0], torch.tensor([2.0, 2.0, 3.0]))
    # the only difference is the bootstrap gamma * V(s_2) = 5 at t=1, discounted back to t=0
    assert torch.allclose(trunc - term, torch.tensor([[2.5], [5.0], [0.0]]))


def test_td0_hand_and_gae_identities():
    td = td0_advantage(R, V, NV, _flag(2), 0.5)
    assert torch.allclose(td[:, 0], torch.tensor([1 + 0.5 - 0.5, 2 + 0.75 - 1.0, 3 - 1.5]))
    g0 = gae(R, V, NV, _flag(2), Z, 0.5, 0.0)
    assert torch.allclose(g0, td)
    torch.manual_seed(0)
    T, N = 7, 4
    r, v, nv = torch.randn(T, N), torch.randn(T, N), torch.randn(T, N)
    term = torch.rand(T, N) < 0.2
    trunc = (torch.rand(T, N) < 0.2) & ~term
    # consistent values: inside an episode V(s_{t+1}) is the next row's V(s_t)
    inside = ~(term | trunc)[:-1]
    nv[:-1][inside] = v[1:][inside]
    lam1 = gae(r, v, nv, term, trunc, 0.9, 1.0)
    mc = discounted_returns(r, term, trunc, 0.9, nv) - v
    # the last row is bootstrapped by discounted_returns, so bootstrap it in gae too
    trunc_last = trunc.clone()
    trunc_last[-1] = ~term[-1]
    assert torch.allclose(gae(r, v, nv, term, trunc_last, 0.9, 1.0), mc, atol=1e-5)
    assert torch.allclose(lam1, mc, atol=1e-5)
    assert torch.allclose(
        gae(r, v, nv, term, trunc, 0.9, 0.0), td0_advantage(r, v, nv, term, 0.9), atol=1e-6
    )


def test_gae_hand():
    # gamma=0.5, lambda=0.5, no ends inside: A_2 = d_2, A_1 = d_1 + 0.25 d_2, A_0 = d_0 + 0.25 A_1
    d = td0_advantage(R, V, NV, Z, 0.5)[:, 0]
    a = gae(R, V, NV, Z, Z, 0.5, 0.5)[:, 0]
    a2 = d[2]
    a1 = d[1] + 0.25 * a2
    assert torch.allclose(a, torch.stack([d[0] + 0.25 * a1, a1, a2]))


def _nstep_loop(r, v, nv, term, trunc, gamma, n):
    T, N = r.shape
    out = torch.zeros(T, N)
    for i in range(N):
        for t in range(T):
            ret, disc = 0.0, 1.0
            for k in range(n):
                s = t + k
                ret += disc * float(r[s, i])
                disc *= gamma
                end = bool(term[s, i] or trunc[s, i]) or s == T - 1
                if end or k == n - 1:
                    if not term[s, i]:
                        ret += disc * float(nv[s, i])
                    break
            out[t, i] = ret - float(v[t, i])
    return out


def test_nstep_hand_identities_and_loop():
    a = nstep_advantage(R, V, NV, Z, Z, 0.5, 2)[:, 0]
    want = torch.tensor(
        [1 + 0.5 * 2 + 0.25 * 1.5 - 0.5, 2 + 0.5 * 3 + 0.25 * 10 - 1.0, 3 + 5 - 1.5]
    )
    assert torch.allclose(a, want)
    torch.manual_seed(1)
    T, N = 9, 5
    r, v, nv = torch.randn(T, N), torch.randn(T, N), torch.randn(T, N)
    term = torch.rand(T, N) < 0.2
    trunc = (torch.rand(T, N) < 0.15) & ~term
    for n in (1, 2, 3, 20):
        got = nstep_advantage(r, v, nv, term, trunc, 0.9, n)
        assert torch.allclose(got, _nstep_loop(r, v, nv, term, trunc, 0.9, n), atol=1e-5)
    assert torch.allclose(
        nstep_advantage(r, v, nv, term, trunc, 0.9, 1), td0_advantage(r, v, nv, term, 0.9)
    )
    trunc_last = trunc.clone()
    trunc_last[-1] = ~term[-1]
    mc = discounted_returns(r, term, trunc, 0.9, nv) - v
    assert torch.allclose(nstep_advantage(r, v, nv, term, trunc, 0.9, T), mc, atol=1e-5)
    with pytest.raises(ValueError, match="n:"):
        nstep_advantage(r, v, nv, term, trunc, 0.9, 0)


# episode batch [L, E]: episode 0 = rewards (1, 2, 3), episode 1 = (4,), episode 2 = (0, 2)
ER = torch.tensor([[1.0, 4.0, 0.0], [2.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
EM = torch.tensor([[True, True, True], [True, False, True], [True, False, False]])


def test_episode_batch_weights_hand():
    G = episode_reward_to_go(ER, EM, 0.5)
    assert torch.allclose(G, torch.tensor([[2.75, 4.0, 1.0], [3.5, 0.0, 2.0], [3.0, 0.0, 0.0]]))
    tot = total_return(ER, EM, 0.5)
    assert torch.allclose(tot, torch.tensor([[2.75, 4.0, 1.0], [2.75, 0.0, 1.0], [2.75, 0.0, 0.0]]))
    assert float(constant_baseline(G, EM)) == pytest.approx((2.75 + 4.0 + 1.0) / 3)
    assert torch.allclose(time_baseline(G, EM)[:, 0], torch.tensor([7.75 / 3, 5.5 / 3, 1.0]))
    assert torch.allclose(loo_baseline(G, EM)[0], torch.tensor([2.5, 1.875, 3.375]))
    # variance-optimal constant, leave-one-out: b_i = sum_{j!=i} y_j.z_j / sum_{j!=i} |z_j|^2
    y = torch.tensor([[1.0, 0.0], [2.0, 2.0], [0.0, 1.0]])  # y.z = 1, 2, 2
    z = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 2.0]])  # |z|^2 = 2, 1, 4
    assert min_variance_baseline(y, z)[0].tolist() == pytest.approx([4 / 5, 3 / 6, 3 / 3])
    zero = torch.zeros(3, 2)
    assert min_variance_baseline(y, zero).tolist() == [[0.0, 0.0, 0.0]]  # no score: b = 0
    with pytest.raises(ValueError, match="episodes"):
        min_variance_baseline(y[:1], z[:1])
    assert episode_scores(
        z, torch.tensor([2.0, 1.0, 1.0]), torch.tensor([0, 0, 1]), 2
    ).tolist() == [
        [3.0, 2.0],
        [0.0, 2.0],
    ]
    with pytest.raises(ValueError, match="episodes"):
        loo_baseline(G[:, :1], EM[:, :1])
    # inputs untouched (pure functions)
    assert torch.equal(ER[0], torch.tensor([1.0, 4.0, 0.0]))


@pytest.mark.parametrize("gae_lambda", [0.0, 0.8, 1.0])
def test_compiled_gae_equals_torch_gae(gae_lambda: float) -> None:
    """The CPU trainers' compiled GAE (pglab.kernels.gae) is the same recursion as gae()."""
    from pglab import kernels

    g = torch.Generator().manual_seed(0)
    T, N = 40, 5
    r, v, nv = (torch.randn(T, N, generator=g) for _ in range(3))
    term = torch.rand(T, N, generator=g) < 0.1
    trunc = (torch.rand(T, N, generator=g) < 0.1) & ~term
    ref = gae(r, v, nv, term, trunc, 0.97, gae_lambda)
    out = kernels.gae(
        r.numpy(), v.numpy(), nv.numpy(), term.numpy(), trunc.numpy(), 0.97, gae_lambda
    )
    assert out.dtype == r.numpy().dtype
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discounted_returns_compiled_equals_the_torch_loop_bit_for_bit(dtype) -> None:
    """The CPU kernel (pglab.kernels.discounted_returns) against the loop, which a tensor that
    requires grad (or CUDA) takes: the same float operations in the same order."""
    g = torch.Generator().manual_seed(0)
    for T, N in [(1, 1), (7, 3), (500, 1), (300, 17)]:
        r = torch.randn(T, N, generator=g, dtype=dtype)
        term = torch.rand(T, N, generator=g) < 0.05
        trunc = torch.rand(T, N, generator=g) < 0.05
        nv = torch.randn(T, N, generator=g, dtype=dtype)
        for gamma in (0.99, 0.9, 1.0):
            for next_values in (None, nv):
                fast = discounted_returns(r, term, trunc, gamma, next_values)
                loop = discounted_returns(r.requires_grad_(), term, trunc, gamma, next_values)
                r.requires_grad_(False)
                assert torch.equal(fast, loop.detach())
    rt = torch.randn(5, 4, dtype=dtype).t()  # a strided view: written in place, same values
    z = torch.zeros_like(rt, dtype=torch.bool)
    assert torch.equal(
        discounted_returns(rt, z, z, 0.9),
        discounted_returns(rt.clone().requires_grad_(), z, z, 0.9).detach(),
    )
