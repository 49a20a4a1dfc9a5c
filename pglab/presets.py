"""Named, sourced hyperparameter settings: rl-zoo tuned presets and the textbook baselines.

A preset is a plain dict of config fields (plus ``env_id``), validated only when it becomes a
config (:meth:`Preset.config`), so this module imports no algorithm.

Translation from rl-baselines3-zoo (https://github.com/DLR-RM/rl-baselines3-zoo/tree/master/hyperparams):
``n_envs -> num_envs``, ``n_timesteps -> total_steps``, ``lin_X -> X`` with a ``linear``
schedule, ``clip_range -> clip_coef``, ``normalize -> normalize_obs/normalize_reward``,
TRPO's ``batch_size -> vf_batch_size``, ``n_critic_updates -> vf_iters``,
``learning_rate -> vf_learning_rate`` (SB3's TRPO uses it for the critic only),
``cg_max_steps -> cg_iters``, ``target_kl -> max_kl``. SB3 defaults that differ from pglab's
are written out so a preset means the same thing whatever pglab's defaults become.

Not carried over: gSDE (``use_sde``), which pglab does not implement (the zoo's Pendulum
presets use it; ours use a plain Gaussian policy and say so), and ``normalize`` for A2C and
TRPO, whose configs have no normalisation flags. A2C and TRPO Pendulum presets are omitted:
without gSDE and normalisation the zoo settings are not known to work.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pglab.config import BaseConfig

ZOO = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/hyperparams/{}.yml"


@dataclass(frozen=True)
class Preset:
    name: str
    algo: str
    env_id: str
    settings: dict[str, Any] = field(hash=False)  # config fields, without env_id
    description: str
    source: str  # url or citation

    def to_settings(self) -> dict[str, Any]:
        """Config fields including ``env_id``, ready for ``make_config(algo, ...)``."""
        return {"env_id": self.env_id, **self.settings}

    def config(self, **overrides: Any) -> BaseConfig:
        """The validated config of this preset, with ``overrides`` applied on top."""
        from pglab.algos import make_config  # local: keeps this module free of torch imports

        return make_config(self.algo, {**self.to_settings(), **overrides})

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "algo": self.algo,
            "env_id": self.env_id,
            "settings": dict(self.settings),
            "description": self.description,
            "source": self.source,
        }


# SB3 defaults written out where pglab's defaults could differ.
_SB3_PPO = {
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "norm_adv": True,
    "clip_vloss": False,
    "target_kl": None,
    "batch_size": 64,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "clip_coef": 0.2,
    "gae_lambda": 0.95,
    "gamma": 0.99,
    "ent_coef": 0.0,
    "lr_schedule": "constant",
    "clip_schedule": "constant",
    "hidden_size": 64,
    "n_layers": 2,
    "activation": "tanh",
}
_SB3_A2C = {
    "n_steps": 5,
    "learning_rate": 7e-4,
    "gamma": 0.99,
    "gae_lambda": 1.0,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "optimizer": "rmsprop",
    "norm_adv": False,
    "hidden_size": 64,
    "n_layers": 2,
    "activation": "tanh",
}
_SB3_TRPO = {
    "max_kl": 0.01,
    "cg_iters": 15,
    "cg_damping": 0.1,
    "line_search_steps": 10,
    "line_search_decay": 0.8,
    "vf_learning_rate": 1e-3,
    "vf_iters": 10,
    "vf_batch_size": 128,
    "gae_lambda": 0.95,
    "gamma": 0.99,
    "norm_adv": True,
    "hidden_size": 64,
    "n_layers": 2,
    "activation": "tanh",
}

_PRESETS = [
    Preset(
        "ppo-cartpole-zoo",
        "ppo",
        "CartPole-v1",
        {
            **_SB3_PPO,
            "total_steps": 100_000,
            "num_envs": 8,
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "lr_schedule": "linear",
            "clip_coef": 0.2,
            "clip_schedule": "linear",
        },
        "rl-zoo tuned PPO for CartPole: 8 envs x 32 steps, one 256 minibatch, 20 epochs, "
        "lr 1e-3 and clip 0.2 both annealed linearly. Solves in about 30k steps.",
        ZOO.format("ppo"),
    ),
    Preset(
        "ppo-acrobot-zoo",
        "ppo",
        "Acrobot-v1",
        {
            **_SB3_PPO,
            "total_steps": 1_000_000,
            "num_envs": 16,
            "n_steps": 256,
            "gae_lambda": 0.94,
            "gamma": 0.99,
            "n_epochs": 4,
            "ent_coef": 0.0,
            "normalize_obs": True,
            "normalize_reward": True,
        },
        "rl-zoo PPO for Acrobot: 16 envs x 256 steps, 4 epochs, observation and reward "
        "normalisation (the zoo's normalize: true).",
        ZOO.format("ppo"),
    ),
    Preset(
        "ppo-pendulum-zoo",
        "ppo",
        "Pendulum-v1",
        {
            **_SB3_PPO,
            "total_steps": 200_000,
            "num_envs": 4,
            "n_steps": 1024,
            "gae_lambda": 0.95,
            "gamma": 0.9,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_coef": 0.2,
            "normalize_obs": False,
            "normalize_reward": True,
        },
        "rl-zoo tuned PPO for Pendulum (4 envs x 1024 steps, gamma 0.9, lr 1e-3, 10 epochs). "
        "The zoo uses gSDE exploration, which pglab lacks; a plain Gaussian policy with reward "
        "normalisation and 200k steps stands in for it.",
        ZOO.format("ppo"),
    ),
    Preset(
        "a2c-cartpole-zoo",
        "a2c",
        "CartPole-v1",
        {**_SB3_A2C, "total_steps": 500_000, "num_envs": 8, "ent_coef": 0.0},
        "rl-zoo A2C for CartPole: 8 envs x 5 steps, RMSprop lr 7e-4, Monte-Carlo-like GAE "
        "(lambda 1), no entropy bonus.",
        ZOO.format("a2c"),
    ),
    Preset(
        "a2c-acrobot-zoo",
        "a2c",
        "Acrobot-v1",
        {**_SB3_A2C, "total_steps": 500_000, "num_envs": 16, "ent_coef": 0.0},
        "rl-zoo A2C for Acrobot: 16 envs x 5 steps (the zoo also normalises observations and "
        "rewards, which pglab's A2C does not).",
        ZOO.format("a2c"),
    ),
    Preset(
        "trpo-cartpole-zoo",
        "trpo",
        "CartPole-v1",
        {
            **_SB3_TRPO,
            "total_steps": 100_000,
            "num_envs": 2,
            "n_steps": 512,
            "vf_batch_size": 512,
            "cg_damping": 1e-3,
            "gae_lambda": 0.98,
            "gamma": 0.99,
            "vf_learning_rate": 1e-3,
            "vf_iters": 20,
        },
        "rl-zoo (sb3-contrib) tuned TRPO for CartPole: 2 envs x 512 steps, max KL 0.01, "
        "CG damping 1e-3, 20 critic epochs per update.",
        ZOO.format("trpo"),
    ),
    Preset(
        "trpo-acrobot-zoo",
        "trpo",
        "Acrobot-v1",
        {**_SB3_TRPO, "total_steps": 100_000, "num_envs": 2, "n_steps": 1024},
        "rl-zoo (sb3-contrib) tuned TRPO for Acrobot: 2 envs x 1024 steps (the zoo also "
        "normalises observations and rewards, which pglab's TRPO does not).",
        ZOO.format("trpo"),
    ),
    Preset(
        "reinforce-simplest-pg",
        "reinforce",
        "CartPole-v1",
        {
            "total_steps": 250_000,
            "n_layers": 1,
            "hidden_size": 32,
            "activation": "tanh",
            "learning_rate": 1e-2,
            "batch_mode": "steps",
            "batch_size": 5000,
            "gamma": 1.0,
            "psi": "rtg",
            "baseline": "none",
            "norm_adv": False,
        },
        "Spinning Up's 'simplest policy gradient' with reward-to-go: one hidden layer of 32, "
        "Adam lr 1e-2, batches of at least 5000 steps finished at episode end, 50 batches.",
        "https://spinningup.openai.com/en/latest/spinningup/rl_intro3.html",
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def user_presets(path: str | os.PathLike[str] | None = None) -> list[Preset]:
    """User presets saved in the run store (e.g. a sweep trial promoted on the Sweeps page).

    Read through a read-only connection, so listing them never creates or changes a store;
    none when the store (default: :func:`pglab.store.default_store_path`) does not exist yet.
    """
    from pglab.store import default_store_path

    db = Path(path) if path is not None else default_store_path()
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as c:
            rows = c.execute(
                "SELECT name, algo, env_id, settings, description, source FROM presets "
                "ORDER BY created_at, name"
            ).fetchall()
    except sqlite3.Error:  # a store from before user presets: it has none
        return []
    return [
        Preset(name, algo, env_id, json.loads(settings), description or "A user preset.", source)
        for name, algo, env_id, settings, description, source in rows
    ]


def presets_for(algo: str, env_id: str | None = None) -> list[Preset]:
    """Presets of ``algo`` (for ``env_id`` only, when given): the library's in declaration
    order, then the user's (:func:`user_presets`)."""
    return [
        p
        for p in [*_PRESETS, *user_presets()]
        if p.algo == algo and (env_id is None or p.env_id == env_id)
    ]


def get_preset(name: str) -> Preset:
    """A library preset, else a user preset of that name."""
    if name in PRESETS:
        return PRESETS[name]
    for preset in user_presets():
        if preset.name == name:
            return preset
    raise ValueError(f"preset: {name!r} is not a preset (one of {', '.join(PRESETS)})")


# The ladder's critic fit for REINFORCE's value baseline (see ladder()).
LADDER_CRITIC_FIT = {"vf_iters": 20, "vf_learning_rate": 1e-2}


def ladder(env_id: str, total_steps: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The variance-reduction ladder on one env and budget: (label, algo, settings) per rung.

    Each rung adds one idea to the previous one: total return -> reward-to-go (causality)
    -> constant baseline -> learned value baseline -> A2C's bootstrapped GAE critic -> PPO's
    several clipped epochs per batch. Everything else stays at the algorithm's defaults so
    the rungs differ only in what the label says, with one exception: the value baseline is
    fitted with :data:`LADDER_CRITIC_FIT` (20 full-batch Adam steps at 1e-2) instead of
    REINFORCE's default, Spinning Up's 80 steps at 1e-3. On CartPole it is as good a baseline
    (8 seeds, 100k steps: median early gradient variance 46.9 vs 60.5, mean explained
    variance 0.35 vs 0.32, final return 441 vs 452) at a quarter of the arithmetic, which
    was 86% of that rung's time (README, issue 15).
    """
    common = {"env_id": env_id, "total_steps": total_steps}
    return [
        ("REINFORCE, total return", "reinforce", {**common, "psi": "total", "baseline": "none"}),
        ("REINFORCE, reward-to-go", "reinforce", {**common, "psi": "rtg", "baseline": "none"}),
        ("+ constant baseline", "reinforce", {**common, "psi": "rtg", "baseline": "constant"}),
        (
            "+ value baseline",
            "reinforce",
            {**common, "psi": "rtg", "baseline": "value", **LADDER_CRITIC_FIT},
        ),
        ("A2C with GAE", "a2c", {**common, "gae_lambda": 0.95}),
        ("PPO", "ppo", dict(common)),
    ]
