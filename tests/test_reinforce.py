"""REINFORCE: every Psi x baseline in both batch modes, whole-episode batching with one and
several envs, the config's 'none' and validation, and same-seed determinism."""

from __future__ import annotations

import math

import pytest
import torch

from pglab.algos import make_config, make_trainer
from pglab.algos.reinforce import BASELINES, Reinforce, ReinforceConfig, pack_episodes
from pglab.metrics import METRICS

torch.set_num_threads(1)

SMALL = {"hidden_size": 16, "n_layers": 1}


@pytest.mark.parametrize("baseline", BASELINES)
@pytest.mark.parametrize("psi", ["total", "rtg"])
def test_reinforce_smoke_every_variant(psi, baseline):
    for batch_mode, batch_size in (("episodes", 3), ("steps", 60)):
        cfg = ReinforceConfig(
            env_id="CartPole-v1",
            psi=psi,
            baseline=baseline,
            batch_mode=batch_mode,
            batch_size=batch_size,
            total_steps=1,
            vf_iters=2,
            **SMALL,
        )
        trainer = Reinforce(cfg, seed=0)
        before = [p.detach().clone() for p in trainer.policy.parameters()]
        m = trainer.update()
        assert set(m) <= set(METRICS), set(m) - set(METRICS)
        assert all(math.isfinite(v) for v in m.values())
        for key in ("loss/policy", "policy/entropy", "diag/approx_kl", "diag/grad_norm"):
            assert key in m
        assert "diag/grad_var" in m and "diag/grad_snr" in m  # >= 2 episodes in every batch
        has_critic = baseline == "value"
        assert ("loss/value" in m) == has_critic and ("value/mean" in m) == has_critic
        assert (trainer.value is not None) == has_critic
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))
        if batch_mode == "episodes":
            assert m["rollout/episodes"] == 3
        else:
            assert m["time/env_steps"] >= 60
        trainer.close()


@pytest.mark.parametrize("baseline", ["none", "value"])
def test_reinforce_smoke_box_actions(baseline):
    cfg = ReinforceConfig(
        env_id="Pendulum-v1", batch_mode="episodes", batch_size=2, baseline=baseline, vf_iters=2
    )
    trainer = Reinforce(cfg, seed=0)
    log_std = trainer.policy.log_std.detach().clone()
    m = trainer.update()
    assert m["time/env_steps"] == 400 and m["rollout/ep_length_mean"] == 200
    assert not torch.equal(log_std, trainer.policy.log_std.detach())
    trainer.close()


def test_steps_mode_finishes_the_last_episode_and_no_step_is_lost():
    cfg = ReinforceConfig(batch_mode="steps", batch_size=150, **SMALL)
    trainer = Reinforce(cfg, seed=1)
    episodes = trainer.collect_episodes()
    lengths = [len(e.rewards) for e in episodes]
    assert sum(lengths[:-1]) < 150 <= sum(lengths)  # stop at the first episode end past 150
    assert trainer.env_steps == sum(lengths)  # one env: every step is in the batch
    assert [e.length for e in trainer.episodes] == lengths
    assert all(int(e.rewards.sum()) == n for e, n in zip(episodes, lengths))  # CartPole: +1/step
    trainer.close()


def test_parallel_envs_play_equal_shares_and_restart_unfinished_episodes():
    cfg = ReinforceConfig(batch_mode="episodes", batch_size=5, num_envs=3, **SMALL)
    trainer = Reinforce(cfg, seed=0)
    episodes = trainer.collect_episodes()
    assert len(episodes) == 6  # ceil(5 / 3) = 2 whole episodes from each of the 3 envs
    used = sum(len(e.rewards) for e in episodes)
    assert trainer.env_steps >= used  # idle envs' steps are counted, not hidden
    assert (trainer._tracker.lengths == 0).all()  # every env restarts at an episode start
    # the next batch's episodes start from reset states (CartPole: all |x| <= 0.05)
    assert (abs(trainer._obs) <= 0.05).all()
    trainer.close()


def test_pack_episodes_layout():
    cfg = ReinforceConfig(batch_mode="episodes", batch_size=3, **SMALL)
    trainer = Reinforce(cfg, seed=0)
    episodes = trainer.collect_episodes()
    obs, actions, rewards, mask = pack_episodes(episodes)
    L = max(len(e.rewards) for e in episodes)
    assert obs.shape == (L, 3, 4) and actions.shape == (L, 3) and mask.shape == (L, 3)
    for e, ep in enumerate(episodes):
        n = len(ep.rewards)
        assert mask[:n, e].all() and not mask[n:, e].any()
        assert torch.equal(obs[:n, e], ep.obs) and torch.equal(rewards[n:, e], torch.zeros(L - n))
    trainer.close()


def test_reinforce_config_none_and_validation():
    assert make_config("reinforce", {"baseline": "none"}).baseline == "none"
    assert ReinforceConfig().to_dict()["baseline"] == "none"
    assert make_config("reinforce", {"baseline": "loo"}).baseline == "loo"
    with pytest.raises(ValueError, match="batch_size"):
        make_config("reinforce", {"baseline": "loo", "batch_mode": "episodes", "batch_size": 1})
    with pytest.raises(ValueError, match="psi"):
        make_config("reinforce", {"psi": "gae"})
    with pytest.raises(ValueError, match="baseline"):
        make_config("reinforce", {"baseline": "critic"})


def test_reinforce_same_seed_same_metrics():
    settings = {"batch_mode": "episodes", "batch_size": 4, "baseline": "value", "vf_iters": 3}

    def run(seed: int) -> list[dict[str, float]]:
        t = make_trainer("reinforce", {**settings, **SMALL}, seed=seed)
        out = [{k: v for k, v in t.update().items() if not k.startswith("time/")} for _ in range(3)]
        t.close()
        return out

    first = run(5)
    assert first == run(5)
    assert first != run(6)


def test_training_step_follows_the_gradient_lab_estimate():
    """The update ascends g = (1/m) sum_i g_i, the very per-episode samples the gradient
    diagnostics (and the Gradient Lab) use: Adam's first step is lr * sign(g) per coordinate."""
    from pglab.diagnostics import grad_samples
    from pglab.estimators import episode_reward_to_go

    cfg = ReinforceConfig(batch_mode="episodes", batch_size=4, psi="rtg", gamma=0.9, **SMALL)
    probe, trainer = Reinforce(cfg, seed=2), Reinforce(cfg, seed=2)
    obs, actions, rewards, mask = pack_episodes(probe.collect_episodes())
    weights = episode_reward_to_go(rewards, mask, cfg.gamma)[mask]
    segments = torch.arange(4).expand_as(mask)[mask]
    g = grad_samples(probe.policy, obs[mask], actions[mask], weights, segments, 4).mean(0)

    before = torch.nn.utils.parameters_to_vector(trainer.policy.parameters()).detach()
    trainer.update()
    step = torch.nn.utils.parameters_to_vector(trainer.policy.parameters()).detach() - before
    big = g.abs() > 1e-4
    assert big.sum() > 10
    torch.testing.assert_close(step[big], cfg.learning_rate * g[big].sign(), rtol=1e-3, atol=0)
    probe.close()
    trainer.close()


@pytest.mark.parametrize(
    ("env_id", "psi", "baseline"),
    [
        ("CartPole-v1", "total", "none"),
        ("CartPole-v1", "rtg", "constant"),
        ("CartPole-v1", "rtg", "value"),
        ("CartPole-v1", "rtg", "min_variance"),
        ("Pendulum-v1", "rtg", "value"),
    ],
)
def test_cpu_fast_path_equals_autograd_path(env_id, psi, baseline):
    """The hand-written policy gradient and critic fit (pglab.backprop, numpy actor) and the
    autograd path (what CUDA and non-MLP policies run) make the same two updates."""
    settings = {
        "env_id": env_id, "psi": psi, "baseline": baseline, "batch_mode": "episodes",
        "batch_size": 3, "vf_iters": 5, "hidden_size": 16, "total_steps": 100_000,
    }  # fmt: skip
    fast = make_trainer("reinforce", settings, seed=4)
    slow = make_trainer("reinforce", settings, seed=4)
    assert fast.backprop is not None and (baseline != "value" or fast.vf_backprop is not None)
    slow.backprop, slow.vf_backprop, slow._numpy_actor, slow._compiled = None, None, None, None
    assert fast._compiled is not None or env_id != "CartPole-v1"
    for _ in range(2):
        m_fast, m_slow = fast.update(), slow.update()
        assert m_fast.keys() == m_slow.keys()
        for name, v in m_fast.items():
            if not name.startswith("time/"):
                assert v == pytest.approx(m_slow[name], rel=2e-4, abs=1e-6), name
    torch.testing.assert_close(fast.policy_params, slow.policy_params, rtol=1e-4, atol=1e-6)
    if baseline == "value":
        torch.testing.assert_close(fast.value_params, slow.value_params, rtol=1e-4, atol=1e-6)
    fast.close()
    slow.close()


@pytest.mark.parametrize(("n_layers", "activation"), [(2, "tanh"), (1, "relu"), (0, "tanh")])
def test_compiled_one_env_sampler_equals_the_numpy_actor(n_layers, activation):
    """kernels.mlp_categorical_sample (REINFORCE's one-env rollouts) draws the numpy actor's
    actions from the same noise, with the same log-probabilities."""
    import numpy as np

    t = make_trainer(
        "reinforce", {"n_layers": n_layers, "activation": activation, "num_envs": 3}, seed=0
    )
    assert t._compiled is not None and t._numpy_actor is not None
    g = np.random.default_rng(0)
    for _ in range(20):
        obs = g.normal(size=(3, 4)).astype(np.float32) * 2
        u = g.uniform(size=(3, 2)).astype(np.float32)
        a_ref, lp_ref = t._numpy_actor.sample(obs, u)
        weights, biases, relu = t._compiled
        a, lp = np.empty(3, dtype=np.int64), np.empty(3, dtype=np.float32)
        from pglab import kernels

        kernels.mlp_categorical_sample(obs, weights, biases, relu, u, a, lp)
        np.testing.assert_array_equal(a, a_ref)
        np.testing.assert_allclose(lp, lp_ref, rtol=1e-5, atol=1e-6)
    t.close()
