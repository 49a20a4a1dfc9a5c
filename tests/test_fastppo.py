"""The compiled PPO epoch (pglab.fastppo) against the Python minibatch loop it replaces.

Each check builds two trainers from the same seed, one through :func:`pglab.fastppo.
ppo_epoch` and one through the Python loop (``PPO._epoch``: pglab.backprop + the small
kernels), runs whole updates and demands the same metrics row (keys exactly; values within
rel 1e-4 or abs 1e-6, the policy loss being a mean of terms of size 1 that nearly cancel) and
the same parameters (rtol 1e-4, atol 1e-6). What differs between the two is only float32
rounding: summation order in the matrix products and the rational tanh (within 3e-7).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pglab import diagnostics, fastppo
from pglab.algos.base import NonFiniteError
from pglab.algos.ppo import PPO, PPOConfig
from pglab.backprop import policy_grad_diagnostics
from pglab.benchmarks.purejaxrl import PUREJAXRL_CONFIG, pglab_settings
from pglab.policies import CategoricalMLP
from pglab.rollout import segment_ids

torch.set_num_threads(1)

SMALL = {"num_envs": 4, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "total_steps": 10_000}
PUREJAXRL = {**pglab_settings(PUREJAXRL_CONFIG), **SMALL}
CASES = {
    # PureJaxRL's config: minibatch-normalised advantages, clipped value loss, entropy bonus
    "purejaxrl": PUREJAXRL,
    # the zoo preset's shape: one minibatch of the whole batch, batch-normalised, no grad clip
    "zoo": {
        "num_envs": 8, "n_steps": 16, "batch_size": 128, "n_epochs": 5, "learning_rate": 1e-3,
        "lr_schedule": "linear", "clip_schedule": "linear", "max_grad_norm": None,
        "total_steps": 10_000,
    },
    # ReLU, one hidden layer, 3 actions, a last minibatch of 32 after two of 48, KL penalty
    "acrobot-relu-klpen": {
        "env_id": "Acrobot-v1", "num_envs": 4, "n_steps": 32, "batch_size": 48, "n_epochs": 2,
        "activation": "relu", "n_layers": 1, "variant": "kl_penalty", "ent_coef": 0.05,
        "clip_vloss": True, "total_steps": 10_000,
    },
    # one-hot observations, no hidden layer, an early stop on the target KL
    "frozenlake-linear-target-kl": {
        "env_id": "FrozenLake-v1", "num_envs": 4, "n_steps": 32, "batch_size": 32,
        "n_epochs": 6, "n_layers": 0, "learning_rate": 0.05, "target_kl": 1e-4,
        "total_steps": 10_000,
    },
    # three tanh layers of 32
    "deep": {**SMALL, "n_layers": 3, "hidden_size": 32, "norm_adv": False},
}  # fmt: skip


def _pair(settings: dict, seed: int = 0) -> tuple[PPO, PPO]:
    cfg = PPOConfig(**settings)
    fused, loop = PPO(cfg, seed=seed), PPO(cfg, seed=seed)
    loop._fused_epochs = lambda: None  # the Python minibatch loop, the reference
    assert fastppo.applies(fused)
    return fused, loop


def _assert_same_row(a: dict[str, float], b: dict[str, float]) -> None:
    assert set(a) == set(b)
    for name in a:
        if not name.startswith("time/"):
            assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-6), name


@pytest.mark.parametrize("case", list(CASES))
def test_fused_epochs_equal_the_python_loop(case: str) -> None:
    fused, loop = _pair(CASES[case], seed=1)
    for _ in range(2):
        m_fused, m_loop = fused.update(), loop.update()
        _assert_same_row(m_fused, m_loop)
        torch.testing.assert_close(fused.flat_params, loop.flat_params, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(
            fused.optimizer.exp_avg_sq, loop.optimizer.exp_avg_sq, rtol=1e-3, atol=1e-9
        )
        assert fused.optimizer.steps == loop.optimizer.steps
    if case == "frozenlake-linear-target-kl":
        assert m_fused["opt/epochs"] < CASES[case]["n_epochs"]  # the early stop happened
    assert fused._fused is not None and loop._fused_epochs() is None
    fused.close()
    loop.close()


def test_chunked_calls_give_the_same_update_and_poll_between(monkeypatch) -> None:
    """Big batches go in calls of at most CHUNK_SAMPLES samples, Stop/Pause polled after each."""
    whole, _ = _pair(PUREJAXRL, seed=2)
    monkeypatch.setattr(fastppo, "CHUNK_SAMPLES", 64)  # 2 of the 4 minibatches of 32 a call
    chunked, _ = _pair(PUREJAXRL, seed=2)
    polls: list[int] = []
    chunked.control = lambda: polls.append(1) or 0.0
    _assert_same_row(whole.update(), chunked.update())
    torch.testing.assert_close(whole.flat_params, chunked.flat_params, rtol=0, atol=0)
    rollout_polls = -(-chunked.env_steps // 2048)  # the compiled rollout's, per chunk of steps
    assert len(polls) == rollout_polls + 2 * PUREJAXRL["n_epochs"]


def test_fused_epochs_equal_autograd() -> None:
    """Against what CUDA runs (torch sampling, autograd, torch Adam), from the same seed."""
    fused, ref = _pair(PUREJAXRL, seed=3)
    ref.backprop = None  # autograd; the compiled epoch needs the hand-written backward
    ref._numpy_actor = None
    ref._compiled_rollout = None
    assert not fastppo.applies(ref)
    _assert_same_row(fused.update(), ref.update())
    torch.testing.assert_close(fused.flat_params, ref.flat_params, rtol=1e-4, atol=1e-6)


def test_what_the_kernel_does_not_cover_takes_the_python_loop() -> None:
    tr = PPO(PPOConfig(env_id="Pendulum-v1", **SMALL), seed=0)  # Gaussian head
    assert not fastppo.applies(tr) and tr._fused_epochs() is None
    m = tr.update()
    assert np.isfinite(m["loss/policy"]) and "diag/clip_fraction" in m
    tr.close()


@pytest.mark.parametrize("fused", [True, False])
def test_a_non_finite_loss_stops_with_the_same_message(fused: bool) -> None:
    tr = PPO(PPOConfig(**SMALL), seed=0)
    if not fused:
        tr._fused_epochs = lambda: None
    with torch.no_grad():  # NaN values: NaN advantages, losses and gradient
        tr.value.net[-1].bias.fill_(float("nan"))
    before = tr.policy.net[0].weight.detach().clone()
    with pytest.raises(NonFiniteError, match="policy loss became NaN/Inf at update 1"):
        tr.update()
    assert tr.optimizer.steps == 0  # no step was taken on the bad gradient
    torch.testing.assert_close(tr.policy.net[0].weight.detach(), before, rtol=0, atol=0)
    tr.close()


@pytest.mark.parametrize(("activation", "n_layers"), [("tanh", 2), ("relu", 1), ("tanh", 0)])
def test_compiled_segment_grad_stats_equal_the_general_version(
    activation: str, n_layers: int
) -> None:
    import gymnasium as gym

    env = gym.make("Acrobot-v1")
    torch.manual_seed(0)
    policy = CategoricalMLP(env.observation_space, 3, 16, n_layers, activation)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(40, 6, generator=g)
    actions = torch.randint(0, 3, (40,), generator=g)
    weights = torch.randn(40, generator=g)
    dones = torch.rand(10, 4, generator=g) < 0.2  # [T, N]: several segments per env
    seg, n_seg = segment_ids(dones)
    args = (policy, obs, actions, weights, seg.flatten(), n_seg)
    ours = policy_grad_diagnostics(*args, fits=True)
    ref = diagnostics.policy_grad_diagnostics(*args)
    assert set(ours) == set(ref) == {"diag/grad_var", "diag/grad_snr"}
    for name in ours:
        assert ours[name] == pytest.approx(ref[name], rel=1e-4), name
    one = policy_grad_diagnostics(
        policy, obs, actions, weights, torch.zeros(40, dtype=torch.long), 1, fits=True
    )
    assert one == {}  # one segment: the variance is undefined, so both metrics are absent


def test_compiled_segment_grad_stats_take_batches_too_big_for_per_step_products() -> None:
    """REINFORCE's whole-episode batches (thousands of steps) once fell back to the general
    version: the per-step products would not fit, but the compiled stats need none."""
    import gymnasium as gym

    from pglab.backprop import categorical_stats_fit, segment_grads_fit

    torch.manual_seed(0)
    policy = CategoricalMLP(gym.make("CartPole-v1").observation_space, 2, 64, 2)
    g = torch.Generator().manual_seed(1)
    B = 2_000
    obs, actions = torch.randn(B, 4, generator=g), torch.randint(0, 2, (B,), generator=g)
    weights = torch.randn(B, generator=g)
    seg = torch.arange(B) // 40  # 50 episodes of 40 steps
    assert not segment_grads_fit(policy, B) and categorical_stats_fit(policy, 50)
    ours = policy_grad_diagnostics(policy, obs, actions, weights, seg, 50)
    ref = diagnostics.policy_grad_diagnostics(policy, obs, actions, weights, seg, 50)
    assert set(ours) == set(ref) == {"diag/grad_var", "diag/grad_snr"}
    for name in ours:
        assert ours[name] == pytest.approx(ref[name], rel=1e-4), name


def test_fused_ppo_learns_cartpole() -> None:
    """PureJaxRL's config through the compiled epoch: CartPole's return climbs past 150 within
    60k steps (return ~20 at the start; every seed of the full run reaches 500)."""
    tr = PPO(PPOConfig(**{**pglab_settings(PUREJAXRL_CONFIG), "total_steps": 60_000}), seed=0)
    assert fastppo.applies(tr)
    while not tr.done:
        tr.update()
    assert tr.final_return() > 150
    tr.close()


def test_matrix_kernels_at_every_shape() -> None:
    """The blocked product and transpose, including the rows and columns past whole blocks."""
    rng = np.random.default_rng(0)
    for m, k, n in [(1, 1, 1), (3, 5, 2), (4, 4, 4), (7, 3, 9), (130, 4, 66), (5, 64, 3)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k)).astype(np.float32)
        out = np.full((m, n), np.nan, dtype=np.float32)
        fastppo._mm_abt(a, b, out)
        np.testing.assert_allclose(out, a @ b.T, rtol=1e-5, atol=1e-5)
        t = np.full((k, m), np.nan, dtype=np.float32)
        fastppo._transpose(a, t)
        np.testing.assert_array_equal(t, a.T)
