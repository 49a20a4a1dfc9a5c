"""PPO: exact loss maths, fast paths equal to torch.distributions, smoke runs of both
variants on Discrete and Box actions, same-seed determinism, NaN handling, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
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
    # the numpy actor of the rollouts: its log-probabilities are the distribution's too
    np_actions, np_lp = tr.sample_actions_np(obs.numpy())
    np_actions_t = torch.as_tensor(np_actions)
    ref_np_lp = dist.log_prob(np_actions_t)
    if isinstance(dist, Normal):
        ref_np_lp = ref_np_lp.sum(-1)
    torch.testing.assert_close(torch.as_tensor(np_lp), ref_np_lp)
    assert np_actions.dtype == actions.numpy().dtype and np_actions.shape == actions.shape
    # ... and from the same generator state both paths draw the same actions
    many = tr.obs_tensor(np.stack([tr.envs.single_observation_space.sample() for _ in range(64)]))
    state = tr.generator.get_state()
    torch_actions, torch_lp = tr.sample_actions(many)
    tr.generator.set_state(state)
    np_actions, np_lp = tr.sample_actions_np(many.numpy())
    torch.testing.assert_close(torch.as_tensor(np_actions), torch_actions)
    torch.testing.assert_close(torch.as_tensor(np_lp), torch_lp)
    tr.close()


def test_fast_categorical_sampling_has_the_right_distribution() -> None:
    tr = PPO(PPOConfig(**TINY), seed=0)
    obs = torch.zeros(20_000, 4)
    with torch.no_grad():
        tr.policy.net[-1].bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # p = [0.25, 0.75]
        tr.policy.net[-1].weight.zero_()
    actions, _ = tr.sample_actions(obs)
    assert actions.float().mean().item() == pytest.approx(0.75, abs=0.015)  # ~5 sigma
    np_actions, np_lp = tr.sample_actions_np(obs.numpy())  # the rollouts' numpy actor
    assert np_actions.mean() == pytest.approx(0.75, abs=0.015)
    assert np.allclose(np_lp, np.where(np_actions == 1, math.log(0.75), math.log(0.25)))
    tr.close()


def test_numpy_actor_sees_every_weight_change() -> None:
    """The numpy actor reads the modules' weights at each call: optimiser steps, state-dict
    loads and TRPO's ``vector_to_parameters`` (which swaps ``.data``) all show through."""
    tr = PPO(PPOConfig(**TINY), seed=0)
    obs = np.zeros((1, 4), dtype=np.float32)
    last = tr.policy.net[-1]

    def np_log_probs() -> float:
        return float(tr.sample_actions_np(obs)[1][0])

    def set_p1(p: float) -> None:  # the output layer alone decides: p(action 1) = p
        with torch.no_grad():
            last.bias.copy_(torch.tensor([0.0, math.log(p / (1 - p))]))
            last.weight.zero_()

    set_p1(0.999999)
    assert np_log_probs() == pytest.approx(math.log(0.999999), abs=1e-6)
    state = {k: v.clone() for k, v in tr.policy.state_dict().items()}
    state["net.4.bias"] = torch.tensor([math.log(0.999999 / 1e-6), 0.0])
    tr.policy.load_state_dict(state)
    assert np_log_probs() == pytest.approx(math.log(0.999999), abs=1e-6)  # action 0 now
    assert int(tr.sample_actions_np(obs)[0][0]) == 0
    params = list(tr.policy.parameters())
    vec = torch.nn.utils.parameters_to_vector(params).clone()
    vec[-2:] = torch.tensor([0.0, math.log(0.999999 / 1e-6)])  # the last layer's bias
    torch.nn.utils.vector_to_parameters(vec, params)
    assert int(tr.sample_actions_np(obs)[0][0]) == 1
    tr.close()


def test_clip_grad_norm_matches_torch() -> None:
    g = torch.randn(50, generator=torch.Generator().manual_seed(1)) * 3
    ref = g.clone()
    p = torch.nn.Parameter(torch.zeros(50))
    p.grad = ref
    ref_norm = torch.nn.utils.clip_grad_norm_([p], 0.5)
    norm = clip_grad_norm(g, 0.5)
    assert norm == pytest.approx(ref_norm.item(), rel=1e-6)
    torch.testing.assert_close(g, p.grad)
    small = torch.tensor([0.1, 0.2])
    assert clip_grad_norm(small, 0.5) == pytest.approx(math.sqrt(0.05))
    assert small.tolist() == pytest.approx([0.1, 0.2])  # under the max: untouched
    big = torch.tensor([30.0, 40.0])
    assert clip_grad_norm(big, None) == pytest.approx(50.0)  # no clipping: the norm alone
    assert big.tolist() == [30.0, 40.0]


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


@pytest.mark.parametrize("fast", [True, False])
def test_kl_penalty_adapts_beta_from_the_post_update_batch_kl(fast: bool) -> None:
    """Issue 13's reproduce config: one full-batch epoch. The minibatch KL measured before the
    step is exactly 0 there, so the old rule halved beta every update. The reported KL must be
    KL(pi_old || pi_new) on the whole batch after the epochs, computed here independently from
    a copy of the old policy, and beta must follow the paper's rule from it."""
    import copy

    from pglab.policies import log_prob

    cfg = PPOConfig(
        env_id="CartPole-v1",
        variant="kl_penalty",
        n_epochs=1,
        batch_size=1024,
        num_envs=8,
        n_steps=128,
        learning_rate=1e-2,
        total_steps=4 * 1024,
    )
    tr = PPO(cfg, seed=0)
    if not fast:
        assert tr.backprop is not None
        tr.backprop = None  # the autograd path (the flat buffer stays shared)
    batches = []
    collect = tr.collect
    tr.collect = lambda n: batches.append(collect(n)) or batches[-1]  # type: ignore[method-assign]
    betas, kls = [], []
    for _ in range(4):
        old = copy.deepcopy(tr.policy)
        m = tr.update()
        b = batches[-1]
        obs, act = b.obs.flatten(0, 1), b.actions.flatten(0, 1)
        with torch.no_grad():
            log_ratio = (log_prob(tr.policy(obs), act) - log_prob(old(obs), act)).double()
        k3 = float((torch.expm1(log_ratio) - log_ratio).mean())
        assert k3 > 1e-4  # a real step: the policy moved
        assert m["diag/approx_kl"] == pytest.approx(k3, rel=1e-4)
        assert m["diag/approx_kl_k1"] == pytest.approx(float(-log_ratio.mean()), abs=1e-6)
        betas.append(m["opt/kl_beta"])
        kls.append(m["diag/approx_kl"])
    for beta, kl, nxt in zip(betas, kls, betas[1:], strict=False):
        assert nxt == adapt_kl_beta(beta, kl, cfg.kl_target)
    assert betas != [1.0, 0.5, 0.25, 0.125]  # the old rule's halving on a KL of 0
    tr.close()


def test_norm_adv_scope_minibatch_is_sb3s_and_equals_batch_on_one_minibatch() -> None:
    whole = {**TINY, "batch_size": 32, "total_steps": 32}
    rows = {}
    for scope in ("batch", "minibatch"):
        cfg = PPOConfig(**whole, norm_adv_scope=scope, grad_diagnostics=False)
        rows[scope] = PPO(cfg, seed=4).update()
    # abs 1e-6: the first step's policy loss is -mean(A) of normalised advantages, 0 up to
    # float32 rounding, which the two scopes do in different code (torch; the compiled epoch)
    for key in ("loss/policy", "loss/value", "diag/approx_kl"):
        assert rows["batch"][key] == pytest.approx(rows["minibatch"][key], rel=1e-5, abs=1e-6), key
    small = {**TINY, "total_steps": 32, "batch_size": 4}  # 8 minibatches of 4
    a, b = (
        PPO(PPOConfig(**small, norm_adv_scope=s, grad_diagnostics=False), seed=4).update()
        for s in ("batch", "minibatch")
    )
    assert a["loss/policy"] != pytest.approx(b["loss/policy"], rel=1e-6)
    with pytest.raises(ValueError, match="norm_adv_scope"):
        PPOConfig(norm_adv_scope="episode")
