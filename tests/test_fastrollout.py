"""The compiled CartPole rollout (pglab.fastrollout) against the Python path.

Env: driven by the same actions from the same seeds, the kernel's observations, rewards,
terminated / truncated flags, final observations, resets and env state equal
``SameStepVectorEnv``'s bit for bit (and so gym.make's per-env path, tests/test_envs_vector.py),
over thousands of steps with hundreds of episode ends and truncations at 500. Policy: the
kernel's log-probabilities equal the numpy actor's within float32 rounding (|diff| <= 1e-5),
and from the same noise its actions are the same (fixed seeds). Trainers: the same batches,
episodes and rollout metrics as ``rollout="python"``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pglab import fastrollout
from pglab.algos import make_trainer
from pglab.envs import SameStepVectorEnv, make_vec
from pglab.policies import CategoricalMLP, NumpyActor

ONE = np.nextafter(np.float32(1.0), np.float32(0.0))  # the largest float32 uniform below 1
TINY = np.finfo(np.float32).tiny


def _forcing_noise(actions: np.ndarray) -> np.ndarray:
    """Uniforms ``[T, N, 2]`` under which Gumbel-max picks ``actions`` whatever the policy's
    log-probabilities (within ~20 nats): the chosen action's Gumbel key is -log(-log ONE) =
    16.6, the other's -log(-log TINY) = -4.5."""
    u = np.full((*actions.shape, 2), TINY, dtype=np.float32)
    np.put_along_axis(u, actions[..., None], ONE, axis=-1)
    return u


class _Kernel:
    """The kernel on its own env: a SameStepVectorEnv and a freshly initialised policy."""

    def __init__(self, num_envs: int, seed: int, steps: int):
        self.env = make_vec("CartPole-v1", num_envs, seed, mode="vector_entry_point")
        assert isinstance(self.env, SameStepVectorEnv)
        self.obs0, _ = self.env.reset(seed=seed)
        torch.manual_seed(seed)
        policy = CategoricalMLP(self.env.single_observation_space, 2)
        self.actor = NumpyActor(policy)
        inner = self.env.unwrapped
        self.inner = inner
        self.consts = fastrollout.cartpole_constants(inner)
        T, N = steps, num_envs
        self.b = {
            "obs": np.zeros((T + 1, N, 4), np.float32),
            "actions": np.zeros((T, N), np.int64),
            "log_probs": np.zeros((T, N), np.float32),
            "rewards": np.zeros((T, N), np.float32),
            "terminated": np.zeros((T, N), bool),
            "truncated": np.zeros((T, N), bool),
            "next_obs": np.zeros((T, N, 4), np.float32),
            "episode": np.zeros((T, N), np.int64),
            "episode_returns": np.zeros((T, N), np.float64),
        }
        self.b["obs"][0] = self.obs0
        self.ret = np.zeros(N)
        self.len = np.zeros(N, np.int64)
        self.calls = 0

    def run(self, uniforms: np.ndarray, t0: int, t1: int) -> None:
        """Steps t0..t1-1, calling again (after a refill) wherever the kernel stops early."""
        b, env = self.b, self.env
        N = env.num_envs
        share = np.ones(N, bool), np.zeros(N, np.int64), 0, 0, 0, np.zeros(1, np.int64)
        t = t0
        while t < t1:
            env.refill_resets()
            t = fastrollout.cartpole_policy_rollout(
                self.inner.state,
                self.inner.steps,
                self.consts,
                env.reset_states,
                env.reset_pos,
                *fastrollout.kernel_params(self.actor),
                uniforms,
                b["obs"],
                b["actions"],
                b["log_probs"],
                b["rewards"],
                b["terminated"],
                b["truncated"],
                b["next_obs"],
                self.ret,
                self.len,
                b["episode"],
                b["episode_returns"],
                False,
                *share,
                np.zeros(b["rewards"].shape, bool),
                t,
                t1,
            )
            self.calls += 1


def _compare_step(k: _Kernel, ref: SameStepVectorEnv, t: int, actions: np.ndarray, counts):
    obs, rew, term, trunc, infos = ref.step(actions)
    b = k.b
    np.testing.assert_array_equal(b["actions"][t], actions)
    np.testing.assert_array_equal(b["obs"][t + 1], obs)  # the reset observation at ends
    np.testing.assert_array_equal(b["rewards"][t], rew.astype(np.float32))
    np.testing.assert_array_equal(b["terminated"][t], term)
    np.testing.assert_array_equal(b["truncated"][t], trunc)
    dones = term | trunc
    true_next = obs.copy()
    for i in np.flatnonzero(dones):
        true_next[i] = infos["final_obs"][i]
    np.testing.assert_array_equal(b["next_obs"][t], true_next)
    np.testing.assert_array_equal(b["episode"][t] > 0, dones)
    counts[0] += int(term.sum())
    counts[1] += int(trunc.sum())
    return obs


def test_reset_block_draws_equal_successive_draws() -> None:
    from gymnasium.utils import seeding

    a, _ = seeding.np_random(7)
    b, _ = seeding.np_random(7)
    block = a.uniform(-0.05, 0.05, size=(64, 4))
    one_by_one = np.stack([b.uniform(low=-0.05, high=0.05, size=(4,)) for _ in range(64)])
    np.testing.assert_array_equal(block, one_by_one)


@pytest.mark.parametrize("seed", [0, 42])
def test_random_actions_same_transitions_as_the_python_env(seed: int) -> None:
    """3000 steps of 5 envs in long kernel calls (each env needs several reset blocks, so the
    kernel stops early and goes on after a refill), against SameStepVectorEnv step by step."""
    T, N = 3000, 5
    k = _Kernel(N, seed, T)
    ref = make_vec("CartPole-v1", N, seed, mode="vector_entry_point")
    np.testing.assert_array_equal(ref.reset(seed=seed)[0], k.obs0)
    actions = np.random.default_rng(seed).integers(0, 2, size=(T, N))
    k.run(_forcing_noise(actions), 0, 1500)
    k.run(_forcing_noise(actions), 1500, T)
    assert k.calls > 4  # stopped early for refills
    counts = [0, 0]
    for t in range(T):
        _compare_step(k, ref, t, actions[t], counts)
    assert counts[0] >= 500  # many same-step resets compared
    np.testing.assert_array_equal(k.inner.state, ref.unwrapped.state)
    np.testing.assert_array_equal(k.inner.steps, ref.unwrapped.steps)
    np.testing.assert_array_equal(k.env.reset_pos, ref.reset_pos)
    # the tracker's running sums: steps since each env's last episode end
    lengths = np.zeros(N, np.int64)
    for t in range(T):
        lengths = np.where(k.b["episode"][t] > 0, 0, lengths + 1)
    np.testing.assert_array_equal(k.len, lengths)


def test_balanced_play_truncates_at_500() -> None:
    """A PD controller (as in tests/test_envs_vector.py) keeps poles up, so episodes end by
    the 500-step truncation; the kernel is driven one step at a time with its actions."""
    T, N, seed = 1600, 4, 11
    k = _Kernel(N, seed, T)
    ref = make_vec("CartPole-v1", N, seed, mode="vector_entry_point")
    obs, _ = ref.reset(seed=seed)
    gains = np.array([[0.0, 0.0, 10.0, 1.0], [0.05, 0.5, 10.0, 1.0], [0.0, 0.0, 10.0, 1.0]])
    counts = [0, 0]
    for t in range(T):
        actions = ((obs @ gains[t % 3]) > 0).astype(np.int64)
        actions[3] = t % 2 if t < 900 else actions[3]  # one env terminating early too
        noise = np.zeros((T, N, 2), np.float32)
        noise[t] = _forcing_noise(actions)
        k.run(noise, t, t + 1)
        obs = _compare_step(k, ref, t, actions, counts)
    assert counts[1] >= 6 and counts[0] >= 1
    lens = k.b["episode"][k.b["truncated"]]
    assert (lens == 500).all()


def test_policy_log_probs_and_actions_equal_the_numpy_actor() -> None:
    """Tolerance: |log pi_kernel - log pi_numpy| <= 1e-5 (float32 sums in another order);
    actions equal for these fixed seeds (a flip needs two Gumbel keys within ~1e-6)."""
    T, N, seed = 400, 8, 3
    k = _Kernel(N, seed, T)
    # a policy far from uniform, so the test is not trivially about logits near 0
    gen = torch.Generator().manual_seed(seed)
    for w in k.actor.weights():
        w[...] = torch.randn(w.shape, generator=gen).numpy() * 0.7
    u = torch.rand((T, N, 2), generator=gen).numpy()
    k.run(u, 0, T)
    obs = k.b["obs"][:T].reshape(T * N, 4)
    actor = k.actor
    actions, log_prob = actor.sample(obs, u.reshape(T * N, 2))
    np.testing.assert_array_equal(k.b["actions"].ravel(), actions)
    np.testing.assert_allclose(k.b["log_probs"].ravel(), log_prob, rtol=0, atol=1e-5)
    assert 0.2 < actions.mean() < 0.8 and log_prob.min() < -1.0  # both actions, not uniform
    # both actions' log-probabilities against the torch policy's log-softmax
    logp_all = torch.log_softmax(actor.policy.net(torch.from_numpy(obs)), -1).detach().numpy()
    chosen = k.b["actions"].ravel()
    np.testing.assert_allclose(log_prob, logp_all[np.arange(T * N), chosen], atol=1e-5, rtol=0)
    k2 = _Kernel(N, seed, T)
    k2.actor = k.actor
    for t in range(T):  # one step at a time on the first kernel's observations
        k2.b["obs"][t] = k.b["obs"][t]
        k2.run(_forcing_noise(1 - k.b["actions"]), t, t + 1)
    np.testing.assert_allclose(
        k2.b["log_probs"].ravel(), logp_all[np.arange(T * N), 1 - chosen], atol=1e-5, rtol=0
    )


def _train(algo: str, settings: dict, rollout: str, updates: int):
    tr = make_trainer(algo, {**settings, "rollout": rollout}, seed=5)
    batches, metrics = [], []
    if hasattr(tr, "collect") and algo != "reinforce":
        collect = tr.collect

        def spy(n_steps):
            batch = collect(n_steps)
            batches.append(batch)
            return batch

        tr.collect = spy
    for _ in range(updates):
        metrics.append(tr.update())
    return tr, batches, metrics


@pytest.mark.parametrize(
    ("algo", "settings", "updates"),
    [
        ("ppo", {"num_envs": 4, "n_steps": 256, "batch_size": 256, "n_epochs": 2}, 4),
        ("a2c", {"num_envs": 2}, 100),
        ("a2c", {"num_envs": 4, "activation": "relu", "n_layers": 1, "hidden_size": 32}, 30),
        ("ppo", {"num_envs": 4, "n_steps": 128, "batch_size": 128, "n_layers": 0}, 3),
        ("trpo", {"num_envs": 1, "n_steps": 512}, 3),
        ("reinforce", {}, 4),
        ("reinforce", {"num_envs": 3, "batch_size": 5, "baseline": "value"}, 3),
        ("reinforce", {"num_envs": 2, "batch_mode": "steps", "batch_size": 700}, 3),
    ],
)
def test_trainers_same_rollouts_as_the_python_path(algo: str, settings: dict, updates: int) -> None:
    settings = {**settings, "total_steps": 100_000}
    fast, fb, fm = _train(algo, settings, "auto", updates)
    ref, rb, rm = _train(algo, settings, "python", updates)
    assert fast._compiled_rollout is not None and ref._compiled_rollout is None
    for a, b in zip(fb, rb, strict=True):
        for name in ("obs", "actions", "rewards", "terminated", "truncated", "next_obs"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
            assert getattr(a, name).dtype == getattr(b, name).dtype
        torch.testing.assert_close(a.log_probs, b.log_probs, rtol=0, atol=1e-5)
    assert [(e.ret, e.length, e.end_step) for e in fast.episodes] == [
        (e.ret, e.length, e.end_step) for e in ref.episodes
    ]
    assert len(fast.episodes) >= 10
    for a, b in zip(fm, rm, strict=True):
        for key in a:
            if key.startswith("rollout/") or key == "time/env_steps":
                assert a[key] == b[key], key
    assert fast.env_steps == ref.env_steps
    np.testing.assert_array_equal(fast._obs, ref._obs)
    np.testing.assert_array_equal(fast._tracker.lengths, ref._tracker.lengths)
    np.testing.assert_array_equal(fast._tracker.returns, ref._tracker.returns)


def test_python_steps_continue_where_the_kernel_left_the_env() -> None:
    """The env object stays the state of record: a trainer that alternates compiled and Python
    rollouts sees the transitions of one that only ever steps in Python."""
    settings = {"num_envs": 4, "n_steps": 200, "batch_size": 200, "n_epochs": 1}
    mixed, _, _ = _train("ppo", settings, "auto", 0)
    ref, _, _ = _train("ppo", settings, "python", 0)
    compiled = mixed._compiled_rollout
    for k in range(4):
        mixed._compiled_rollout = compiled if k % 2 == 0 else None
        a, b = mixed.collect(200), ref.collect(200)
        for name in ("obs", "actions", "terminated", "truncated", "next_obs"):
            assert torch.equal(getattr(a, name), getattr(b, name)), (k, name)
    assert [e.end_step for e in mixed.episodes] == [e.end_step for e in ref.episodes]
    assert mixed.episodes


def test_applies_only_where_it_is_exact() -> None:
    cpu = torch.device("cpu")
    assert make_trainer("ppo", {"num_envs": 2})._compiled_rollout is not None
    assert make_trainer("reinforce", {})._compiled_rollout is not None
    assert make_trainer("trpo", {})._compiled_rollout is not None
    assert make_trainer("ppo", {"env_id": "Acrobot-v1"})._compiled_rollout is None
    ppo_norm = make_trainer("ppo", {"normalize_obs": True})
    assert ppo_norm._compiled_rollout is None
    assert not fastrollout.applies(ppo_norm.config, cpu)
    assert make_trainer("ppo", {"rollout": "python"})._compiled_rollout is None
    with pytest.raises(ValueError, match="rollout"):
        make_trainer("ppo", {"rollout": "numba"})


def test_stop_lands_within_a_chunk_at_64_envs() -> None:
    """Trainer.poll runs before every chunk of at most CHUNK_ENV_STEPS env steps: a Stop (the
    engine's control raising) lands after a few chunks, not at the end of the rollout."""
    tr = make_trainer("ppo", {"num_envs": 64, "n_steps": 1024, "batch_size": 4096})
    calls = []

    class Stop(Exception):
        pass

    def control() -> float:
        calls.append(tr.env_steps)
        if len(calls) == 3:
            raise Stop
        return 0.0

    tr.control = control
    with pytest.raises(Stop):
        tr.collect(1024)
    assert calls == [0, fastrollout.CHUNK_ENV_STEPS, 2 * fastrollout.CHUNK_ENV_STEPS]


def test_config_hash_of_the_default_rollout_is_the_old_one() -> None:
    """Runs stored before the ``rollout`` field existed group (by config) with new ones."""
    from pglab.algos import make_config
    from pglab.compare import config_hash

    new = make_config("ppo", {}).to_dict()
    old = {k: v for k, v in new.items() if k != "rollout"}
    assert new["rollout"] == "auto"
    assert config_hash("ppo", new) == config_hash("ppo", old)
    assert config_hash("ppo", {**new, "rollout": "python"}) != config_hash("ppo", old)
