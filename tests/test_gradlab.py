"""Gradient Lab: unbiasedness against exact gradients, variance ordering, CLI JSON, sweeps."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pglab.cli import main
from pglab.gradlab import ESTIMATORS, bias_ci, run_gradlab, sweep_batch_size, sweep_lambda

CORRIDOR = "pglab/ShortCorridor-v0"


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _max_z(est: torch.Tensor, target: torch.Tensor) -> float:
    """Largest |z| of the per-coordinate mean of K batch estimates against ``target``."""
    mean = est.double().mean(0)
    se = est.double().std(0) / math.sqrt(est.shape[0])
    t = target.double()
    # coordinates no sampled episode touched (rarely visited states): their true gradient
    # must be small, or the sample would have missed something that matters
    fixed = se == 0
    assert float((mean[fixed] - t[fixed]).norm()) < 0.1 * float(t.norm())
    return float(((mean - t).abs()[~fixed] / se[~fixed]).max())


def test_corridor_unbiased_estimators_match_exact_gradient():
    m, K = 8, 300
    theta = [[0.0, math.log(0.4 / 0.6)]]  # p(right) = 0.4: not the uniform policy
    res = run_gradlab(
        CORRIDOR, episodes=m, batches=K, seed=3, policy_config={"kind": "tabular", "theta": theta}
    )
    g = res.exact_grad
    assert res.value_source == "exact" and res.reference_kind == "exact"
    for name in ["total", "rtg", "rtg_loo", "rtg_value", "td0", "nstep", "gae"]:
        assert _max_z(res.stats[name].batch_estimates, g) < 5.0, name
    # batch-mean baselines include the episode itself: E g = (1 - 1/m) grad J exactly (gamma=1)
    for name in ["rtg_const", "rtg_time"]:
        assert _max_z(res.stats[name].batch_estimates, (1 - 1 / m) * g) < 5.0, name
    # the check has power: the low-variance td0 (exact V) rejects a gradient 10% too short
    assert _max_z(res.stats["td0"].batch_estimates, 0.9 * g) > 5.0
    # exact-V advantages cut the variance by orders of magnitude
    assert res.stats["td0"].variance < 0.05 * res.stats["rtg"].variance


def test_frozenlake_env_episodes_match_exact_gradient():
    # sampled by stepping gymnasium's env, compared with the model built from its table
    res = run_gradlab(
        "FrozenLake-v1",
        episodes=16,
        batches=40,
        seed=1,
        estimators="total,rtg,rtg_loo,rtg_value,gae",
        sampler="env",
        value="exact",
        gamma=0.99,
    )
    assert res.horizon == 100
    for name, s in res.stats.items():
        assert _max_z(s.batch_estimates, res.exact_grad) < 5.0, name
        lo, hi = s.rel_bias_ci95
        assert lo <= s.rel_bias <= hi


def test_cartpole_variance_ordering():
    res = run_gradlab(
        "CartPole-v1",
        episodes=16,
        batches=10,
        seed=0,
        estimators="total,rtg,rtg_value",
        reference_batches=0,
    )
    v = {n: s.variance for n, s in res.stats.items()}
    assert res.value_source == "fitted"
    assert v["total"] > v["rtg"] > v["rtg_value"], v
    assert res.exact_grad is None and math.isnan(res.stats["rtg"].cosine)


def test_cli_json_keys(capsys):
    rc = main(["gradlab", "--env", CORRIDOR, "--episodes", "4", "--batches", "3", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("env", "gamma", "horizon", "policy", "exact", "estimators"):
        assert key in out
    assert out["env"] == CORRIDOR and out["gamma"] == 1.0 and out["horizon"] == 100
    assert out["policy"] == {"kind": "tabular", "theta": [[0.0, 0.0]]}
    assert set(out["exact"]) >= {"J", "grad"} and len(out["exact"]["grad"][0]) == 2
    assert set(out["estimators"]) == set(ESTIMATORS)
    for s in out["estimators"].values():
        assert set(s) >= {"mean", "variance", "snr", "cosine", "rel_bias", "rel_bias_ci95"}
        assert len(s["rel_bias_ci95"]) == 2
    rc = main(["gradlab", "--env", CORRIDOR, "--episodes", "4", "--batches", "2"])
    assert rc == 0 and "exact J" in capsys.readouterr().out


def test_bad_inputs_name_the_field(capsys):
    assert main(["gradlab", "--env", "CartPole-v1", "--estimators", "rtg,nope"]) == 2
    assert "estimators" in capsys.readouterr().err
    assert main(["gradlab", "--env", "NoSuchEnv-v9"]) == 2
    assert "env_id" in capsys.readouterr().err
    with pytest.raises(ValueError, match="episodes"):
        run_gradlab(CORRIDOR, episodes=1)
    with pytest.raises(ValueError, match="value"):
        run_gradlab("CartPole-v1", value="exact")


def test_sweeps():
    df = sweep_batch_size(CORRIDOR, [4, 16], "rtg", batches=30, seed=0)
    assert list(df["batch_size"]) == [4, 16]
    v4, v16 = df["variance"]
    assert v4 > 2.0 * v16  # 1/m: four times more episodes, about a quarter of the variance
    lam = sweep_lambda(CORRIDOR, [0.0, 0.5, 1.0], batches=20, episodes=8, seed=0)
    assert list(lam["gae_lambda"]) == [0.0, 0.5, 1.0]
    assert lam["variance"].iloc[0] < lam["variance"].iloc[2]


def test_bias_ci_covers_and_detects():
    gen = torch.Generator().manual_seed(0)
    target = torch.tensor([1.0, -2.0, 0.5])
    unbiased = target + 0.3 * torch.randn(200, 3, generator=gen)
    rel, (lo, hi) = bias_ci(unbiased, target)
    assert lo == 0.0 and hi < 0.1 and rel <= hi
    biased = target * 1.2 + 0.3 * torch.randn(200, 3, generator=gen)
    rel, (lo, hi) = bias_ci(biased, target)
    assert 0.15 < lo <= rel <= hi < 0.25
