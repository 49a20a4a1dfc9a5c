"""The compiled A2C update (pglab.fasta2c) against the Python update it replaces.

Each check builds two trainers from the same seed, one through :func:`pglab.fasta2c.
a2c_update` and one through A2C's Python steps 2-4 (pglab.backprop, the small kernels,
torch), runs whole updates and demands the same metrics row (keys exactly; values within rel
1e-4 or abs 1e-6) and the same parameters and optimiser state (rtol 1e-4). What differs
between the two is only float32 rounding: summation order in the matrix products and the
reductions, and the rational tanh (within 3e-7).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pglab import fasta2c, fastppo
from pglab.algos.a2c import A2C, A2CConfig
from pglab.algos.base import NonFiniteError

torch.set_num_threads(1)

CASES = {
    # the ladder's rung: the zoo's 8 envs x 5 steps, RMSprop, GAE 0.95; the gradient
    # diagnostic on updates 0 and 5 (its advantages computed by a2c_advantages first)
    "ladder": {"gae_lambda": 0.95},
    # Adam, normalised advantages, a ragged batch (3 x 7 = 21 rows), an entropy bonus
    "adam-norm-adv-ragged": {
        "optimizer": "adam", "norm_adv": True, "num_envs": 3, "n_steps": 7, "ent_coef": 0.01,
        "learning_rate": 3e-3,
    },
    # ReLU, one hidden layer, 3 actions, the Python rollout, no gradient clip
    "acrobot-relu": {
        "env_id": "Acrobot-v1", "activation": "relu", "n_layers": 1, "ent_coef": 0.05,
        "max_grad_norm": None, "learning_rate": 3e-3,
    },
    # one-hot observations, no hidden layer
    "frozenlake-linear": {
        "env_id": "FrozenLake-v1", "n_layers": 0, "learning_rate": 0.05,
    },
    # three tanh layers of 32, lambda 1 (the Monte-Carlo return), a tight clip
    "deep": {"n_layers": 3, "hidden_size": 32, "num_envs": 4, "n_steps": 10,
             "max_grad_norm": 0.1},
}  # fmt: skip


def _pair(settings: dict, seed: int = 0) -> tuple[A2C, A2C]:
    cfg = A2CConfig(total_steps=10_000, **settings)
    fused, ref = A2C(cfg, seed=seed), A2C(cfg, seed=seed)
    ref._fused_update = lambda: None  # the Python update, the reference
    assert fastppo.applies(fused)
    return fused, ref


def _assert_same_row(a: dict[str, float], b: dict[str, float]) -> None:
    assert list(a) == list(b)  # the same keys in the same order
    for name in a:
        if not name.startswith("time/"):
            assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-6), name


def _optimizer_state(tr: A2C) -> list[torch.Tensor]:
    opt = tr.optimizer
    return [opt.exp_avg, opt.exp_avg_sq] if tr.config.optimizer == "adam" else [opt.square_avg]


@pytest.mark.parametrize("case", list(CASES))
def test_fused_update_equals_the_python_update(case: str) -> None:
    fused, ref = _pair(CASES[case], seed=1)
    for _ in range(6):
        m_fused, m_ref = fused.update(), ref.update()
        _assert_same_row(m_fused, m_ref)
        torch.testing.assert_close(fused.flat_params, ref.flat_params, rtol=1e-4, atol=1e-6)
        for s_fused, s_ref in zip(_optimizer_state(fused), _optimizer_state(ref), strict=True):
            torch.testing.assert_close(s_fused, s_ref, rtol=1e-3, atol=1e-9)
        assert fused.optimizer.steps == ref.optimizer.steps
    assert m_fused["time/updates"] == 6
    assert fused._fused is not None and ref._fused_update() is None
    fused.close()
    ref.close()


def test_fused_update_equals_autograd() -> None:
    """Against what CUDA runs (torch sampling, autograd, the torch reductions)."""
    fused, ref = _pair(CASES["adam-norm-adv-ragged"], seed=3)
    ref.backprop = None  # autograd; the compiled update needs the hand-written backward
    ref._numpy_actor = None
    ref._compiled_rollout = None
    assert not fastppo.applies(ref)
    for _ in range(3):
        _assert_same_row(fused.update(), ref.update())
    torch.testing.assert_close(fused.flat_params, ref.flat_params, rtol=1e-4, atol=1e-6)


def test_what_the_kernel_does_not_cover_takes_the_python_update() -> None:
    tr = A2C(A2CConfig(env_id="Pendulum-v1", total_steps=1_000, ent_coef=0.01), seed=0)
    assert not fastppo.applies(tr) and tr._fused_update() is None  # Gaussian head
    m = tr.update()
    assert np.isfinite(m["loss/policy"]) and "diag/grad_var" in m
    tr.close()


@pytest.mark.parametrize("fused", [True, False])
def test_a_non_finite_loss_stops_with_the_same_message(fused: bool) -> None:
    tr = A2C(A2CConfig(total_steps=1_000), seed=0)
    if not fused:
        tr._fused_update = lambda: None
    with torch.no_grad():  # NaN values: NaN advantages, returns and losses
        tr.value.net[-1].bias.fill_(float("nan"))
    before = tr.policy.net[0].weight.detach().clone()
    with pytest.raises(NonFiniteError, match=r"^loss became NaN/Inf at update 1"):
        tr.update()
    assert tr.optimizer.steps == 0  # no step was taken on the bad gradient
    torch.testing.assert_close(tr.policy.net[0].weight.detach(), before, rtol=0, atol=0)
    tr.close()


def test_the_parameter_check_says_what_torch_isfinite_says() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(9_000).astype(np.float32)
    assert fasta2c.all_finite(a)
    big = np.full(9_000, np.finfo(np.float32).max, dtype=np.float32)  # its plain sum overflows
    with np.errstate(over="ignore"):
        assert fasta2c.all_finite(big) and not math.isfinite(float(big.sum()))
    for bad in (np.inf, -np.inf, np.nan):
        for where in (0, 4_567, 8_999):  # the vectorised body and the scalar tail
            b = a.copy()
            b[where] = bad
            assert not fasta2c.all_finite(b)
    # and A2C's check after every update uses it, on the parameters as they are then (a
    # write after the compiled update is caught too), naming the culprit as before
    tr = A2C(A2CConfig(total_steps=1_000), seed=0)
    tr.update()
    tr.check_parameters()
    with torch.no_grad():
        tr.value.net[2].weight[3, 5] = float("inf")
    with pytest.raises(NonFiniteError, match=r"^value parameter net\.2\.weight became NaN/Inf"):
        tr.check_parameters()
    tr.close()
