"""A2C: short runs on Discrete and Box actions, same-seed determinism, validation, and a small
learning test that must beat a random policy on CartPole by a wide margin."""

from __future__ import annotations

import math

import pytest
import torch

from pglab.algos import make_config, make_trainer
from pglab.algos.a2c import A2C, A2CConfig
from pglab.metrics import METRICS

torch.set_num_threads(1)

EXPECTED = {
    "loss/policy",
    "loss/value",
    "policy/entropy",
    "diag/approx_kl",
    "diag/approx_kl_k1",
    "diag/grad_norm",
    "diag/grad_var",
    "diag/grad_snr",
    "opt/learning_rate",
    "value/mean",
}


@pytest.mark.parametrize(
    ("env_id", "optimizer"), [("CartPole-v1", "rmsprop"), ("Pendulum-v1", "adam")]
)
def test_a2c_smoke(env_id, optimizer):
    cfg = A2CConfig(
        env_id=env_id, total_steps=400, num_envs=4, n_steps=10, optimizer=optimizer, ent_coef=0.01
    )
    trainer = A2C(cfg, seed=0)
    rows = []
    while not trainer.done:
        rows.append(trainer.update())
    assert trainer.env_steps == 400 and trainer.updates == 10
    assert trainer.diag_every == 5  # 40-step batches: the gradient diagnostic every 5th update
    for k, m in enumerate(rows):
        want = EXPECTED if k % 5 == 0 else EXPECTED - {"diag/grad_var", "diag/grad_snr"}
        assert want <= set(m) <= set(METRICS), (want - set(m), set(m) - set(METRICS))
        assert (k % 5 == 0) == ("diag/grad_var" in m)
        assert all(math.isfinite(v) for v in m.values())
        assert m["diag/approx_kl"] >= 0.0
    assert "trpo/kl" not in rows[-1] and "diag/clip_fraction" not in rows[-1]
    trainer.close()


def test_a2c_grad_diagnostics_can_be_switched_off():
    trainer = make_trainer("a2c", {"total_steps": 40, "grad_diagnostics": False}, seed=0)
    m = trainer.update()
    assert "diag/grad_var" not in m and "diag/grad_snr" not in m and "loss/policy" in m


def test_a2c_clips_the_global_gradient_norm():
    """With a tiny max_grad_norm the step is bounded: reported norm is before clipping."""
    trainer = make_trainer("a2c", {"total_steps": 40, "max_grad_norm": 1e-3}, seed=0)
    before = torch.cat([p.detach().flatten() for p in trainer.params])
    m = trainer.update()
    after = torch.cat([p.detach().flatten() for p in trainer.params])
    assert m["diag/grad_norm"] > 1e-3  # the unclipped norm is reported
    # RMSprop's first step divides by sqrt(0.01 g^2): each coordinate moves <= lr / 0.1.
    assert (after - before).abs().max() <= 7e-4 / 0.1 + 1e-6


def test_a2c_same_seed_same_metrics():
    def run(seed: int) -> list[dict[str, float]]:
        t = make_trainer("a2c", {"total_steps": 400, "n_steps": 5, "num_envs": 4}, seed=seed)
        out = []
        while not t.done:
            out.append({k: v for k, v in t.update().items() if not k.startswith("time/")})
        t.close()
        return out

    first = run(1)
    assert first == run(1)
    assert first != run(2)


def test_a2c_config_validation_names_the_field():
    with pytest.raises(ValueError, match="optimizer"):
        make_config("a2c", {"optimizer": "sgd"})
    with pytest.raises(ValueError, match="gae_lambda"):
        make_config("a2c", {"gae_lambda": 1.5})
    assert make_config("a2c", {"max_grad_norm": "none"}).max_grad_norm is None


@pytest.mark.slow
def test_a2c_learns_cartpole():
    """20k steps (a few seconds): the mean of the last 20 episodes must clear 100, while a
    uniformly random policy averages about 22."""
    trainer = make_trainer(
        "a2c", {"total_steps": 20_000, "num_envs": 8, "grad_diagnostics": False}, seed=0
    )
    assert trainer._fused_update() is not None  # the compiled update (pglab.fasta2c)
    while not trainer.done:
        trainer.update()
    assert trainer.final_return() > 100.0
    trainer.close()


@pytest.mark.parametrize("kernel", [True, False])
def test_flat_rmsprop_equals_torch_rmsprop(kernel: bool) -> None:
    from pglab.optim import FlatRMSprop

    g = torch.Generator().manual_seed(0)
    start = torch.randn(500, generator=g)
    if not kernel:  # the torch-ops path that CUDA takes, on CPU: float64 skips the kernel
        start = start.double()
    ours = torch.nn.Parameter(start.clone())
    ref = torch.nn.Parameter(start.clone())
    opt = FlatRMSprop(ours, lr=7e-4, alpha=0.99, eps=1e-5)
    ref_opt = torch.optim.RMSprop([ref], lr=7e-4, alpha=0.99, eps=1e-5, foreach=False)
    for step in range(50):
        grad = (torch.randn(500, generator=g) * (1 + step % 7)).to(start.dtype)
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        if kernel:  # float32 rounding apart at most, and not drifting over 50 steps
            torch.testing.assert_close(ours.data, ref.data, rtol=2e-6, atol=1e-7)
        else:
            torch.testing.assert_close(ours.data, ref.data, rtol=0, atol=0)
    assert not torch.equal(ours.data, start)


@pytest.mark.parametrize(
    ("env_id", "optimizer", "ent_coef", "norm_adv"),
    [("CartPole-v1", "rmsprop", 0.0, False), ("Pendulum-v1", "adam", 0.01, True)],
)
def test_cpu_fast_path_equals_autograd_path(env_id, optimizer, ent_coef, norm_adv):
    """Hand-written gradient (pglab.backprop), numpy actor and fused optimiser step against
    the autograd + torch-sampling path (CUDA's) over three updates from the same seed."""
    cfg = A2CConfig(
        env_id=env_id, total_steps=10_000, num_envs=4, n_steps=8, optimizer=optimizer,
        ent_coef=ent_coef, norm_adv=norm_adv, hidden_size=16,
    )  # fmt: skip
    fast, slow = A2C(cfg, seed=3), A2C(cfg, seed=3)
    assert fast.backprop is not None
    slow.backprop, slow._numpy_actor = None, None
    for _ in range(3):
        m_fast, m_slow = fast.update(), slow.update()
        assert m_fast.keys() == m_slow.keys()
        for name, v in m_fast.items():
            if not name.startswith("time/"):
                assert v == pytest.approx(m_slow[name], rel=2e-4, abs=1e-6), name
    torch.testing.assert_close(fast.flat_params, slow.flat_params, rtol=1e-4, atol=1e-6)
    fast.close()
    slow.close()
