"""Config validation: every error names the field, the value and the allowed range; presets
and the ladder are valid configs of their algorithms."""

from __future__ import annotations

import importlib.util
import json

import pytest

from pglab.algos import make_config
from pglab.algos.ppo import PPOConfig
from pglab.config import parse_sets
from pglab.presets import PRESETS, get_preset, ladder, presets_for


def _algo_exists(algo: str) -> bool:
    return importlib.util.find_spec(f"pglab.algos.{algo}") is not None


@pytest.mark.parametrize(
    ("settings", "pattern"),
    [
        ({"clip_coef": 1.5}, r"clip_coef: 1\.5 is out of range \(in \[0, 1\]\)"),
        ({"n_steps": 0}, r"n_steps: 0 is out of range \(in \[1, 8192\]\)"),
        (
            {"variant": "adaptive"},
            r"variant: 'adaptive' is not allowed \(one of clip, kl_penalty\)",
        ),
        ({"n_epochs": "many"}, r"n_epochs: 'many' is not a valid int \(in \[1, 100\]\)"),
        ({"n_epochs": 2.5}, r"n_epochs: 2\.5 is not a valid int"),
        ({"learning_rate": float("nan")}, r"learning_rate: nan must be a finite number"),
        ({"norm_adv": "maybe"}, r"norm_adv: 'maybe' is not a valid bool"),
        ({"gamma": None}, r"gamma: a value is required \(in \[0, 1\]\)"),
        ({"env_id": "os:system"}, r"env_id: 'os:system' looks like a 'module:Class' entry point"),
        ({"env_id": "NoSuchEnv-v9"}, r"env_id: 'NoSuchEnv-v9' is not a registered gymnasium id"),
        ({"learnin_rate": 0.1}, r"learnin_rate: not a setting of ppo \(known: env_id, "),
    ],
)
def test_invalid_values_name_field_value_and_range(settings: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        PPOConfig.from_dict(settings)


def test_strings_from_the_cli_are_coerced() -> None:
    cfg = PPOConfig.from_dict(
        parse_sets(["target_kl=none", "norm_adv=off", "n_steps=64", "learning_rate=3e-4"])
    )
    assert cfg.target_kl is None and cfg.norm_adv is False
    assert cfg.n_steps == 64 and cfg.learning_rate == 3e-4
    assert PPOConfig.from_dict({"target_kl": "0.02"}).target_kl == 0.02
    with pytest.raises(ValueError, match="--set: expected name=value"):
        parse_sets(["learning_rate"])


def test_config_json_round_trip() -> None:
    cfg = PPOConfig(env_id="Pendulum-v1", n_steps=64, target_kl=0.05, variant="kl_penalty")
    data = json.loads(cfg.to_json())
    assert data.pop("algo") == "ppo"
    assert PPOConfig.from_dict(data) == cfg


def test_unsupported_spaces_get_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"env_id: 'CarRacing-v3'"):
        PPOConfig(env_id="CarRacing-v3")


def test_every_preset_is_a_valid_config_of_its_algorithm() -> None:
    checked = 0
    for preset in PRESETS.values():
        assert preset.source.startswith("https://")
        if not _algo_exists(preset.algo):
            continue
        cfg = preset.config()
        assert cfg.env_id == preset.env_id
        for key, value in preset.settings.items():
            assert getattr(cfg, key) == value, (preset.name, key)
        checked += 1
    assert checked >= 3


def test_ppo_cartpole_zoo_preset_is_the_issue_setting() -> None:
    s = get_preset("ppo-cartpole-zoo").settings
    assert (s["num_envs"], s["n_steps"], s["batch_size"], s["n_epochs"]) == (8, 32, 256, 20)
    assert (s["gae_lambda"], s["gamma"], s["ent_coef"]) == (0.8, 0.98, 0.0)
    assert (s["learning_rate"], s["lr_schedule"]) == (1e-3, "linear")
    assert (s["clip_coef"], s["clip_schedule"]) == (0.2, "linear")
    assert [p.name for p in presets_for("ppo", "CartPole-v1")] == ["ppo-cartpole-zoo"]
    with pytest.raises(ValueError, match="preset: 'nope' is not a preset"):
        get_preset("nope")


def test_ladder_rungs_are_valid_and_share_env_and_budget() -> None:
    rungs = ladder("CartPole-v1", 50_000)
    assert [r[1] for r in rungs] == ["reinforce"] * 4 + ["a2c", "ppo"]
    for _label, algo, settings in rungs:
        assert settings["env_id"] == "CartPole-v1" and settings["total_steps"] == 50_000
        if _algo_exists(algo):
            make_config(algo, settings)
    value = next(s for label, _, s in rungs if label == "+ value baseline")
    assert value["vf_iters"] == 20 and value["vf_learning_rate"] == 1e-2  # see ladder()
