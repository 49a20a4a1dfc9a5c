"""Rollouts over SAME_STEP auto-reset vector envs: the episode boundary done right.

The reference is gymnasium itself: the same actions replayed on single envs wrapped in
``RecordEpisodeStatistics``, seeded the way ``SyncVectorEnv.reset(seed=s)`` seeds env i
(``s + i``) and reset without a seed after each episode, as SAME_STEP auto-reset does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import RecordEpisodeStatistics

from pglab.algos.base import Trainer
from pglab.config import BaseConfig, param
from pglab.envs import make_vec
from pglab.estimators import gae
from pglab.rollout import RewardScaler, RunningMeanStd, segment_ids

torch.set_num_threads(1)  # tiny nets: extra threads only add contention


@dataclass(frozen=True)
class CollectConfig(BaseConfig):
    algo: ClassVar[str] = "collect"
    num_envs: int = param(3, "Parallel envs.", low=1, high=64)
    normalize_obs: bool = param(False, "Normalise observations.")


class Collector(Trainer):
    """A trainer that only collects, so the base's rollout is tested on its own."""

    name: ClassVar[str] = "collect"
    Config: ClassVar[type[BaseConfig]] = CollectConfig

    def _update(self) -> dict[str, float]:
        self.collect(8)
        return {}


def replay(env_id: str, seed: int, actions: np.ndarray):
    """Step single envs with the recorded ``actions [T, N]``; returns per-step reference data."""
    T, N = actions.shape[:2]
    final_obs = [[None] * N for _ in range(T)]
    reset_obs = [[None] * N for _ in range(T)]
    episodes = []  # (t, i, return, length) in the order the vector env reports them
    term = np.zeros((T, N), bool)
    trunc = np.zeros((T, N), bool)
    for i in range(N):
        env = RecordEpisodeStatistics(gym.make(env_id))
        env.reset(seed=seed + i)
        for t in range(T):
            a = actions[t, i]
            if isinstance(env.action_space, gym.spaces.Box):  # the rollout clips to the bounds
                a = np.clip(a, env.action_space.low, env.action_space.high)
            obs, _, term[t, i], trunc[t, i], info = env.step(a)
            final_obs[t][i] = obs
            reset_obs[t][i] = obs
            if term[t, i] or trunc[t, i]:
                episodes.append((t, i, float(info["episode"]["r"]), int(info["episode"]["l"])))
                reset_obs[t][i], _ = env.reset()
        env.close()
    episodes.sort(key=lambda e: (e[0], e[1]))
    return episodes, np.array(final_obs), np.array(reset_obs), term, trunc


@pytest.mark.parametrize(("env_id", "T"), [("CartPole-v1", 120), ("Pendulum-v1", 205)])
def test_episode_boundaries_match_gymnasium(env_id: str, T: int) -> None:
    torch.manual_seed(0)
    tr = Collector(CollectConfig(env_id=env_id, num_envs=3), seed=7)
    batch = tr.collect(T)
    actions = batch.actions.numpy()
    episodes, final_obs, reset_obs, term, trunc = replay(env_id, 7, actions)

    # Terminated and truncated kept apart: CartPole only terminates (random play never
    # reaches 500 steps); Pendulum only truncates, at step 200.
    np.testing.assert_array_equal(batch.terminated.numpy(), term)
    np.testing.assert_array_equal(batch.truncated.numpy(), trunc)
    if env_id == "CartPole-v1":
        assert term.sum() >= 5 and not trunc.any()
    else:
        assert not term.any() and trunc[199].all() and trunc.sum() == 3

    # Episode statistics exactly as RecordEpisodeStatistics reports them.
    assert len(tr.episodes) == len(episodes) > 0
    for ours, (t, _i, ret, length) in zip(tr.episodes, episodes):
        assert ours.ret == pytest.approx(ret, rel=1e-6)
        assert ours.length == length
        assert ours.end_step == (t + 1) * 3

    # next_obs is the true successor: the final obs at an episode end, not the reset obs.
    np.testing.assert_allclose(batch.next_obs.numpy(), final_obs, rtol=1e-6)
    dones = batch.dones.numpy()
    obs = batch.obs.numpy()
    np.testing.assert_allclose(obs[1:][~dones[:-1]], batch.next_obs.numpy()[:-1][~dones[:-1]])
    np.testing.assert_allclose(obs[1:][dones[:-1]], reset_obs[:-1][dones[:-1]], rtol=1e-6)
    assert not np.allclose(obs[1:][dones[:-1]], final_obs[:-1][dones[:-1]])


def test_truncation_bootstraps_from_value_of_final_obs() -> None:
    tr = Collector(CollectConfig(env_id="Pendulum-v1", num_envs=2), seed=3)
    batch = tr.collect(201)  # steps 0..199 are episode 1 (truncated at 199), 200 starts the next
    value = tr.value
    assert value is not None
    with torch.no_grad():
        v, v_next = value(batch.obs), value(batch.next_obs)
    gamma = 0.9
    adv = gae(batch.rewards, v, v_next, batch.terminated, batch.truncated, gamma, 0.0)
    t = 199
    assert batch.truncated[t].all() and not batch.terminated[t].any()
    with torch.no_grad():
        v_final = value(batch.next_obs[t])  # the true last observation of the episode
        v_reset = value(batch.obs[t + 1])  # what a naive rollout would bootstrap from
    expected = batch.rewards[t] + gamma * v_final - v[t]
    torch.testing.assert_close(adv[t], expected)
    assert not torch.allclose(v_final, v_reset)


def test_collect_on_discrete_observations() -> None:
    tr = Collector(CollectConfig(env_id="FrozenLake-v1", num_envs=2), seed=0)
    batch = tr.collect(30)
    assert batch.obs.shape == (30, 2) and batch.next_obs.shape == (30, 2)
    assert batch.actions.dtype == torch.int64 and batch.log_probs.shape == (30, 2)
    assert (batch.log_probs <= 0).all()


def test_normalize_obs_refused_for_discrete_observations() -> None:
    with pytest.raises(ValueError, match="normalize_obs"):
        Collector(CollectConfig(env_id="FrozenLake-v1", normalize_obs=True), seed=0)


def test_segment_ids_by_hand() -> None:
    dones = torch.tensor([[0, 1], [1, 0], [0, 0], [0, 1]], dtype=torch.bool)  # [T=4, N=2]
    ids, m = segment_ids(dones)
    # env 0: steps 0-1 | 2-3 ; env 1: step 0 | 1-3
    assert ids.tolist() == [[0, 2], [0, 3], [1, 3], [1, 3]]
    assert m == 4


def test_running_mean_std_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (5, 17, 1, 40)]
    rms = RunningMeanStd((2,), epsilon=0.0 + 1e-12)
    for c in chunks:
        rms.update(c)
    allx = np.concatenate(chunks)
    np.testing.assert_allclose(rms.mean, allx.mean(0), rtol=1e-9)
    np.testing.assert_allclose(rms.var, allx.var(0), rtol=1e-9)


def test_reward_scaler_by_hand() -> None:
    rewards = np.array([[1.0], [2.0], [3.0]])
    dones = np.array([[False], [True], [False]])
    scaler = RewardScaler(num_envs=1, gamma=0.5)
    out = scaler(rewards, dones)
    rets = np.array([1.0, 2.5, 3.0])  # G = 0.5 G + r, reset after the done at t=1
    rms = RunningMeanStd(())
    rms.update(rets)
    np.testing.assert_allclose(out[:, 0], rewards[:, 0] / np.sqrt(rms.var + 1e-8), rtol=1e-6)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "FrozenLake-v1"])
def test_lean_vector_env_steps_exactly_like_gymnasiums(env_id: str) -> None:
    """pglab's SyncVectorEnv returns what gymnasium's does, infos included (FrozenLake's envs
    return non-empty infos; CartPole's are empty; Pendulum's actions are Box)."""
    ours = make_vec(env_id, 4, seed=0)
    ref = gym.make_vec(
        env_id,
        num_envs=4,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    ref.action_space.seed(0)
    o1, _ = ours.reset(seed=3)
    o2, _ = ref.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    ends = 0
    for _ in range(300):
        actions = ours.action_space.sample()
        s1, s2 = ours.step(actions), ref.step(actions)
        for a, b in zip(s1[:4], s2[:4], strict=True):
            np.testing.assert_array_equal(a, b)
        assert s1[4].keys() == s2[4].keys()
        for key, value in s1[4].items():
            if key == "final_info":
                assert value.keys() == s2[4][key].keys()
            elif key == "final_obs":  # object arrays: the final observation where one ended
                for i in np.flatnonzero(s1[4]["_final_obs"]):
                    np.testing.assert_array_equal(value[i], s2[4][key][i])
            else:
                np.testing.assert_array_equal(value, s2[4][key])
        ends += int(s1[2].sum() + s1[3].sum())
    assert ends >= 4  # episodes ended inside the window, so auto-reset was exercised
    ours.close()
    ref.close()
