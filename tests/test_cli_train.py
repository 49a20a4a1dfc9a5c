"""``python -m pglab train`` and ``python -m pglab algos``, in-process through the dispatcher
(the same ``main`` the module entry point calls) plus one real subprocess."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pglab.cli import main
from pglab.cli.train import build_config

torch.set_num_threads(1)

SMALL = ["--set", "num_envs=2", "--set", "n_steps=32", "--set", "batch_size=32"]


def test_train_json_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "128", "--json", *SMALL]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    data = json.loads(out[-1])
    assert data["algo"] == "ppo" and data["env"] == "CartPole-v1" and data["seed"] == 0
    assert data["env_steps"] == 128 and data["status"] == "finished"
    assert data["wall_s"] > 0 and data["sps"] > 0
    assert data["final_return"] > 0 and data["solved_at_step"] is None
    assert data["error"] is None


def test_train_records_the_run_in_the_store(tmp_path: Path, capsys) -> None:
    """The CLI writes to the same store the lab reads: status, config, metrics, checkpoint."""
    from pglab.store import Store

    path = tmp_path / "cli.sqlite"
    argv = ["train", "--algo", "ppo", "--steps", "128", "--seed", "3", "--json", *SMALL]
    assert main([*argv, "--store", str(path)]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    store = Store(path)
    record = store.get_run(data["run_id"])
    assert record is not None and record.status == "finished" and record.seed == 3
    assert record.config["n_steps"] == 32 and record.env_steps == 128
    frame = store.metrics(record.id)
    assert list(frame["time/env_steps"]) == [64.0, 128.0]
    assert store.load_checkpoint(record.id) is not None


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--algo", "ppo", "--set", "clip_coef=3"], "clip_coef: 3.0 is out of range"),
        (["--algo", "ppo", "--set", "nonsense=1"], "nonsense: not a setting of ppo"),
        (["--algo", "ppo", "--env", "os:system"], "env_id: 'os:system'"),
        (["--algo", "ppo", "--device", "tpu"], "device: 'tpu' is not allowed"),
        (["--algo", "ppo", "--seed", "-1"], "seed: -1 is not allowed"),
        (
            ["--algo", "a2c", "--preset", "ppo-cartpole-zoo"],
            "--preset: 'ppo-cartpole-zoo' is a ppo",
        ),
        (["--preset", "nope"], "preset: 'nope' is not a preset"),
        (["--env", "CartPole-v1"], "--algo: required"),
        (["--algo", "ppo", "--set", "lr"], "--set: expected name=value"),
    ],
)
def test_bad_arguments_one_line_nonzero(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["train", *argv])
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_preset_config_file_and_set_layering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pglab.algos.ppo import PPOConfig

    exported = PPOConfig(num_envs=2, n_steps=16, batch_size=16, total_steps=32, gamma=0.9)
    path = tmp_path / "run.json"
    path.write_text(exported.to_json())
    rc = main(["train", "--config", str(path), "--json"])
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and data["algo"] == "ppo" and data["env_steps"] == 32

    # defaults < config file < preset < --steps < --set
    args = argparse.Namespace(
        algo=None,
        config=path,
        preset="ppo-cartpole-zoo",
        env=None,
        steps=5000,
        set=["n_epochs=3"],
    )
    algo, cfg = build_config(args)
    assert algo == "ppo"
    assert cfg.gamma == 0.98 and cfg.num_envs == 8  # the preset beat the file
    assert cfg.total_steps == 5000 and cfg.n_epochs == 3
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="--config: expected a JSON object"):
        build_config(args)


def test_algos_json_lists_everything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["algos", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    algos = {a["name"]: a for a in data["algorithms"]}
    ppo = algos["ppo"]
    assert ppo["variants"] == {"variant": ["clip", "kl_penalty"]}
    hp = {h["name"]: h for h in ppo["hyperparameters"]}
    assert hp["clip_coef"]["default"] == 0.2 and hp["clip_coef"]["high"] == 1.0
    assert hp["clip_coef"]["help"]
    assert "ppo-cartpole-zoo" in ppo["presets"]
    names = {m["name"] for m in data["metrics"]}
    assert {"diag/approx_kl", "diag/grad_snr", "opt/kl_beta", "time/sps"} <= names
    assert all(m["formula"] and m["meaning"] for m in data["metrics"])
    assert {p["name"] for p in data["presets"]} >= {"ppo-cartpole-zoo", "reinforce-simplest-pg"}


def test_algos_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["algos"]) == 0
    out = capsys.readouterr().out
    assert "clip_coef" in out and "rollout/return_last20" in out


def test_subprocess_bad_argument_has_no_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "pglab", "train", "--algo", "ppo", "--set", "gamma=2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "pglab train: error: gamma: 2.0 is out of range (in [0, 1])"
