"""The PureJaxRL peer of the training bench without JAX (CI's case): the section skips with
one line saying what is missing and how to install it; the settings it hands pglab are
PureJaxRL's config in pglab's conventions; requirements-peer.txt is exact pins that cannot
move pglab's own. With JAX installed the section is a benchmark, not a test."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from pglab.algos import make_config
from pglab.benchmarks import purejaxrl, training
from pglab.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]


def test_missing_names_the_first_absent_module_and_the_install_line() -> None:
    assert purejaxrl.missing(("json",)) is None
    reason = purejaxrl.missing(("json", "pglab_no_such_peer", "also_absent"))
    assert reason is not None
    assert reason.startswith("pglab_no_such_peer is not installed")
    assert "pip install --no-deps -r requirements-peer.txt" in reason


@pytest.mark.skipif(importlib.util.find_spec("jax") is not None, reason="jax is installed here")
def test_training_bench_section_skips_with_a_reason_when_jax_is_absent() -> None:
    lines: list[str] = []
    res = training.run(quick=True, log=lines.append, only=["ppo_vs_purejaxrl"])
    section = res["ppo_vs_purejaxrl"]
    assert section["skipped"].startswith("jax is not installed")
    assert set(section) == {"skipped", "section_wall_s"}
    assert lines == ["-- ppo_vs_purejaxrl", f"  skipped: {section['skipped']}"]


def test_pglab_settings_are_purejaxrls_config_in_pglab_conventions() -> None:
    s = purejaxrl.pglab_settings(purejaxrl.PUREJAXRL_CONFIG)
    cfg = make_config("ppo", s)  # valid
    assert (cfg.num_envs, cfg.n_steps, cfg.batch_size, cfg.n_epochs) == (4, 128, 128, 4)
    assert cfg.total_steps == 500_000 and cfg.learning_rate == 2.5e-4
    assert (cfg.lr_schedule, cfg.clip_schedule) == ("linear", "constant")
    assert (cfg.gamma, cfg.gae_lambda, cfg.clip_coef, cfg.ent_coef) == (0.99, 0.95, 0.2, 0.01)
    # PureJaxRL: VF_COEF 0.5 on 0.5 x MSE, clipped, = pglab's 0.25 on the MSE, clipped
    assert cfg.vf_coef == 0.25 and cfg.clip_vloss is True
    assert cfg.norm_adv and cfg.norm_adv_scope == "minibatch"
    assert (cfg.max_grad_norm, cfg.hidden_size, cfg.n_layers, cfg.activation) == (
        0.5,
        64,
        2,
        "tanh",
    )
    # the zoo row runs pglab's preset itself; PureJaxRL's side says the same in its terms
    assert purejaxrl.pglab_zoo_settings() == get_preset("ppo-cartpole-zoo").to_settings()
    zoo = purejaxrl.pglab_settings(purejaxrl.ZOO_CONFIG)
    preset = get_preset("ppo-cartpole-zoo").to_settings()
    for key in ("num_envs", "n_steps", "batch_size", "n_epochs", "learning_rate", "gamma"):
        assert zoo[key] == preset[key], key
    for key in ("gae_lambda", "ent_coef", "vf_coef", "lr_schedule", "clip_schedule"):
        assert zoo[key] == preset[key], key


def test_requirements_peer_is_exact_pins_that_leave_pglabs_own_alone() -> None:
    def names(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[a-z\-,]+\])?==([0-9][0-9a-z.]*)", line)
                assert m, f"{path.name}: {line!r} is not an exact pin"
                out[m.group(1).lower().replace("_", "-")] = m.group(3)
        return out

    peer = names(ROOT / "requirements-peer.txt")
    assert {"jax", "jaxlib", "flax", "optax", "gymnax"} <= set(peer)
    assert peer["jax"] == peer["jaxlib"]
    runtime = names(ROOT / "requirements.txt")
    assert not set(peer) & set(runtime)  # gymnasium, numpy, ...: pglab's pins stay
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "requirements-peer.txt" not in dev  # optional: CI does not install it
