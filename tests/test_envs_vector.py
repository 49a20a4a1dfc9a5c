"""gymnasium's numpy-vectorised CartPole under pglab's SAME_STEP auto-reset gives the same
transitions as the per-env path (``SyncVectorEnv`` over ``gym.make`` envs), bit for bit:
observations, rewards, terminated and truncated kept apart, final observations, resets."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from pglab.envs import SameStepVectorEnv, make_vec, vectorization_mode


def _pair(num_envs: int, seed: int):
    fast = make_vec("CartPole-v1", num_envs, seed, mode="vector_entry_point")
    ref = make_vec("CartPole-v1", num_envs, seed, mode="sync")
    assert isinstance(fast, SameStepVectorEnv) and not isinstance(ref, SameStepVectorEnv)
    return fast, ref


def _step_both(fast, ref, actions, counts):
    s1, s2 = fast.step(actions), ref.step(actions)
    for a, b in zip(s1[:4], s2[:4], strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    dones = s1[2] | s1[3]
    assert s1[4].keys() == s2[4].keys()
    if dones.any():
        np.testing.assert_array_equal(s1[4]["_final_obs"], s2[4]["_final_obs"])
        for i in np.flatnonzero(dones):
            np.testing.assert_array_equal(s1[4]["final_obs"][i], s2[4]["final_obs"][i])
    counts[0] += int(s1[2].sum())
    counts[1] += int(s1[3].sum())
    return s1[0]


@pytest.mark.parametrize("seed", [0, 5, 123])
def test_random_play_same_transitions(seed: int) -> None:
    fast, ref = _pair(6, seed)
    o1, _ = fast.reset(seed=seed)
    o2, _ = ref.reset(seed=seed)
    np.testing.assert_array_equal(o1, o2)
    counts = [0, 0]
    for _ in range(1500):
        _step_both(fast, ref, fast.action_space.sample(), counts)
    assert counts[0] >= 100  # many terminations, so many same-step resets were compared


def test_balanced_play_truncates_at_500_like_the_time_limit() -> None:
    """A PD controller keeps the pole up: episodes end by truncation (step 500), with some
    envs terminating first, both flags compared step by step."""
    fast, ref = _pair(5, 11)
    obs, _ = fast.reset(seed=11)
    ref.reset(seed=11)
    counts = [0, 0]
    gains = np.array([[0.0, 0.0, 10.0, 1.0], [0.05, 0.5, 10.0, 1.0], [0.0, 0.0, 10.0, 1.0]])
    for t in range(1100):
        k = gains[t % 3]
        actions = ((obs @ k) > 0).astype(np.int64)
        obs = _step_both(fast, ref, actions, counts)
    assert counts[1] >= 5  # every env reached the time limit at least once


def test_masked_reset_and_reseeding() -> None:
    fast, ref = _pair(4, 3)
    fast.reset(seed=3)
    ref.reset(seed=3)
    counts = [0, 0]
    for _ in range(7):
        _step_both(fast, ref, np.array([0, 1, 1, 0]), counts)
    mask = np.array([True, False, True, False])
    o1, _ = fast.reset(options={"reset_mask": mask})
    o2, _ = ref.reset(options={"reset_mask": mask.copy()})
    np.testing.assert_array_equal(o1, o2)
    for _ in range(200):
        _step_both(fast, ref, fast.action_space.sample(), counts)
    o1, _ = fast.reset(seed=9)  # reseeding starts every env's generator again
    o2, _ = ref.reset(seed=9)
    np.testing.assert_array_equal(o1, o2)


def test_auto_mode_picks_the_vector_env_for_cartpole_only() -> None:
    assert vectorization_mode("CartPole-v1", 8) == "vector_entry_point"
    assert vectorization_mode("CartPole-v1", 1) == "sync"  # one Python env is cheaper
    assert vectorization_mode("Acrobot-v1", 8) == "sync"
    assert isinstance(make_vec("CartPole-v1", 8, 0), SameStepVectorEnv)
    with pytest.raises(ValueError, match="mode"):
        make_vec("Acrobot-v1", 8, 0, mode="vector_entry_point")
    with pytest.raises(ValueError, match="mode"):
        make_vec("CartPole-v1", 8, 0, mode="fast")


def test_inner_env_is_gymnasiums_own() -> None:
    env = make_vec("CartPole-v1", 8, 0)
    inner = env.unwrapped
    assert type(inner).__module__ == "gymnasium.envs.classic_control.cartpole"
    assert type(inner).__name__ == "CartPoleVectorEnv"
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
