"""TRPO: the conjugate-gradient and line-search maths exactly, the KL-Hessian = Fisher identity
behind the Fisher-vector product, and short runs on Discrete and Box actions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical

from pglab.algos import make_trainer
from pglab.algos.trpo import (
    TRPO,
    TRPOConfig,
    backtracking_line_search,
    conjugate_gradient,
    flat_grad,
    mean_kl,
)
from pglab.metrics import METRICS

torch.set_num_threads(1)


def _spd(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    return M @ M.T + 0.5 * torch.eye(n, dtype=torch.float64)


def test_conjugate_gradient_solves_small_spd_system_in_n_iterations():
    A = _spd(6)
    b = torch.arange(1.0, 7.0, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=6, residual_tol=0.0)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=0, atol=1e-9)


def test_conjugate_gradient_is_approximate_with_fewer_iterations_and_stops_at_tolerance():
    A = _spd(6, seed=1)
    b = torch.ones(6, dtype=torch.float64)
    exact = torch.linalg.solve(A, b)
    x2 = conjugate_gradient(lambda v: A @ v, b, iters=2)
    assert (x2 - exact).norm() > 1e-6  # two Krylov directions cannot solve a generic 6-d system
    calls = []
    x0 = conjugate_gradient(lambda v: calls.append(v) or A @ v, torch.zeros(6), iters=10)
    assert calls == [] and torch.equal(x0, torch.zeros(6))  # b = 0: solved at x = 0


def test_line_search_takes_first_step_within_max_kl():
    # A quadratic trust region: improvement grows with the step, KL = 0.05 * f^2.
    tried = []

    def evaluate(f: float) -> tuple[float, float]:
        tried.append(f)
        return f, 0.05 * f * f

    res = backtracking_line_search(evaluate, max_kl=0.01, max_steps=10, decay=0.5)
    # 1 -> KL .05, 0.5 -> .0125, 0.25 -> .003125: the third candidate is the first allowed.
    assert tried == [1.0, 0.5, 0.25]
    assert res.ok and res.steps == 3 and res.fraction == 0.25
    assert res.kl == pytest.approx(0.003125) and res.kl <= 0.01
    assert res.improvement == 0.25


def test_line_search_reports_failure_when_no_step_improves():
    res = backtracking_line_search(lambda f: (-f, 0.0), max_kl=0.01, max_steps=7, decay=0.8)
    assert not res.ok and res.steps == 7 and res.fraction == 0.0 and res.kl == 0.0
    # NaN objective or KL never counts as an improvement.
    res = backtracking_line_search(lambda f: (math.nan, 0.0), 0.01, 3, 0.5)
    assert not res.ok
    res = backtracking_line_search(lambda f: (1.0, math.nan), 0.01, 3, 0.5)
    assert not res.ok


def test_kl_hessian_is_the_fisher_matrix():
    """The FVP differentiates grad KL once more: at theta_old that Hessian is the exact Fisher
    matrix  F = E_s sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 4).double()
    params = list(net.parameters())
    obs = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        old = Categorical(logits=net(obs))
    kl_grad = flat_grad(mean_kl(old, Categorical(logits=net(obs))), params, create_graph=True)
    P = kl_grad.numel()
    H = torch.stack([flat_grad(kl_grad[i], params) for i in range(P)])
    F = torch.zeros(P, P, dtype=torch.float64)
    for s in range(obs.shape[0]):
        logp = torch.log_softmax(net(obs[s]), -1)
        for a in range(4):
            score = flat_grad(logp[a], params)
            F += logp[a].exp().detach() * torch.outer(score, score)
    torch.testing.assert_close(H, F / obs.shape[0], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_trpo_smoke_step_stays_inside_trust_region(env_id):
    cfg = TRPOConfig(
        env_id=env_id, total_steps=512, n_steps=128, num_envs=2, vf_iters=2, max_kl=0.01
    )
    trainer = TRPO(cfg, seed=0)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    while not trainer.done:
        m = trainer.update()
        assert set(m) <= set(METRICS), set(m) - set(METRICS)
        for key in ("loss/policy", "loss/value", "trpo/line_search_ok", "trpo/kl", "diag/grad_var"):
            assert key in m
        assert m["trpo/kl"] <= cfg.max_kl
        assert 1 <= m["trpo/line_search_steps"] <= cfg.line_search_steps
        assert "opt/learning_rate" not in m  # TRPO has no policy learning rate
    assert trainer.env_steps == 512
    moved = any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))
    assert moved
    if env_id == "Pendulum-v1":  # the natural-gradient step moves the Gaussian's log_std too
        assert not torch.equal(before[-1], trainer.policy.log_std.detach())
    trainer.close()


def test_trpo_same_seed_same_metrics():
    settings = {"total_steps": 256, "n_steps": 64, "num_envs": 2, "vf_iters": 2}

    def run() -> list[dict[str, float]]:
        t = make_trainer("trpo", settings, seed=3)
        out = []
        while not t.done:
            out.append({k: v for k, v in t.update().items() if not k.startswith("time/")})
        t.close()
        return out

    assert run() == run()


@pytest.mark.parametrize(("env_id", "n_layers"), [("CartPole-v1", 2), ("Pendulum-v1", 1)])
def test_hand_gradient_and_fisher_vector_product_equal_autograd(env_id, n_layers):
    """g = grad L and F v by hand (forward-mode J v, then J^T M J v / B) against autograd's
    gradient and double backward through the mean KL, on the same batch."""
    cfg = TRPOConfig(env_id=env_id, n_steps=64, num_envs=2, hidden_size=16, n_layers=n_layers)
    tr = TRPO(cfg, seed=1)
    bp = tr.backprop
    assert bp is not None
    batch = tr.collect(cfg.n_steps)
    obs, actions = batch.obs.flatten(0, 1), batch.actions.flatten(0, 1)
    adv = torch.randn(obs.shape[0], generator=torch.Generator().manual_seed(0))
    params = list(tr.policy.parameters())
    with torch.no_grad():
        old = tr.policy(obs)
        old_lp = old.log_prob(actions) if env_id == "CartPole-v1" else old.log_prob(actions).sum(-1)
    new = tr.policy(obs)
    lp = new.log_prob(actions) if env_id == "CartPole-v1" else new.log_prob(actions).sum(-1)
    g_ref = flat_grad((torch.exp(lp - old_lp) * adv).mean(), params)
    kl_grad = flat_grad(mean_kl(old, tr.policy(obs)), params, create_graph=True)
    v = torch.randn(g_ref.numel(), generator=torch.Generator().manual_seed(1))
    fv_ref = flat_grad(torch.dot(kl_grad, v), params)

    with torch.no_grad():
        _, dist = tr._np_policy(obs, actions.numpy())
        bp.forward(obs, actions.numpy())
        bp.backward(adv.numpy() / obs.shape[0], 0.0)
        g = tr.policy_params.grad.clone()
        fv = bp.fisher_vector_product(v, dist)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fv, fv_ref, rtol=1e-4, atol=1e-6)
    tr.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_cpu_fast_path_equals_autograd_path(env_id):
    """Two whole updates (rollout, natural-gradient step, line search, critic epochs) by hand
    with the numpy actor and through autograd with torch sampling (CUDA's path), same seed."""
    settings = {
        "env_id": env_id, "total_steps": 10_000, "n_steps": 64, "num_envs": 2, "vf_iters": 2,
        "vf_batch_size": 32, "hidden_size": 16,
    }  # fmt: skip
    fast, slow = make_trainer("trpo", settings, seed=2), make_trainer("trpo", settings, seed=2)
    assert fast.backprop is not None and fast.vf_backprop is not None
    slow.backprop, slow.vf_backprop, slow._numpy_actor = None, None, None
    for _ in range(2):
        m_fast, m_slow = fast.update(), slow.update()
        assert m_fast.keys() == m_slow.keys()
        for name, v in m_fast.items():
            if not name.startswith("time/"):
                assert v == pytest.approx(m_slow[name], rel=1e-3, abs=1e-5), name
    torch.testing.assert_close(fast.policy_params, slow.policy_params, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(fast.value_params, slow.value_params, rtol=1e-3, atol=1e-5)
    fast.close()
    slow.close()
