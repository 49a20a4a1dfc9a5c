"""The hand-written backward passes (pglab.backprop and the PPO loss gradients) against autograd.

Each check computes the same losses twice, once with the chain rule written out and once with
``loss.backward()``, on batches where the clip and the value clip are active for some samples
and not for others, and demands equal losses and gradients.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from pglab import kernels
from pglab.algos.ppo import (
    PPO,
    PPOConfig,
    clipped_surrogate,
    clipped_surrogate_grad,
    kl_penalty_surrogate,
    kl_penalty_surrogate_grad,
    value_loss,
    value_loss_grad,
)
from pglab.policies import ValueMLP, tanh_

torch.set_num_threads(1)

TINY = {"num_envs": 4, "n_steps": 16, "batch_size": 64, "n_epochs": 1, "total_steps": 64}


def _autograd_wrt_log_prob(loss_fn, log_prob: Tensor, old_log_prob: Tensor) -> Tensor:
    lp = log_prob.clone().requires_grad_()
    loss_fn((lp - old_log_prob).exp()).backward()
    assert lp.grad is not None
    return lp.grad


def test_surrogate_gradients_equal_autograd() -> None:
    g = torch.Generator().manual_seed(0)
    lp, old = torch.randn(200, generator=g), torch.randn(200, generator=g)
    adv = torch.randn(200, generator=g)
    ratio = (lp - old).exp()
    assert ((ratio - 1).abs() > 0.2).any() and ((ratio - 1).abs() < 0.2).any()

    log_ratio = (lp - old).numpy()
    loss, grad, r = clipped_surrogate_grad(log_ratio, adv.numpy(), 0.2)
    torch.testing.assert_close(torch.from_numpy(r), ratio)
    assert loss == pytest.approx(clipped_surrogate(ratio, adv, 0.2).item(), rel=1e-5)
    ref = _autograd_wrt_log_prob(lambda r: clipped_surrogate(r, adv, 0.2), lp, old)
    torch.testing.assert_close(torch.from_numpy(grad), ref)
    assert (grad == 0).any() and (grad != 0).any()  # both clipped and unclipped samples

    loss, grad, _ = kl_penalty_surrogate_grad(log_ratio, adv.numpy(), 1.7)
    assert loss == pytest.approx(kl_penalty_surrogate(ratio, adv, 1.7).item(), rel=1e-5)
    ref = _autograd_wrt_log_prob(lambda r: kl_penalty_surrogate(r, adv, 1.7), lp, old)
    torch.testing.assert_close(torch.from_numpy(grad), ref)


@pytest.mark.parametrize("clip", [None, 0.2])
def test_value_loss_gradient_equals_autograd(clip: float | None) -> None:
    g = torch.Generator().manual_seed(1)
    values, old, returns = (torch.randn(300, generator=g) for _ in range(3))
    values[:50] = old[:50] + 0.05  # inside the clip range: the two squared errors tie
    values[50:60] = returns[50:60] + 0.3  # clipped error larger on some, smaller on others
    loss, grad = value_loss_grad(values.numpy(), old.numpy(), returns.numpy(), clip)
    v = values.clone().requires_grad_()
    ref_loss = value_loss(v, old, returns, clip)
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-5)
    assert grad.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(grad), v.grad)
    _, scaled = value_loss_grad(values.numpy(), old.numpy(), returns.numpy(), clip, 0.25)
    torch.testing.assert_close(torch.from_numpy(scaled), 0.25 * v.grad)


CASES = [
    # env, activation, n_layers, variant, clip_vloss, ent_coef
    ("CartPole-v1", "tanh", 2, "clip", False, 0.0),  # the zoo preset's shape
    ("CartPole-v1", "tanh", 0, "kl_penalty", True, 0.01),  # linear policy and critic
    ("Pendulum-v1", "relu", 1, "clip", True, 0.01),  # Gaussian head, log_std gradient
    ("Acrobot-v1", "tanh", 3, "kl_penalty", False, 0.05),  # 3 actions, 3 hidden layers
    ("FrozenLake-v1", "tanh", 1, "clip", False, 0.02),  # one-hot Discrete observations
]


@pytest.mark.parametrize(("env_id", "activation", "n_layers", "variant", "vclip", "ent"), CASES)
def test_ppo_hand_gradient_equals_autograd(
    env_id: str, activation: str, n_layers: int, variant: str, vclip: bool, ent: float
) -> None:
    cfg = PPOConfig(
        env_id=env_id,
        **TINY,
        hidden_size=16,
        n_layers=n_layers,
        activation=activation,
        variant=variant,
        clip_vloss=vclip,
        ent_coef=ent,
        kl_beta_init=0.7,
    )
    tr = PPO(cfg, seed=0)
    assert tr.backprop is not None
    batch = tr.collect(cfg.n_steps)
    values, advantages, returns = tr.gae_estimate(batch, cfg.gae_lambda)
    g = torch.Generator().manual_seed(2)
    obs, actions = batch.obs.flatten(0, 1), batch.actions.flatten(0, 1)
    # Move the "old" policy and values away so clipping is active for part of the batch.
    old_lp = batch.log_probs.flatten() + 0.3 * torch.randn(obs.shape[0], generator=g)
    old_values = values.flatten() + 0.5 * torch.randn(obs.shape[0], generator=g)
    args = (obs, actions, old_lp, advantages.flatten(), old_values, returns.flatten(), 0.2)

    tr.flat_params.grad.fill_(float("nan"))  # the hand path must write every gradient
    hand = tr.loss_and_grad(*args)
    hand_grad = tr.flat_params.grad.clone()
    backprop, tr.backprop = tr.backprop, None  # the autograd reference path
    ref = tr.loss_and_grad(*args)
    ref_grad = tr.flat_params.grad.clone()
    tr.backprop = backprop

    assert hand[:3] == pytest.approx(ref[:3], rel=1e-5, abs=1e-6)  # losses, entropy
    torch.testing.assert_close(hand[3], ref[3], rtol=1e-5, atol=1e-6)  # log ratios
    ratio = hand[3].exp()
    assert ((ratio - 1).abs() > 0.2).any() and ((ratio - 1).abs() < 0.2).any()
    assert torch.isfinite(hand_grad).all() and hand_grad.abs().sum() > 0
    torch.testing.assert_close(hand_grad, ref_grad, rtol=1e-4, atol=1e-6)
    # every module parameter is a view of the flat buffer: one optimiser step moves the nets
    before = tr.policy.net[0].weight.detach().clone()
    tr.optimizer.step()
    assert not torch.equal(before, tr.policy.net[0].weight)
    tr.close()


def test_tanh_in_place_matches_torch() -> None:
    x = torch.linspace(-20, 20, 10_001)
    ref = torch.tanh(x)
    out = tanh_(x.clone())
    torch.testing.assert_close(out, ref, rtol=2e-7, atol=2e-7)
    strided = torch.linspace(-3, 3, 64).reshape(8, 8).t()  # not contiguous: torch's own tanh
    torch.testing.assert_close(tanh_(strided.clone()), torch.tanh(strided))
    assert math.isclose(float(tanh_(torch.tensor([0.5]))[0]), float(np.tanh(np.float32(0.5))))


@pytest.mark.parametrize("relu", [False, True])
def test_activation_backward_matches_autograd(relu: bool) -> None:
    z = torch.linspace(-4, 4, 512).reshape(2, 16, 16).requires_grad_()
    upstream = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(3))
    act = torch.relu if relu else torch.tanh
    act(z).backward(upstream)
    h = act(z.detach())
    g = upstream.clone().numpy()
    bias_grad = np.full((2, 1, 16), np.nan, dtype=np.float32)
    kernels.activation_backward(g, h.numpy(), bias_grad, relu)
    torch.testing.assert_close(torch.from_numpy(g), z.grad)
    torch.testing.assert_close(torch.from_numpy(bias_grad), z.grad.sum(1, keepdim=True))


@pytest.mark.parametrize(
    ("env_id", "activation"), [("CartPole-v1", "tanh"), ("FrozenLake-v1", "relu")]
)
def test_value_predict_equals_forward(env_id: str, activation: str) -> None:
    import gymnasium as gym

    space = gym.make(env_id).observation_space
    torch.manual_seed(0)
    value = ValueMLP(space, hidden_size=32, n_layers=2, activation=activation)
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(24)])).float().reshape(3, 8, -1)
    obs = obs.squeeze(-1) if env_id == "FrozenLake-v1" else obs
    with torch.no_grad():
        ref = value(obs)
    out = value.predict(obs)
    assert out.shape == ref.shape == obs.shape[:2]
    torch.testing.assert_close(out, ref)


def test_cpu_fast_paths_and_torch_paths_give_the_same_update() -> None:
    """What CUDA runs (torch sampling, autograd, torch Adam) and the CPU fast paths (numpy actor,
    hand-written backprop) agree on a whole PPO update from the same seed."""
    cfg = PPOConfig(env_id="CartPole-v1", **{**TINY, "n_epochs": 3, "batch_size": 32})
    fast = PPO(cfg, seed=3)
    slow = PPO(cfg, seed=3)
    slow.backprop = None
    slow._numpy_actor = None
    m_fast, m_slow = fast.update(), slow.update()
    for name in ("loss/policy", "loss/value", "policy/entropy", "diag/grad_norm", "diag/grad_var"):
        assert m_fast[name] == pytest.approx(m_slow[name], rel=1e-4, abs=1e-7), name
    torch.testing.assert_close(fast.flat_params, slow.flat_params, rtol=1e-4, atol=1e-6)
    fast.close()
    slow.close()


SINGLE_NETS = [
    ("CartPole-v1", "tanh", 2),
    ("Pendulum-v1", "relu", 2),  # Gaussian head: log_std gets its gradient too
    ("Acrobot-v1", "tanh", 1),
    ("FrozenLake-v1", "relu", 0),  # one-hot observations, no hidden layer
]


@pytest.mark.parametrize(("env_id", "activation", "n_layers"), SINGLE_NETS)
def test_single_net_backprop_equals_autograd(env_id: str, activation: str, n_layers: int) -> None:
    """PolicyBackprop / ValueBackprop (one net at a time, REINFORCE's, A2C's and TRPO's CPU
    path): log pi, H, V and every parameter gradient equal autograd's on the same numbers."""
    import gymnasium as gym

    from pglab.backprop import PolicyBackprop, ValueBackprop
    from pglab.policies import make_policy

    env = gym.make(env_id)
    torch.manual_seed(1)
    policy = make_policy(env.observation_space, env.action_space, 16, n_layers, activation)
    value = ValueMLP(env.observation_space, 16, n_layers, activation)
    env.observation_space.seed(0)
    env.action_space.seed(0)
    obs = torch.as_tensor(np.stack([env.observation_space.sample() for _ in range(50)]))
    actions = torch.as_tensor(np.stack([env.action_space.sample() for _ in range(50)]))
    if not isinstance(env.observation_space, gym.spaces.Discrete):
        obs = obs.float()
    if isinstance(env.action_space, gym.spaces.Box):
        actions = actions.float()
    g = torch.Generator().manual_seed(4)
    w = torch.randn(50, generator=g)
    target = torch.randn(50, generator=g)
    pb, vb = PolicyBackprop(policy), ValueBackprop(value)  # flat buffers from here on

    def ref_policy_grad() -> tuple[Tensor, Tensor, Tensor]:
        pb.flat.grad.zero_()
        from pglab.policies import entropy, log_prob

        dist = policy(obs)
        lp, ent = log_prob(dist, actions), entropy(dist)
        (-(lp * w).mean() - 0.03 * ent.mean()).backward()
        return lp.detach(), ent.detach(), pb.flat.grad.clone()

    lp_ref, ent_ref, grad_ref = ref_policy_grad()
    pb.flat.grad.fill_(float("nan"))  # the hand path must write every gradient
    with torch.no_grad():
        lp, ent = pb.forward(obs, actions.numpy())
        pb.backward(-w.numpy() / 50, -0.03 / 50)
    torch.testing.assert_close(torch.from_numpy(lp), lp_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(ent), ent_ref.expand(50), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pb.flat.grad, grad_ref, rtol=1e-4, atol=1e-6)

    vb.flat.grad.zero_()
    (value(obs) - target).pow(2).mean().backward()
    v_grad_ref = vb.flat.grad.clone()
    vb.flat.grad.fill_(float("nan"))
    with torch.no_grad():
        v = vb.forward(obs)
        vb.backward(2.0 * (v - target.numpy()) / 50)
        torch.testing.assert_close(torch.from_numpy(v), value(obs))
    torch.testing.assert_close(vb.flat.grad, v_grad_ref, rtol=1e-4, atol=1e-6)
    assert torch.isfinite(pb.flat.grad).all() and torch.isfinite(vb.flat.grad).all()


@pytest.mark.parametrize(("env_id", "activation", "n_layers"), SINGLE_NETS)
def test_segment_grads_equal_grad_samples(env_id: str, activation: str, n_layers: int) -> None:
    """The by-hand per-segment gradients (A2C's diagnostics on CPU) equal pglab.diagnostics'."""
    import gymnasium as gym

    from pglab.backprop import segment_grads, segment_grads_fit
    from pglab.diagnostics import grad_samples
    from pglab.policies import make_policy

    env = gym.make(env_id)
    torch.manual_seed(2)
    policy = make_policy(env.observation_space, env.action_space, 16, n_layers, activation)
    env.observation_space.seed(1)
    env.action_space.seed(1)
    obs = torch.as_tensor(np.stack([env.observation_space.sample() for _ in range(40)]))
    actions = torch.as_tensor(np.stack([env.action_space.sample() for _ in range(40)]))
    if not isinstance(env.observation_space, gym.spaces.Discrete):
        obs = obs.float()
    if isinstance(env.action_space, gym.spaces.Box):
        actions = actions.float()
    w = torch.randn(40, generator=torch.Generator().manual_seed(5))
    segments = torch.tensor([i * 7 // 40 for i in range(40)])[torch.randperm(40)]
    assert segment_grads_fit(policy, 40)
    ours = segment_grads(policy, obs, actions, w, segments, 8)  # segment 7 has no steps
    ref = grad_samples(policy, obs, actions, w, segments, 8)
    assert ours.shape == ref.shape and (ours[7] == 0).all()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
