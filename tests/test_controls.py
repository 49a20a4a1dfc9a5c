"""Stop and Pause land inside a long update (per env step and per PPO minibatch), and the
paused seconds stay out of ``time/sps``."""

from __future__ import annotations

import time

import pytest
import torch

from pglab.engine import Registry
from pglab.store import Store

# One update: 8 x 2048 = 16,384 steps, then 100 epochs of 256 minibatches: a minute or more
# on this machine, so every check below happens mid-update.
HUGE = {
    "env_id": "CartPole-v1",
    "num_envs": 8,
    "n_steps": 2048,
    "n_epochs": 100,
    "batch_size": 64,
    "grad_diagnostics": False,
    "total_steps": 5_000_000,
}


def _until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def registry():
    store = Store()
    reg = Registry(store, max_concurrent=2)
    yield reg
    reg.clear()
    store.close()


def _trainer(reg: Registry, run_id: str):
    return reg._runs[run_id].trainer


def _in_epochs(reg: Registry, run_id: str) -> bool:
    t = _trainer(reg, run_id)
    return t is not None and t.env_steps >= 16_384 and t.optimizer.steps > 0


def test_stop_lands_mid_collect_and_mid_epoch(registry):
    a = registry.launch("ppo", HUGE, seed=0)
    b = registry.launch("ppo", HUGE, seed=1)
    _until(lambda: (t := _trainer(registry, a)) is not None and t.env_steps > 800, 60, "collect")
    t0 = time.monotonic()
    registry.stop(a)  # mid-rollout: 800 of 16,384 steps collected
    assert registry.wait(a, 5) == "stopped"
    assert time.monotonic() - t0 < 1.0
    assert registry.snapshot(a)[0] == []  # the half-collected update is dropped

    _until(lambda: _in_epochs(registry, b), 120, "the epoch loop")
    t0 = time.monotonic()
    registry.stop(b)  # mid-epoch
    assert registry.wait(b, 5) == "stopped"
    assert time.monotonic() - t0 < 1.0


def test_pause_freezes_the_weights_mid_epoch_and_resume_continues(registry):
    run_id = registry.launch("ppo", HUGE, seed=0)
    _until(lambda: _in_epochs(registry, run_id), 120, "the epoch loop")
    trainer = _trainer(registry, run_id)
    registry.pause(run_id)
    time.sleep(0.3)  # one minibatch at most
    frozen = trainer.flat_params.detach().clone()
    steps = trainer.optimizer.steps
    time.sleep(0.7)
    assert torch.equal(trainer.flat_params.detach(), frozen), "weights moved while paused"
    assert trainer.optimizer.steps == steps
    assert registry.status(run_id) == "paused"
    registry.resume(run_id)
    _until(lambda: trainer.optimizer.steps > steps, 2, "a gradient step after resume")
    assert registry.status(run_id) == "running"


def test_paused_time_is_not_training_time():
    from pglab.algos import make_trainer

    cfg = {
        "env_id": "CartPole-v1",
        "num_envs": 2,
        "n_steps": 64,
        "batch_size": 64,
        "n_epochs": 2,
        "grad_diagnostics": False,
        "rollout": "python",  # polls every env step (the compiled rollout: every chunk)
    }
    trainer = make_trainer("ppo", cfg, seed=0)
    calls = {"n": 0}

    def control() -> float:  # "blocks" 10 s once, mid-update
        calls["n"] += 1
        return 10.0 if calls["n"] == 5 else 0.0

    trainer.control = control
    row = trainer.update()
    trainer.close()
    assert calls["n"] > 64  # once per env step and once per minibatch
    assert row["time/wall_s"] < 5.0  # the 10 s pause was left out...
    assert row["time/sps"] > 128 / 5.0  # ...of the throughput too
