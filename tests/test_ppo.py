"""PPO: exact loss maths, fast paths equal to torch.distributions, smoke runs of both
variants on Discrete and Box actions, same-seed determinism, NaN handling, devices."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Categorical, Normal

from pglab.algos import NonFiniteError, make_trainer
from pglab.algos.ppo import (
    PPO,
    PPOConfig,
    adapt_kl_beta,
    approx_kl,
    clip_grad_norm,
    clipped_surrogate,
    explained_variance,
    kl_penalty_surrogate,
    linear_schedule,
    value_loss,
)

torch.set_num_threads(1)  # tiny nets: extra threads only add contention

TINY = {
    "num_envs": 2,
    "n_steps": 16,
    "batch_size": 8,
    "n_epochs": 2,
    "hidden_size": 16,
    "total_steps": 64,
}


# -- pure losses -------------------------------------------------------------------------------
def test_clipped_surrogate_by_hand() -> None:
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5, 0.5])
    adv = torch.tensor([1.0, 2.0, 1.0, -1.0, -1.0])
    # min(rA, clip(r,0.8,1.2)A): 0.5*1=0.5 vs 0.8 -> 0.5; 2 ; 1.5 vs 1.2 -> 1.2 ;
    # -1.5 vs -1.2 -> -1.5 ; -0.5 vs -0.8 -> -0.8
    expected = -(0.5 + 2.0 + 1.2 - 1.5 - 0.8) / 5
    assert clipped_surrogate(ratio, adv, 0.2).item() == pytest.approx(expected)


def test_clipped_surrogate_gradient_vanishes_outside_the_clip() -> None:
    ratio = torch.tensor([1.5, 0.5], requires_grad=True)
    adv = torch.tensor([1.0, -1.0])  # both moved too far in the advantageous direction
    clipped_surrogate(ratio, adv, 0.2).backward()
    assert ratio.grad.tolist() == [0.0, 0.0]


def test_clipped_surrogate_equals_the_min_form_with_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    ratio = (torch.rand(200, generator=g) * 1.2 + 0.4).requires_grad_()
    adv = torch.randn(200, generator=g)
    adv[:5] = 0.0
    clipped_surrogate(ratio, adv, 0.2).backward()
    fast_grad = ratio.grad.clone()
    ratio.grad = None
    ref = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv).mean()
    ref.backward()
    torch.testing.assert_close(clipped_surrogate(ratio, adv, 0.2), ref)
    torch.testing.assert_close(fast_grad, ratio.grad)


def test_kl_penalty_surrogate_by_hand() -> None:
    ratio = torch.tensor([0.5, 2.0])
    adv = torch.tensor([1.0, 3.0])
    kl = ((0.5 - 1 - math.log(0.5)) + (2.0 - 1 - math.log(2.0))) / 2
    expected = -(0.5 * 1 + 2 * 3) / 2 + 0.7 * kl
    assert kl_penalty_surrogate(ratio, adv, 0.7).item() == pytest.approx(expected, rel=1e-6)


def test_value_loss_plain_and_clipped() -> None:
    v = torch.tensor([1.0, 3.0])
    v_old = torch.tensor([0.0, 2.9])
    ret = torch.tensor([0.0, 3.0])
    assert value_loss(v, v_old, ret, None).item() == pytest.approx((1.0 + 0.0) / 2)
    # clipped: v_clip = [0.2, 3.0]; max((1-0)^2,(0.2-0)^2)=1 ; max(0, 0)=0
    assert value_loss(v, v_old, ret, 0.2).item() == pytest.approx((1.0 + 0.0) / 2)
    v_old2 = torch.tensor([1.5, 3.0])  # v_clip = [1.3, 3.0] is worse than v for sample 0
    assert value_loss(v, v_old2, ret, 0.2).item() == pytest.approx(1.3**2 / 2)


def test_approx_kl_estimators_against_exact_kl() -> None:
    old = Categorical(probs=torch.tensor([0.3, 0.7]))
    new = Categorical(probs=torch.tensor([0.4, 0.6]))
    a = torch.tensor([0, 1])
    log_ratio = new.log_prob(a) - old.log_prob(a)
    w = old.probs  # exact expectation under pi_old by weighting the two actions
    k1, k3 = approx_kl(log_ratio)
    # with uniform weights the estimators are plain means; check the formulas themselves
    assert k1.item() == pytest.approx(-log_ratio.mean().item())
    assert k3.item() == pytest.approx((log_ratio.exp() - 1 - log_ratio).mean().item())
    exact = torch.distributions.kl_divergence(old, new).item()
    assert (w * -log_ratio).sum().item() == pytest.approx(exact, rel=1e-6)
    assert (w * (log_ratio.exp() - 1 - log_ratio)).sum().item() == pytest.approx(exact, rel=1e-5)


def test_adapt_kl_beta_band() -> None:
    assert adapt_kl_beta(1.0, 0.02, 0.01) == 2.0
    assert adapt_kl_beta(1.0, 0.005, 0.01) == 0.5
    assert adapt_kl_beta(1.0, 0.01, 0.01) == 1.0
    assert adapt_kl_beta(1.0, 0.0149, 0.01) == 1.0


def test_explained_variance_and_schedule() -> None:
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(y, 2.5), y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(4)))
    assert linear_schedule(1e-3, 0.25, "linear") == pytest.approx(2.5e-4)
    assert linear_schedule(1e-3, 0.25, "constant") == 1e-3


# -- fast paths equal torch.distributions --------------------------------------------------------
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_fast_log_prob_entropy_and_sampling_match_distributions(env_id: str) -> None:
    tr = PPO(PPOConfig(env_id=env_id, **TINY, log_std_init=-0.3), seed=0)
    obs = tr.obs_tensor(tr.envs.observation_space.sample())
    actions, lp = tr.sample_actions(obs)
    dist = tr.policy(obs)
    if isinstance(dist, Normal):
        ref_lp, ref_ent = dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)
    else:
        ref_lp, ref_ent = dist.log_prob(actions), dist.entropy()
    torch.testing.assert_close(lp, ref_lp)
    fast_lp, fast_ent = tr.log_prob_entropy(obs, actions)
    torch.testing.assert_close(fast_lp, ref_lp)
    torch.testing.assert_close(fast_ent, ref_ent)
    tr.close()


def test_fast_categorical_sampling_has_the_right_distribution() -> None:
    tr = PPO(PPOConfig(**TINY), seed=0)
    obs = torch.zeros(20_000, 4)
    with torch.no_grad():
        tr.policy.net[-1].bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # p = [0.25, 0.75]
        tr.policy.net[-1].weight.zero_()
    actions, _ = tr.sample_actions(obs)
    assert actions.float().mean().item() == pytest.approx(0.75, abs=0.015)  # ~5 sigma
    tr.close()


@pytest.mark.parametrize(
    ("env_id", "activation", "n_layers"),
    [("CartPole-v1", "tanh", 2), ("Pendulum-v1", "relu", 1), ("CartPole-v1", "tanh", 0)],
)
def test_fused_actor_critic_equals_the_plain_nets(env_id: str, activation: str, n_layers: int):
    cfg = PPOConfig(env_id=env_id, **{**TINY, "n_layers": n_layers}, activation=activation)
    tr = PPO(cfg, seed=0)
    assert tr.fused is not None
    batch = tr.collect(16)
    obs, actions = batch.obs.flatten(0, 1), batch.actions.flatten(0, 1)
    w = torch.randn(3, obs.shape[0], generator=torch.Generator().manual_seed(0))

    def loss_and_grad() -> tuple[tuple[Tensor, ...], Tensor]:
        lp, ent, v = tr.evaluate_actions(obs, actions, entropy_grad=True)
        tr.flat_params.grad.zero_()
        ((lp * w[0]).sum() + (ent * w[1]).sum() + (v * w[2]).sum()).backward()
        return (lp.detach(), ent.detach(), v.detach()), tr.flat_params.grad.clone()

    fused_out, fused_grad = loss_and_grad()
    tr.fused = None  # the plain path: policy.net, value, torch.distributions-equal heads
    plain_out, plain_grad = loss_and_grad()
    dist = tr.policy(obs)
    ref_lp = dist.log_prob(actions)
    if isinstance(dist, Normal):
        ref_lp = ref_lp.sum(-1)
    for a, b in zip(fused_out, plain_out, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fused_out[0], ref_lp)
    torch.testing.assert_close(fused_out[2], tr.value(obs).detach())
    torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-5, atol=1e-6)
    assert fused_grad.abs().sum() > 0
    # every module parameter is a view of the flat buffer: one optimiser step moves the nets
    before = tr.policy.net[0].weight.detach().clone()
    tr.optimizer.step()
    assert not torch.equal(before, tr.policy.net[0].weight)
    tr.close()


def test_clip_grad_norm_matches_torch() -> None:
    g = torch.randn(50, generator=torch.Generator().manual_seed(1)) * 3
    ref = g.clone()
    p = torch.nn.Parameter(torch.zeros(50))
    p.grad = ref
    ref_norm = torch.nn.utils.clip_grad_norm_([p], 0.5)
    norm = clip_grad_norm(g, 0.5)
    torch.testing.assert_close(norm, ref_norm)
    torch.testing.assert_close(g, p.grad)
    small = torch.tensor([0.1, 0.2])
    assert clip_grad_norm(small, 0.5).item() == pytest.approx(math.sqrt(0.05))
    assert small.tolist() == pytest.approx([0.1, 0.2])  # under the max: untouched


# -- smoke runs ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["clip", "kl_penalty"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_smoke(env_id: str, variant: str) -> None:
    tr = PPO(PPOConfig(env_id=env_id, variant=variant, clip_vloss=True, **TINY), seed=1)
    rows = []
    while not tr.done:
        rows.append(tr.update())
    assert len(rows) == 2 and tr.env_steps == 64
    m = rows[-1]
    for key in [
        "loss/policy",
        "loss/value",
        "policy/entropy",
        "diag/approx_kl",
        "diag/approx_kl_k1",
        "diag/explained_variance",
        "diag/grad_norm",
        "diag/grad_var",
        "opt/learning_rate",
        "value/mean",
        "time/sps",
    ]:
        assert key in m and math.isfinite(m[key]), key
    assert m["diag/approx_kl"] >= 0
    if variant == "clip":
        assert "diag/clip_fraction" in m and "opt/clip_coef" in m and "opt/kl_beta" not in m
    else:
        assert "opt/kl_beta" in m and "diag/clip_fraction" not in m
        assert rows[0]["opt/kl_beta"] == 1.0
        assert m["opt/kl_beta"] in (0.5, 1.0, 2.0)  # adapted once, by a factor of 2 or not
    tr.close()


def test_grad_diagnostics_switch_and_target_kl_early_stop() -> None:
    cfg = PPOConfig(**{**TINY, "total_steps": 32, "n_epochs": 5}, grad_diagnostics=False)
    m = PPO(cfg, seed=0).update()
    assert "diag/grad_var" not in m and "diag/grad_snr" not in m
    assert m["opt/epochs"] == 5.0
    m = PPO(cfg.replace(target_kl=1e-9, learning_rate=1e-2), seed=0).update()
    assert m["opt/epochs"] == 1.0  # any real step exceeds a KL of 1e-9


def test_linear_schedules_reach_zero() -> None:
    cfg = PPOConfig(**TINY, lr_schedule="linear", clip_schedule="linear", learning_rate=1e-3)
    tr = PPO(cfg, seed=0)
    first, second = tr.update(), tr.update()
    assert first["opt/learning_rate"] == pytest.approx(1e-3)
    assert second["opt/learning_rate"] == pytest.approx(5e-4)  # half the budget left
    assert second["opt/clip_coef"] == pytest.approx(0.1)


def test_normalisation_flags_smoke_and_state_dict() -> None:
    cfg = PPOConfig(env_id="Pendulum-v1", **TINY, normalize_obs=True, normalize_reward=True)
    tr = PPO(cfg, seed=0)
    tr.update()
    assert tr.obs_rms is not None and tr.obs_rms.count > 32
    state = tr.state_dict()
    path_state = {k: v for k, v in state.items()}
    fresh = PPO(cfg, seed=5)
    fresh.load_state_dict(path_state)
    obs = tr.envs.observation_space.sample()
    assert (fresh.act(obs) == tr.act(obs)).all()


def test_same_seed_same_metrics_and_different_seed_differs() -> None:
    def run(seed: int) -> list[dict[str, float]]:
        tr = PPO(PPOConfig(**TINY), seed=seed)
        out = []
        while not tr.done:
            m = tr.update()
            out.append({k: v for k, v in m.items() if not k.startswith("time/")})
        tr.close()
        return out

    a, b, c = run(3), run(3), run(4)
    assert a == b
    assert a != c


def test_nan_ends_the_run_with_a_plain_message() -> None:
    tr = PPO(PPOConfig(**TINY, grad_diagnostics=False), seed=0)
    with torch.no_grad():
        tr.value.net[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="loss became NaN/Inf at update 1"):
        tr.update()


def test_config_cross_field_check() -> None:
    with pytest.raises(ValueError, match=r"batch_size: 100 is larger than .* = 32"):
        PPOConfig(num_envs=2, n_steps=16, batch_size=100)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_update_keeps_everything_on_the_gpu() -> None:
    tr = make_trainer("ppo", {**TINY, "normalize_reward": True}, seed=0, device="cuda")
    m = tr.update()
    assert all(p.is_cuda for p in tr.policy.parameters())
    assert math.isfinite(m["loss/policy"]) and "diag/grad_var" in m
    tr2 = make_trainer("ppo", {**TINY, "env_id": "Pendulum-v1"}, seed=0, device="cuda")
    assert math.isfinite(tr2.update()["loss/value"])
