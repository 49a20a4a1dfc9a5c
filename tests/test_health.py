"""Health flags: each fires on a scripted metric stream that shows its problem and stays
silent on a healthy stream (a real PPO run's metrics, and scripted healthy numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from pglab.health import THRESHOLDS, check

N = 60
PPO = {"variant": "clip", "target_kl": None, "kl_target": 0.01, "total_steps": 100_000}


def healthy() -> dict[str, np.ndarray]:
    """60 updates of a PPO run that learns: numbers in the ranges of a real CartPole run."""
    rng = np.random.default_rng(0)
    k = np.arange(N, dtype=float)
    return {
        "time/env_steps": (k + 1) * 1024,
        "diag/approx_kl": 0.008 + 0.002 * rng.random(N),
        "diag/clip_fraction": 0.1 + 0.05 * rng.random(N),
        "diag/explained_variance": np.minimum(0.95, 0.1 + k / 40),
        "policy/entropy": 0.69 - 0.004 * k,
        "diag/grad_snr": 1.5 + rng.random(N),
        "loss/value": 20 + 5 * rng.random(N) + k,  # grows slowly with the returns
        "rollout/return_last20": 20 + 3 * k,
    }


def keys(columns, algo="ppo", config=PPO, **kw) -> set[str]:
    return {f.key for f in check(columns, algo, config, **kw)}


def test_healthy_streams_raise_nothing():
    assert keys(healthy()) == set()
    assert keys(healthy(), reward_threshold=475) == set()
    assert keys({}) == set()  # no metrics yet
    short = {k: v[:5] for k, v in healthy().items()}  # too few updates to judge
    short["diag/approx_kl"][:] = 1.0
    assert keys(short) == set()


def test_healthy_real_ppo_run_raises_nothing():
    from pglab.algos import make_trainer

    cfg = {"env_id": "CartPole-v1", "num_envs": 4, "n_steps": 128, "batch_size": 128,
           "n_epochs": 4, "total_steps": 6_144}  # fmt: skip
    trainer = make_trainer("ppo", cfg, seed=0)
    rows = []
    while not trainer.done:
        rows.append(trainer.update())
    trainer.close()
    names = set().union(*rows)
    columns = {n: np.array([r.get(n, np.nan) for r in rows]) for n in names}
    flags = check(columns, "ppo", trainer.config.to_dict(), reward_threshold=475.0)
    assert flags == [], [f.text() for f in flags]


@pytest.mark.parametrize(
    ("key", "metric", "values"),
    [
        ("clip", "diag/clip_fraction", np.full(N, 0.45)),
        ("ev", "diag/explained_variance", np.r_[np.full(N - 20, 0.5), np.full(20, -0.3)]),
        ("snr", "diag/grad_snr", np.full(N, 0.02)),
        ("value_loss", "loss/value", np.r_[np.full(N - 5, 10.0), 500.0 * np.arange(1, 6)]),
        ("collapse", "rollout/return_last20", np.r_[np.linspace(20, 500, 40), np.full(20, 90.0)]),
        ("kl", "diag/approx_kl", np.full(N, 0.06)),
    ],
)
def test_each_flag_fires_on_its_stream(key, metric, values):
    columns = healthy()
    columns[metric] = values
    flags = check(columns, "ppo", PPO)
    assert [f.key for f in flags] == [key]
    f = flags[0]
    assert f.why and f.fix and f.detail and f.title in f.text()


def test_kl_limit_is_1_5x_the_target_when_there_is_one():
    columns = healthy()
    columns["diag/approx_kl"] = np.full(N, 0.02)
    assert keys(columns) == set()  # clip PPO without a target: 0.02 < 0.03
    with_target = {**PPO, "target_kl": 0.01}
    assert keys(columns, config=with_target) == {"kl"}  # 0.02 > 1.5 x 0.01
    columns["diag/approx_kl"] = np.full(N, 0.014)
    assert keys(columns, config=with_target) == set()  # 0.014 < 0.015
    penalty = {**PPO, "variant": "kl_penalty", "kl_target": 0.005}
    assert keys(columns, config=penalty) == {"kl"}  # 0.014 > 1.5 x 0.005
    assert keys(columns, "trpo", config=penalty) == set()  # KL of TRPO is bounded by delta
    assert THRESHOLDS["kl_over_target"] == 1.5


def test_entropy_collapse_only_early_and_unsolved():
    columns = healthy()
    columns["policy/entropy"] = np.r_[0.69, np.full(N - 1, 0.02)]
    long = {**PPO, "total_steps": 10_000_000}
    assert keys(columns, config=long) == {"entropy"}  # 0.6% of the budget spent
    assert keys(columns) == set()  # 61% of a 100k budget spent: not early
    assert keys(columns, config=long, reward_threshold=100) == set()  # solved: fine


def test_one_bad_update_does_not_fire():
    columns = healthy()
    columns["diag/clip_fraction"][-1] = 0.9
    columns["diag/grad_snr"][-2] = 1e-4
    assert keys(columns) == set()


def test_nan_guard():
    err = "loss/policy became nan at update 37 - try a smaller learning rate"
    flags = check({}, "ppo", PPO, status="failed", error=err)
    assert [(f.key, f.level) for f in flags] == [("nan", "error")]
    assert check({}, "ppo", PPO, status="failed", error="ValueError: disk full") == []
