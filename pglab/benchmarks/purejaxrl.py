"""PPO against PureJaxRL, end to end, core for core: the fastest CPU peer there is for
CartPole (the environment and the whole training loop compiled by XLA as one program).

    python -m pglab.benchmarks.training ppo_vs_purejaxrl     # this section alone
    pip install --no-deps -r requirements-peer.txt           # the peer (optional)

:func:`make_train` is PureJaxRL's ``purejaxrl/ppo.py`` (Chris Lu;
https://github.com/luchris429/purejaxrl, Apache License 2.0), followed closely, function for
function and name for name; modified as listed here, so that no more packages than needed
are pulled in and the second config can be expressed:

- ``distrax.Categorical`` is replaced by its three formulas (``jax.random.categorical``,
  ``log_softmax``, ``-sum p log p``): the same distribution, without distrax and its
  tensorflow-probability dependency.
- PureJaxRL's ``LogWrapper`` is inlined (the same bookkeeping of finished episodes);
  ``FlattenObservationWrapper`` is dropped (gymnax CartPole's observation is already flat).
  gymnax 1.0's step returns ``terminated`` and ``truncated``; the wrapper ORs them into the
  one ``done`` of the gymnax 0.0.x that PureJaxRL was written against.
- ``ANNEAL_CLIP`` (off in PureJaxRL's config) anneals the clip range like the learning rate,
  for the rl-zoo config; the ``DEBUG`` printing callback is left out.

Two configs, each run by both libraries with the same seeds, alternating run by run:

- ``purejaxrl``: PureJaxRL's own CartPole config (4 envs x 128 steps, 4 epochs x 4
  minibatches, lr 2.5e-4 annealed, clipped value loss, ent 0.01, 500k steps).
- ``zoo``: rl-zoo's tuned CartPole PPO, pglab's ``ppo-cartpole-zoo`` preset (8 envs x 32
  steps, one minibatch of 256, 20 epochs, lr 1e-3 and clip 0.2 annealed, gamma 0.98, lambda
  0.8, no entropy bonus), 100k steps.

The pglab side uses the same settings in pglab's conventions: PureJaxRL's value loss is
``0.5 x mean squared error`` where pglab's (SB3's) is the mean squared error, so PureJaxRL's
``VF_COEF`` c is pglab's ``vf_coef`` c / 2; PureJaxRL normalises advantages per minibatch
(``norm_adv_scope="minibatch"``) and always clips the value loss. Remaining differences in
the algorithm, none of which makes pglab's work lighter: gymnax's ``done`` ends the episode at the 500-step
time limit without bootstrapping (pglab bootstraps truncations with V), and pglab's rollout
keeps its default per-episode gradient diagnostic on (extra work on pglab's side only).

Timing, core for core: every run's process is bound to one CPU (the same one for both
libraries, :func:`one_core`), so XLA's otherwise parallel compile gets one core too, and one
compute thread each (torch ``set_num_threads(1)``; JAX with ``JAX_PLATFORMS=cpu`` and
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``); every run
reports its CPU seconds and CPU over wall time (below 1.0: the core was shared). Each run
is a fresh process, the two libraries alternating run by run, and its clock starts once the
third-party packages are imported (torch, numba, gymnasium; jax, flax, optax, gymnax, and
JAX's CPU backend started): process start is excluded, any compile or warm-up included.
PureJaxRL's end to end is ``make_train`` + trace + XLA compile + the run (``compile_s``
separately; its SPS excludes compile). pglab's is importing ``pglab.algos`` +
``make_trainer`` + every update, the first of which loads pglab's compiled kernels from
numba's on-disk cache (what ``pglab.algos.warm_up()`` does up front elsewhere); its SPS is
over the updates.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Log = Callable[[str], None]
PEER_MODULES = ("jax", "flax", "optax", "gymnax")
INSTALL_HINT = "pip install --no-deps -r requirements-peer.txt"
JAX_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
SEEDS = (0, 1, 2)

# PureJaxRL's CartPole config, as in ppo.py's __main__ (DEBUG off).
PUREJAXRL_CONFIG: dict[str, Any] = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
    "ANNEAL_CLIP": False,
}
# rl-zoo's CartPole PPO (pglab's ppo-cartpole-zoo) in PureJaxRL's terms.
ZOO_CONFIG: dict[str, Any] = {
    **PUREJAXRL_CONFIG,
    "LR": 1e-3,
    "NUM_ENVS": 8,
    "NUM_STEPS": 32,
    "TOTAL_TIMESTEPS": 1e5,
    "UPDATE_EPOCHS": 20,
    "NUM_MINIBATCHES": 1,
    "GAMMA": 0.98,
    "GAE_LAMBDA": 0.8,
    "ENT_COEF": 0.0,
    "VF_COEF": 1.0,  # SB3's vf_coef 0.5 on the full MSE = 1.0 on PureJaxRL's 0.5 x MSE
    "ANNEAL_CLIP": True,
}


def pglab_settings(config: dict[str, Any]) -> dict[str, Any]:
    """pglab's PPOConfig settings for a PureJaxRL config (see the module docstring)."""
    batch = config["NUM_ENVS"] * config["NUM_STEPS"]
    return {
        "env_id": config["ENV_NAME"],
        "total_steps": int(config["TOTAL_TIMESTEPS"]),
        "num_envs": config["NUM_ENVS"],
        "n_steps": config["NUM_STEPS"],
        "batch_size": batch // config["NUM_MINIBATCHES"],
        "n_epochs": config["UPDATE_EPOCHS"],
        "learning_rate": config["LR"],
        "lr_schedule": "linear" if config["ANNEAL_LR"] else "constant",
        "clip_coef": config["CLIP_EPS"],
        "clip_schedule": "linear" if config["ANNEAL_CLIP"] else "constant",
        "gamma": config["GAMMA"],
        "gae_lambda": config["GAE_LAMBDA"],
        "ent_coef": config["ENT_COEF"],
        "vf_coef": config["VF_COEF"] / 2,
        "max_grad_norm": config["MAX_GRAD_NORM"],
        "clip_vloss": True,  # PureJaxRL always clips the value loss (with CLIP_EPS)
        "norm_adv": True,
        "norm_adv_scope": "minibatch",
        "hidden_size": 64,
        "n_layers": 2,
        "activation": config["ACTIVATION"],
    }


def pglab_zoo_settings() -> dict[str, Any]:
    """The ``ppo-cartpole-zoo`` preset itself (no value clipping, as rl-zoo has it)."""
    from pglab.presets import get_preset

    return get_preset("ppo-cartpole-zoo").to_settings()


# -- the peer's availability -----------------------------------------------------------------
def configure_jax() -> None:
    """Put JAX on the CPU with one compute thread; only takes effect before jax is imported
    (the runs' fresh processes call it first thing)."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    if JAX_ONE_THREAD not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {JAX_ONE_THREAD}".strip()


def missing(modules: tuple[str, ...] = PEER_MODULES) -> str | None:
    """Why the peer cannot run here (the first of ``modules`` not installed), or None. Found
    is not imported: a broken install is reported by the first run's process instead."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed (the peer is optional: {INSTALL_HINT})"
    return None


# -- PureJaxRL's PPO (purejaxrl/ppo.py, Apache-2.0) --------------------------------------------
def make_train(config: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    """PureJaxRL's ``make_train``: returns ``train(rng)``, the whole run as one jittable
    function (see the module docstring for the few changes)."""
    from typing import NamedTuple

    import flax.linen as nn
    import gymnax
    import jax
    import jax.numpy as jnp
    import optax
    from flax import struct
    from flax.linen.initializers import constant, orthogonal
    from flax.training.train_state import TrainState

    class Categorical:
        """distrax.Categorical(logits) reduced to what PPO uses."""

        def __init__(self, logits):
            self.logits = jax.nn.log_softmax(logits)

        def sample(self, seed):
            return jax.random.categorical(seed, self.logits)

        def log_prob(self, action):
            return jnp.take_along_axis(self.logits, action[..., None], axis=-1)[..., 0]

        def entropy(self):
            return -jnp.sum(jnp.exp(self.logits) * self.logits, axis=-1)

    class ActorCritic(nn.Module):
        action_dim: int
        activation: str = "tanh"

        @nn.compact
        def __call__(self, x):
            activation = nn.relu if self.activation == "relu" else nn.tanh
            actor_mean = nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(
                x
            )
            actor_mean = activation(actor_mean)
            actor_mean = nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(
                actor_mean
            )
            actor_mean = activation(actor_mean)
            actor_mean = nn.Dense(
                self.action_dim, kernel_init=orthogonal(0.01), bias_init=constant(0.0)
            )(actor_mean)
            pi = Categorical(logits=actor_mean)

            critic = nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x)
            critic = activation(critic)
            critic = nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(
                critic
            )
            critic = activation(critic)
            critic = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(critic)
            return pi, jnp.squeeze(critic, axis=-1)

    class Transition(NamedTuple):
        done: Any
        action: Any
        value: Any
        reward: Any
        log_prob: Any
        obs: Any
        info: Any

    @struct.dataclass
    class LogEnvState:
        env_state: Any
        episode_returns: float
        episode_lengths: int
        returned_episode_returns: float
        returned_episode_lengths: int
        timestep: int

    config = dict(config)
    config["NUM_UPDATES"] = int(
        config["TOTAL_TIMESTEPS"] // config["NUM_STEPS"] // config["NUM_ENVS"]
    )
    config["MINIBATCH_SIZE"] = config["NUM_ENVS"] * config["NUM_STEPS"] // config["NUM_MINIBATCHES"]
    env, env_params = gymnax.make(config["ENV_NAME"])

    def env_reset(key, params):  # LogWrapper.reset
        obs, env_state = env.reset(key, params)
        return obs, LogEnvState(env_state, 0.0, 0, 0.0, 0, 0)

    def env_step(key, state, action, params):  # LogWrapper.step
        obs, env_state, reward, terminated, truncated, info = env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)  # the gymnax<1.0 step PureJaxRL used
        info = {"discount": 1.0 - terminated}  # gymnax<1.0's info: no final observations
        new_episode_return = state.episode_returns + reward
        new_episode_length = state.episode_lengths + 1
        state = LogEnvState(
            env_state=env_state,
            episode_returns=new_episode_return * (1 - done),
            episode_lengths=new_episode_length * (1 - done),
            returned_episode_returns=state.returned_episode_returns * (1 - done)
            + new_episode_return * done,
            returned_episode_lengths=state.returned_episode_lengths * (1 - done)
            + new_episode_length * done,
            timestep=state.timestep + 1,
        )
        info["returned_episode_returns"] = state.returned_episode_returns
        info["returned_episode_lengths"] = state.returned_episode_lengths
        info["timestep"] = state.timestep
        info["returned_episode"] = done
        return obs, state, reward, done, info

    def linear_schedule(count):
        frac = (
            1.0
            - (count // (config["NUM_MINIBATCHES"] * config["UPDATE_EPOCHS"]))
            / config["NUM_UPDATES"]
        )
        return config["LR"] * frac

    def train(rng):
        # INIT NETWORK
        network = ActorCritic(env.action_space(env_params).n, activation=config["ACTIVATION"])
        rng, _rng = jax.random.split(rng)
        init_x = jnp.zeros(env.observation_space(env_params).shape)
        network_params = network.init(_rng, init_x)
        if config["ANNEAL_LR"]:
            tx = optax.chain(
                optax.clip_by_global_norm(config["MAX_GRAD_NORM"]),
                optax.adam(learning_rate=linear_schedule, eps=1e-5),
            )
        else:
            tx = optax.chain(
                optax.clip_by_global_norm(config["MAX_GRAD_NORM"]),
                optax.adam(config["LR"], eps=1e-5),
            )
        train_state = TrainState.create(apply_fn=network.apply, params=network_params, tx=tx)

        # INIT ENV
        rng, _rng = jax.random.split(rng)
        reset_rng = jax.random.split(_rng, config["NUM_ENVS"])
        obsv, env_state = jax.vmap(env_reset, in_axes=(0, None))(reset_rng, env_params)

        # TRAIN LOOP
        def _update_step(runner_state, unused):
            # COLLECT TRAJECTORIES
            def _env_step(runner_state, unused):
                train_state, env_state, last_obs, rng = runner_state

                # SELECT ACTION
                rng, _rng = jax.random.split(rng)
                pi, value = network.apply(train_state.params, last_obs)
                action = pi.sample(seed=_rng)
                log_prob = pi.log_prob(action)

                # STEP ENV
                rng, _rng = jax.random.split(rng)
                rng_step = jax.random.split(_rng, config["NUM_ENVS"])
                obsv, env_state, reward, done, info = jax.vmap(env_step, in_axes=(0, 0, 0, None))(
                    rng_step, env_state, action, env_params
                )
                transition = Transition(done, action, value, reward, log_prob, last_obs, info)
                runner_state = (train_state, env_state, obsv, rng)
                return runner_state, transition

            runner_state, traj_batch = jax.lax.scan(
                _env_step, runner_state, None, config["NUM_STEPS"]
            )

            # CALCULATE ADVANTAGE
            train_state, env_state, last_obs, rng = runner_state
            _, last_val = network.apply(train_state.params, last_obs)

            def _calculate_gae(traj_batch, last_val):
                def _get_advantages(gae_and_next_value, transition):
                    gae, next_value = gae_and_next_value
                    done, value, reward = transition.done, transition.value, transition.reward
                    delta = reward + config["GAMMA"] * next_value * (1 - done) - value
                    gae = delta + config["GAMMA"] * config["GAE_LAMBDA"] * (1 - done) * gae
                    return (gae, value), gae

                _, advantages = jax.lax.scan(
                    _get_advantages,
                    (jnp.zeros_like(last_val), last_val),
                    traj_batch,
                    reverse=True,
                    unroll=16,
                )
                return advantages, advantages + traj_batch.value

            advantages, targets = _calculate_gae(traj_batch, last_val)

            # UPDATE NETWORK
            def _update_epoch(update_state, unused):
                def _update_minbatch(train_state, batch_info):
                    traj_batch, advantages, targets = batch_info
                    clip_eps = config["CLIP_EPS"]
                    if config["ANNEAL_CLIP"]:  # not in PureJaxRL: rl-zoo's linear clip range
                        clip_eps = clip_eps * (
                            1.0
                            - (train_state.step // (config["NUM_MINIBATCHES"] * config["UPDATE_EPOCHS"]))
                            / config["NUM_UPDATES"]
                        )  # fmt: skip

                    def _loss_fn(params, traj_batch, gae, targets):
                        # RERUN NETWORK
                        pi, value = network.apply(params, traj_batch.obs)
                        log_prob = pi.log_prob(traj_batch.action)

                        # CALCULATE VALUE LOSS
                        value_pred_clipped = traj_batch.value + (value - traj_batch.value).clip(
                            -clip_eps, clip_eps
                        )
                        value_losses = jnp.square(value - targets)
                        value_losses_clipped = jnp.square(value_pred_clipped - targets)
                        value_loss = 0.5 * jnp.maximum(value_losses, value_losses_clipped).mean()

                        # CALCULATE ACTOR LOSS
                        ratio = jnp.exp(log_prob - traj_batch.log_prob)
                        gae = (gae - gae.mean()) / (gae.std() + 1e-8)
                        loss_actor1 = ratio * gae
                        loss_actor2 = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * gae
                        loss_actor = -jnp.minimum(loss_actor1, loss_actor2)
                        loss_actor = loss_actor.mean()
                        entropy = pi.entropy().mean()

                        total_loss = (
                            loss_actor
                            + config["VF_COEF"] * value_loss
                            - config["ENT_COEF"] * entropy
                        )
                        return total_loss, (value_loss, loss_actor, entropy)

                    grad_fn = jax.value_and_grad(_loss_fn, has_aux=True)
                    total_loss, grads = grad_fn(train_state.params, traj_batch, advantages, targets)
                    train_state = train_state.apply_gradients(grads=grads)
                    return train_state, total_loss

                train_state, traj_batch, advantages, targets, rng = update_state
                rng, _rng = jax.random.split(rng)
                # Batching and Shuffling
                batch_size = config["MINIBATCH_SIZE"] * config["NUM_MINIBATCHES"]
                assert batch_size == config["NUM_STEPS"] * config["NUM_ENVS"], (
                    "batch size must be equal to number of steps * number of envs"
                )
                permutation = jax.random.permutation(_rng, batch_size)
                batch = (traj_batch, advantages, targets)
                batch = jax.tree_util.tree_map(
                    lambda x: x.reshape((batch_size, *x.shape[2:])), batch
                )
                shuffled_batch = jax.tree_util.tree_map(
                    lambda x: jnp.take(x, permutation, axis=0), batch
                )
                # Mini-batch Updates
                minibatches = jax.tree_util.tree_map(
                    lambda x: jnp.reshape(x, [config["NUM_MINIBATCHES"], -1, *x.shape[1:]]),
                    shuffled_batch,
                )
                train_state, total_loss = jax.lax.scan(_update_minbatch, train_state, minibatches)
                update_state = (train_state, traj_batch, advantages, targets, rng)
                return update_state, total_loss

            # Updating Training State and Metrics:
            update_state = (train_state, traj_batch, advantages, targets, rng)
            update_state, _loss_info = jax.lax.scan(
                _update_epoch, update_state, None, config["UPDATE_EPOCHS"]
            )
            train_state = update_state[0]
            metric = traj_batch.info
            rng = update_state[-1]
            runner_state = (train_state, env_state, last_obs, rng)
            return runner_state, metric

        rng, _rng = jax.random.split(rng)
        runner_state = (train_state, env_state, obsv, _rng)
        runner_state, metric = jax.lax.scan(_update_step, runner_state, None, config["NUM_UPDATES"])
        return {"runner_state": runner_state, "metrics": metric}

    return train


# -- timing: one fresh process per run ---------------------------------------------------------
def _last_episodes_mean(returns: np.ndarray, finished: np.ndarray, n: int = 20) -> float | None:
    """Mean return of the last ``n`` episodes to finish; arrays ``[updates, steps, envs]``
    (time-major, so C order is time order; ties within a step go in env order)."""
    ended = returns.reshape(-1)[finished.reshape(-1).astype(bool)]
    return float(ended[-n:].mean()) if ended.size else None


def time_purejaxrl(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """One PureJaxRL run, as its script does it: ``make_train``, ``jax.jit``, call. Timed in
    parts: trace + XLA compile (ahead of time, ``lower().compile()``), then the run."""
    import jax

    t0, c0 = time.perf_counter(), time.process_time()
    train = make_train(config)
    rng = jax.random.PRNGKey(seed)
    compiled = jax.jit(train).lower(rng).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(rng))
    t2, c2 = time.perf_counter(), time.process_time()
    info = out["metrics"]
    batch = config["NUM_STEPS"] * config["NUM_ENVS"]
    steps = int(config["TOTAL_TIMESTEPS"] // batch) * batch
    return {
        "env_steps": steps,
        "wall_s": round(t2 - t0, 2),  # end to end, compile included
        "compile_s": round(t1 - t0, 2),
        "run_s": round(t2 - t1, 2),
        "sps": round(steps / (t2 - t1), 1),  # excluding compile
        "cpu_s": round(c2 - c0, 2),
        "cpu_per_wall": round((c2 - c0) / (t2 - t0), 2),
        "final_return": _last_episodes_mean(
            np.asarray(info["returned_episode_returns"]), np.asarray(info["returned_episode"])
        ),
    }


def time_pglab(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """One pglab PPO run: importing pglab's algorithms (the first update also loads the
    compiled kernels from numba's on-disk cache), ``make_trainer``, every update."""
    t0, c0 = time.perf_counter(), time.process_time()
    from pglab.algos import make_trainer

    tr = make_trainer("ppo", settings, seed=seed)
    t1 = time.perf_counter()
    tr.update()  # loads the compiled kernels from numba's cache
    first = time.perf_counter() - t1
    while not tr.done:
        tr.update()
    t2, c2 = time.perf_counter(), time.process_time()
    out = {
        "env_steps": tr.env_steps,
        "wall_s": round(t2 - t0, 2),
        "setup_s": round(t1 - t0, 2),
        "first_update_s": round(first, 2),
        "sps": round(tr.env_steps / (t2 - t1), 1),  # the updates (first one's cache load in)
        "cpu_s": round(c2 - c0, 2),
        "cpu_per_wall": round((c2 - c0) / (t2 - t0), 2),
        "final_return": tr.final_return(),
    }
    tr.close()
    return out


def one_core() -> int | None:
    """Bind this process (and every thread it starts later) to one CPU, the lowest it may
    use, so XLA's parallel compile and any thread pool share one core; None where the OS
    has no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _worker(lib: str, config_name: str, seed: int) -> dict[str, Any]:
    """Runs in a fresh process: binds it to one core, imports the library's third-party
    packages (process start, not timed), then times one run from there on."""
    jax_config = CONFIGS[config_name]
    cpu = one_core()
    return {**_run_in_worker(lib, config_name, jax_config, seed), "cpu": cpu}


def _run_in_worker(
    lib: str, config_name: str, jax_config: dict[str, Any], seed: int
) -> dict[str, Any]:
    if lib == "pglab":
        import gymnasium  # noqa: F401
        import numba  # noqa: F401
        import torch

        torch.set_num_threads(1)
        settings = pglab_zoo_settings() if config_name == "zoo" else pglab_settings(jax_config)
        return time_pglab(settings, seed)
    configure_jax()
    try:
        import flax.linen
        import flax.training.train_state  # noqa: F401
        import gymnax  # noqa: F401
        import jax
        import jax.numpy as jnp
        import optax  # noqa: F401
    except Exception as exc:  # a broken install: one line saying which and why
        return {"error": f"the peer does not import: {type(exc).__name__}: {exc}"}
    jnp.zeros(()).block_until_ready()  # JAX's CPU backend starts: process start, not timed
    return {**time_purejaxrl(jax_config, seed), "jax": jax.__version__}


def _spawn(lib: str, config_name: str, seed: int) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "pglab.benchmarks.purejaxrl", lib, config_name, str(seed)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{lib} run failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


CONFIGS = {"purejaxrl": PUREJAXRL_CONFIG, "zoo": ZOO_CONFIG}


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.fmean(r[key] for r in rows), 2)


def versus(quick: bool, log: Log, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    """Both configs, both libraries, alternating run by run, each run in a fresh process;
    one line per run, then the means and ratios of each config."""
    reason = missing()
    if reason is not None:
        log(f"  skipped: {reason}")
        return {"skipped": reason}
    seeds = seeds[:1] if quick else seeds
    out: dict[str, Any] = {"seeds": list(seeds), "xla_flags": JAX_ONE_THREAD}
    for name in CONFIGS:
        ours, theirs = [], []
        for seed in seeds:
            p = _spawn("purejaxrl", name, seed)
            if "error" in p:
                log(f"  skipped: {p['error']}")
                return {"skipped": p["error"]}
            out["jax"], out["cpu"] = p.pop("jax"), p.pop("cpu")
            theirs.append(p)
            log(
                f"  {name:9s} seed {seed} PureJaxRL {p['wall_s']:6.2f} s end to end "
                f"({p['compile_s']:.2f} s compile), {p['sps']:7.0f} sps excl. compile, "
                f"final return {p['final_return']:.1f}, cpu/wall {p['cpu_per_wall']:.2f}"
            )
            r = _spawn("pglab", name, seed)
            r.pop("cpu")
            ours.append(r)
            log(
                f"  {name:9s} seed {seed} pglab     {r['wall_s']:6.2f} s end to end "
                f"({r['setup_s']:.2f} s set-up, first update {r['first_update_s']:.2f} s), "
                f"{r['sps']:7.0f} sps, "
                f"final return {r['final_return']:.1f}, cpu/wall {r['cpu_per_wall']:.2f}"
            )
        res: dict[str, Any] = {
            "total_steps": int(CONFIGS[name]["TOTAL_TIMESTEPS"]),
            "purejaxrl": theirs,
            "pglab": ours,
        }
        for lib, rows in (("purejaxrl", theirs), ("pglab", ours)):
            for key in ("wall_s", "cpu_s", "sps", "final_return"):
                res[f"{lib}_{key}"] = _mean(rows, key)
        res["purejaxrl_compile_s"] = _mean(theirs, "compile_s")
        # wall_ratio > 1: pglab finishes sooner end to end; sps_ratio > 1: pglab steps faster
        res["wall_ratio"] = round(res["purejaxrl_wall_s"] / res["pglab_wall_s"], 2)
        res["sps_ratio"] = round(res["pglab_sps"] / res["purejaxrl_sps"], 2)
        # the same in CPU seconds: steadier than wall time when other processes share the core
        res["cpu_ratio"] = round(res["purejaxrl_cpu_s"] / res["pglab_cpu_s"], 2)
        log(
            f"  {name}: end to end PureJaxRL {res['purejaxrl_wall_s']:.2f} s "
            f"({res['purejaxrl_compile_s']:.2f} s compile) vs pglab {res['pglab_wall_s']:.2f} s: "
            f"pglab {res['wall_ratio']:.2f}x as fast (target >= 1; {res['cpu_ratio']:.2f}x in "
            f"CPU seconds); SPS pglab "
            f"{res['pglab_sps']:.0f} vs PureJaxRL {res['purejaxrl_sps']:.0f} excl. compile "
            f"({res['sps_ratio']:.2f}x)"
        )
        out[name] = res
    return out


if __name__ == "__main__":  # a worker: python -m pglab.benchmarks.purejaxrl LIB CONFIG SEED
    print(json.dumps(_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)
