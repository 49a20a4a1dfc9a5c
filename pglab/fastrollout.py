"""The compiled CartPole rollout: T steps of N CartPole envs and the policy in one numba call.

Why: on a 2-core CPU a CartPole rollout step costs ~60 us of Python (gymnasium's vector
step and its action-space assert, the numpy actor's dozen numpy calls, the bookkeeping)
against well under a microsecond of arithmetic per env. Here the categorical MLP's forward
pass, its Gumbel-max sampling and the CartPole physics run as one loop over steps and envs,
writing the rollout buffers in place; Python is left one call per chunk of steps.

What stays exactly the same as the Python path (:meth:`pglab.algos.base.Trainer.collect`
over :class:`pglab.envs.SameStepVectorEnv`):

- the physics: gymnasium 1.x's ``CartPoleVectorEnv.step`` equations in float64, in the same
  order (no ``fastmath`` in :func:`cartpole_policy_rollout`), the same thresholds read from
  the env, its 500-step truncation, reward 1.0, observations cast to float32;
- pglab's SAME_STEP auto-reset: env i's reset states come from
  ``SameStepVectorEnv.reset_states[i]``, drawn from env i's own generator, the block the
  Python step reads too, so both paths consume one stream and the env object stays the
  state of record (rendering, ``act``/``evaluate``, a Python step in between all see it);
- the sampling noise: the trainer's uniforms, drawn in the same blocks as the Python path.

The policy's arithmetic is float32 as the numpy actor's, but summed in another order (BLAS
vs a loop) and with a rational tanh (:func:`_tanh_inplace`, within 3e-7 of the true one):
log-probabilities agree within 1e-5, and actions agree unless two Gumbel keys tie that
closely, so over a training run an occasional flip can make the trajectories part (same
seed, a different but equally distributed run). ``tests/test_fastrollout.py`` checks the
policy to that tolerance and the env bit for bit.

Used automatically (``rollout="auto"``, every algorithm's config) where it applies:
CartPole-v1 on CPU, the categorical MLP policy, no observation normalisation; see
:func:`applies`. ``rollout="python"`` keeps the Python loop, the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numba import njit

from pglab.envs import SameStepVectorEnv, vectorization_mode
from pglab.policies import CategoricalMLP, NumpyActor
from pglab.rollout import Batch, Episode

if TYPE_CHECKING:
    from pglab.algos.base import Trainer

# At most this many env steps per compiled call, so the driver's Stop/Pause (Trainer.poll,
# called between calls) lands within a few milliseconds even at 64 envs x 1024 steps.
CHUNK_ENV_STEPS = 2048

_TINY = float(np.finfo(np.float32).tiny)

# The policy's float32 MLP: sums may be reordered (vectorised), as in pglab.kernels.
_policy_kernel = njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
# The physics: strict IEEE float64, every operation in gymnasium's order (no FMA, no
# reordering), so the states are bit for bit gymnasium's.
_physics_kernel = njit(cache=True, nogil=True, error_model="numpy")


def applies(config, device: torch.device) -> bool:
    """Whether a trainer with ``config`` on ``device`` rolls out through the compiled path:
    ``rollout="auto"``, gymnasium's own CartPole (the numpy vector env's entry point, no env
    kwargs), CPU, no observation normalisation. The policy is then always the categorical
    MLP (Discrete actions, Box observations), which :func:`policy_supported` confirms."""
    return (
        getattr(config, "rollout", "auto") == "auto"
        and device.type == "cpu"
        and not getattr(config, "normalize_obs", False)
        and vectorization_mode(config.env_id, 1 << 20) == "vector_entry_point"
    )


def policy_supported(policy: torch.nn.Module) -> bool:
    return (
        type(policy) is CategoricalMLP
        and policy.encode.n is None
        and NumpyActor.supports(policy)
        and policy.net[-1].out_features == 2
    )


# tanh as a rational function (Eigen's float32 ``ptanh``), which compiles to SIMD: the scalar
# libm tanh was most of the rollout's time. |error| <= 3e-7, ~5 float32 ulp (numpy's: ~1).
_TANH_CLAMP = np.float32(7.90531110763549805)
_TANH_SMALL = np.float32(0.0004)
_TA = tuple(
    np.float32(c)
    for c in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
)
_TB = tuple(
    np.float32(c)
    for c in (
        4.89352518554385e-03,
        2.26843463243900e-03,
        1.18534705686654e-04,
        1.19825839466702e-06,
    )
)


@_policy_kernel
def _tanh_inplace(v, n):  # pragma: no cover - compiled
    """``v[:n] = tanh(v[:n])`` (float32), tanh(x) = x p(x^2) / q(x^2) on x clamped to +-7.9."""
    a1, a3, a5, a7, a9, a11, a13 = _TA
    b0, b2, b4, b6 = _TB
    for k in range(n):
        y = v[k]
        x = min(max(y, -_TANH_CLAMP), _TANH_CLAMP)
        x2 = x * x
        p = x2 * (x2 * (x2 * (x2 * (x2 * (x2 * a13 + a11) + a9) + a7) + a5) + a3) + a1
        q = x2 * (x2 * (x2 * b6 + b4) + b2) + b0
        v[k] = y if abs(y) < _TANH_SMALL else x * p / q


@_policy_kernel
def _policy_step(
    x, wts, w_out, biases, relu, u, h, nxt, actions, log_probs
):  # pragma: no cover - compiled
    """The categorical MLP on one step's observations ``x`` ``[N, in]`` and Gumbel-max sampling:

        h_0 = x,  h_k = act(h_{k-1} W_k^T + b_k),  logits = h_{K-1} W_K^T + b_K,
        a = argmax_a (log pi(a|s) - log(-log U_a))   (as :func:`pglab.kernels.categorical_sample`)

    ``wts``: the K layers' weights transposed ``[in, out]`` (the hidden layers are computed
    as axpys over the output units, which vectorise), ``w_out`` the last layer's ``[A, in]``
    (dot products); ``biases`` ``[out]`` each; ``u`` ``[N, A]``; ``h``, ``nxt``: scratch
    ``[width]``. Writes ``actions`` ``[N]`` and ``log_probs`` ``[N]``."""
    N = x.shape[0]
    K = len(wts)
    A = w_out.shape[0]
    for i in range(N):
        n_in = x.shape[1]
        for j in range(n_in):
            h[j] = x[i, j]
        for k in range(K - 1):
            Wt = wts[k]
            b = biases[k]
            n_out = Wt.shape[1]
            for o in range(n_out):
                nxt[o] = b[o]
            for j in range(n_in):
                hj = h[j]
                for o in range(n_out):
                    nxt[o] += Wt[j, o] * hj
            if relu:
                for o in range(n_out):
                    h[o] = max(nxt[o], np.float32(0.0))
            else:
                _tanh_inplace(nxt, n_out)
                for o in range(n_out):
                    h[o] = nxt[o]
            n_in = n_out
        b = biases[K - 1]
        m = -math.inf
        for a in range(A):
            acc = np.float32(0.0)
            for j in range(n_in):
                acc += w_out[a, j] * h[j]
            nxt[a] = acc + b[a]
            m = max(m, nxt[a])
        total = 0.0
        for a in range(A):
            total += math.exp(nxt[a] - m)
        lse = m + math.log(total)
        best, best_a = -math.inf, 0
        for a in range(A):
            key = nxt[a] - lse - math.log(-math.log(max(u[i, a], _TINY)))
            if key > best:
                best, best_a = key, a
        actions[i] = best_a
        log_probs[i] = nxt[best_a] - lse


def kernel_params(
    actor: NumpyActor,
) -> tuple[tuple[np.ndarray, ...], np.ndarray, tuple[np.ndarray, ...], bool]:
    """The policy's parameters as :func:`cartpole_policy_rollout` takes them: the layers'
    weights transposed (copies, made per call: a few kB), the last layer's weight, the
    biases (views) and whether the activation is ReLU."""
    arrays = actor.weights()  # views of the live parameters, refreshed when they move
    weights, biases = arrays[0::2], arrays[1::2]
    wts = tuple(np.ascontiguousarray(w.T) for w in weights)
    return wts, weights[-1], tuple(biases), actor.relu


@_physics_kernel
def cartpole_policy_rollout(
    state,
    steps,
    consts,
    reset_states,
    reset_pos,
    wts,
    w_out,
    biases,
    relu,
    uniforms,
    obs,
    actions,
    log_probs,
    rewards,
    terminated,
    truncated,
    next_obs,
    ep_returns,
    ep_lengths,
    episode,
    episode_returns,
    until_done,
    active,
    count,
    share,
    steps_mode,
    min_episodes,
    n_episodes,
    recorded,
    t0,
    t1,
):  # pragma: no cover - compiled
    """Steps ``t0 .. t1-1`` of a rollout of N CartPole envs under the categorical MLP policy.

    Per step t and env i:  a ~ pi(.|o_t) with uniforms ``[t, i]``; then gymnasium's
    CartPole step (euler) of ``state[:, i]``::

        temp  = (F + m_p l thetadot^2 sin theta) / M,   F = +-force_mag
        theta'' = (g sin theta - cos theta temp) / (l (4/3 - m_p cos^2 theta / M))
        x''   = temp - m_p l theta'' cos theta / M
        x += tau x', x' += tau x'', theta += tau theta', theta' += tau theta''

    terminated = |x| > x_threshold or |theta| > theta_threshold, truncated = steps >= max;
    reward 1. An ended env's true last observation goes to ``next_obs[t, i]`` and it is
    reset in the same step from ``reset_states[i, reset_pos[i]]`` (SAME_STEP).

    ``state`` ``[4, N]`` float64 and ``steps`` ``[N]`` int32: the env's (written in place);
    ``consts``: gravity, masspole, total_mass, length, polemass_length, force_mag, tau,
    theta_threshold, x_threshold, max_episode_steps. ``obs[t0]`` must hold o_{t0}; writes
    ``obs[t0+1 .. t1]`` (``obs`` has T+1 rows: the last is the observation after the
    rollout), ``actions``, ``log_probs``, ``rewards`` (float32), ``terminated``,
    ``truncated``, ``next_obs`` ``[T, N(, 4)]``. ``ep_returns`` / ``ep_lengths`` ``[N]``: the
    episode tracker's running sums, updated; ``episode`` ``[T, N]`` gets the finished
    episode's length at its end step (0 elsewhere), ``episode_returns`` its return there.

    With ``until_done`` (REINFORCE's whole-episode batches,
    :meth:`pglab.algos.reinforce.Reinforce.collect_episodes`), an env's steps count towards
    its share only while ``active[i]``: ``recorded[t, i]`` says whether they did, ``count[i]``
    adds a step (``steps_mode``) or an ended episode, ``n_episodes[0]`` counts the batch's
    episodes, and the env turns inactive once ``count[i] >= share`` and the batch has
    ``min_episodes``; the rollout stops after the step where the last env turns inactive.

    Returns the step it stopped before: ``t1``, the step after the last env turned inactive,
    or earlier where an env has no reset state left at the start of a step (the caller
    refills and calls again from there).
    """
    gravity, masspole, total_mass, length, polemass_length = (
        consts[0],
        consts[1],
        consts[2],
        consts[3],
        consts[4],
    )
    force_mag, tau, theta_threshold, x_threshold = consts[5], consts[6], consts[7], consts[8]
    max_steps = int(consts[9])
    N = state.shape[1]
    K = reset_states.shape[1]
    width = max(obs.shape[2], w_out.shape[0])
    for k in range(len(wts)):
        width = max(width, wts[k].shape[1])
    h = np.empty(width, dtype=np.float32)
    nxt = np.empty(width, dtype=np.float32)
    for t in range(t0, t1):
        for i in range(N):
            if reset_pos[i] >= K:
                return t
        _policy_step(
            obs[t], wts, w_out, biases, relu, uniforms[t], h, nxt, actions[t], log_probs[t]
        )
        for i in range(N):
            a = actions[t, i]
            x = state[0, i]
            x_dot = state[1, i]
            theta = state[2, i]
            theta_dot = state[3, i]
            force = force_mag if a == 1 else -force_mag
            costheta = math.cos(theta)
            sintheta = math.sin(theta)
            temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass
            thetaacc = (gravity * sintheta - costheta * temp) / (
                length * (4.0 / 3.0 - masspole * (costheta * costheta) / total_mass)
            )
            xacc = temp - polemass_length * thetaacc * costheta / total_mass
            x = x + tau * x_dot
            x_dot = x_dot + tau * xacc
            theta = theta + tau * theta_dot
            theta_dot = theta_dot + tau * thetaacc
            term = (
                (x < -x_threshold)
                or (x > x_threshold)
                or (theta < -theta_threshold)
                or (theta > theta_threshold)
            )
            steps[i] += 1
            trunc = steps[i] >= max_steps
            rewards[t, i] = 1.0
            terminated[t, i] = term
            truncated[t, i] = trunc
            next_obs[t, i, 0] = np.float32(x)
            next_obs[t, i, 1] = np.float32(x_dot)
            next_obs[t, i, 2] = np.float32(theta)
            next_obs[t, i, 3] = np.float32(theta_dot)
            ep_returns[i] += 1.0
            ep_lengths[i] += 1
            episode[t, i] = 0
            if until_done:
                recorded[t, i] = active[i]
                if active[i]:
                    count[i] += steps_mode
                    if term or trunc:
                        n_episodes[0] += 1
                        count[i] += not steps_mode
                        if count[i] >= share and n_episodes[0] >= min_episodes:
                            active[i] = False
            if term or trunc:
                episode[t, i] = ep_lengths[i]
                episode_returns[t, i] = ep_returns[i]
                ep_returns[i] = 0.0
                ep_lengths[i] = 0
                p = reset_pos[i]
                x = reset_states[i, p, 0]
                x_dot = reset_states[i, p, 1]
                theta = reset_states[i, p, 2]
                theta_dot = reset_states[i, p, 3]
                reset_pos[i] = p + 1
                steps[i] = 0
            state[0, i] = x
            state[1, i] = x_dot
            state[2, i] = theta
            state[3, i] = theta_dot
            obs[t + 1, i, 0] = np.float32(x)
            obs[t + 1, i, 1] = np.float32(x_dot)
            obs[t + 1, i, 2] = np.float32(theta)
            obs[t + 1, i, 3] = np.float32(theta_dot)
        if until_done and not active.any():
            return t + 1
    return t1


class _Share:
    """REINFORCE's per-env batch accounting (see ``until_done`` in the kernel)."""

    def __init__(self, N: int, share: int, steps_mode: bool, min_episodes: int):
        self.active = np.ones(N, dtype=bool)
        self.count = np.zeros(N, dtype=np.int64)
        self.share = int(share)
        self.steps_mode = int(steps_mode)
        self.min_episodes = int(min_episodes)
        self.n_episodes = np.zeros(1, dtype=np.int64)


def cartpole_constants(inner: Any) -> np.ndarray:
    """The physics constants the kernel reads, from gymnasium's CartPole (vector) env, in
    the kernel's order (float64)."""
    return np.array(
        [
            inner.gravity,
            inner.masspole,
            inner.total_mass,
            inner.length,
            inner.polemass_length,
            inner.force_mag,
            inner.tau,
            inner.theta_threshold_radians,
            inner.x_threshold,
            inner.max_episode_steps,
        ],
        dtype=np.float64,
    )


class CompiledCartPole:
    """Drives :func:`cartpole_policy_rollout` for a trainer: the env's state, its reset
    stream, the episode tracker and the trainer's bookkeeping (``env_steps``, finished
    episodes, ``poll``) are kept as the Python path keeps them."""

    def __init__(self, trainer: Trainer):
        envs = trainer.envs
        assert isinstance(envs, SameStepVectorEnv), type(envs)
        assert trainer._numpy_actor is not None and policy_supported(trainer.policy)
        self.trainer = trainer
        self.envs = envs
        inner = envs.unwrapped
        self.inner = inner
        assert inner.kinematics_integrator == "euler" and not inner._sutton_barto_reward
        self.consts = cartpole_constants(inner)
        self._no_share = _Share(trainer.num_envs, 0, False, 0)

    def _env_state(self) -> tuple[np.ndarray, np.ndarray]:
        inner = self.inner
        if not inner.state.flags.c_contiguous or inner.state.dtype != np.float64:
            inner.state = np.ascontiguousarray(inner.state, dtype=np.float64)
        assert inner.steps.dtype == np.int32 and not inner.prev_done.any()
        return inner.state, inner.steps

    def run(
        self,
        uniforms: np.ndarray,
        t0: int,
        t1: int,
        bufs: dict[str, np.ndarray],
        share: _Share | None = None,
    ) -> int:
        """Steps ``t0 .. t1-1`` into ``bufs`` (``obs[t0]`` already set), in chunks of at most
        :data:`CHUNK_ENV_STEPS` env steps with a poll before each, recording finished
        episodes as :meth:`pglab.algos.base.Trainer.env_step` does. With ``share`` (whole
        episodes), stops early once no env is active; returns the step it stopped before."""
        tr, envs = self.trainer, self.envs
        N = tr.num_envs
        chunk = max(1, CHUNK_ENV_STEPS // N)
        tracker = tr._tracker
        sh = share if share is not None else self._no_share
        t = t0
        while t < t1:
            tr.poll()
            assert tr._numpy_actor is not None
            wts, w_out, biases, relu = kernel_params(tr._numpy_actor)
            state, steps = self._env_state()
            stop = min(t1, t + chunk)
            envs.refill_resets()
            reached = cartpole_policy_rollout(
                state,
                steps,
                self.consts,
                envs.reset_states,
                envs.reset_pos,
                wts,
                w_out,
                biases,
                relu,
                uniforms,
                bufs["obs"],
                bufs["actions"],
                bufs["log_probs"],
                bufs["rewards"],
                bufs["terminated"],
                bufs["truncated"],
                bufs["next_obs"],
                tracker.returns,
                tracker.lengths,
                bufs["episode"],
                bufs["episode_returns"],
                share is not None,
                sh.active,
                sh.count,
                sh.share,
                sh.steps_mode,
                sh.min_episodes,
                sh.n_episodes,
                bufs["recorded"],
                t,
                stop,
            )
            ep = bufs["episode"][t:reached]
            if ep.any():
                ts, is_ = np.nonzero(ep)  # row-major: by step, then env, as env_step records
                finished = []
                for s, i in zip(ts.tolist(), is_.tolist(), strict=True):
                    s += t
                    length = int(bufs["episode"][s, i])
                    ret = float(bufs["episode_returns"][s, i])
                    finished.append(Episode(ret, length, tr.env_steps + (s + 1 - t) * N))
                tr._record(finished)
            tr.env_steps += (reached - t) * N
            t = reached
            if share is not None and not share.active.any():
                break
        return t

    def buffers(self, T: int) -> dict[str, np.ndarray]:
        N = self.trainer.num_envs
        return {
            "obs": np.empty((T + 1, N, 4), dtype=np.float32),
            "actions": np.empty((T, N), dtype=np.int64),
            "log_probs": np.empty((T, N), dtype=np.float32),
            "rewards": np.empty((T, N), dtype=np.float32),
            "terminated": np.empty((T, N), dtype=bool),
            "truncated": np.empty((T, N), dtype=bool),
            "next_obs": np.empty((T, N, 4), dtype=np.float32),
            "episode": np.zeros((T, N), dtype=np.int64),
            "episode_returns": np.zeros((T, N), dtype=np.float64),
            "recorded": np.zeros((T, N), dtype=bool),
        }

    def collect(self, n_steps: int, noise: np.ndarray) -> Batch:
        """:meth:`pglab.algos.base.Trainer.collect` through the compiled rollout: the same
        :class:`~pglab.rollout.Batch` from the same state, noise ``[T, N, A]`` and resets."""
        tr = self.trainer
        bufs = self.buffers(n_steps)
        bufs["obs"][0] = tr._obs
        self.run(noise, 0, n_steps, bufs)
        tr._obs = bufs["obs"][n_steps].copy()
        dev = tr.device
        return Batch(
            obs=torch.from_numpy(bufs["obs"][:n_steps]).to(dev),
            actions=torch.from_numpy(bufs["actions"]).to(dev),
            log_probs=torch.from_numpy(bufs["log_probs"]).to(dev),
            rewards=torch.from_numpy(bufs["rewards"]).to(dev),
            terminated=torch.from_numpy(bufs["terminated"]).to(dev),
            truncated=torch.from_numpy(bufs["truncated"]).to(dev),
            next_obs=torch.from_numpy(bufs["next_obs"]).to(dev),
        )

    def collect_episodes(
        self,
        share: int,
        steps_mode: bool,
        min_episodes: int,
        noise_rows: Callable[[], tuple[np.ndarray, int]],
        used_rows: Callable[[int], None],
    ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
        """REINFORCE's whole-episode batch (the loop of
        :meth:`pglab.algos.reinforce.Reinforce.collect_episodes`) through the compiled
        rollout: each env plays until it has ``share`` episodes (or steps, ``steps_mode``)
        and the batch ``min_episodes``. ``noise_rows()`` gives the current block of sampling
        noise ``[L, N, A]`` and its first unused row, ``used_rows(r)`` marks rows up to r used
        (the Python path's noise stream, row for row). Returns the episodes as
        ``(obs [len, 4], actions [len], rewards [len])``, in the Python path's order (by end
        step, then env), and the observation after the last step ``[N, 4]``."""
        tr = self.trainer
        N = tr.num_envs
        sh = _Share(N, share, steps_mode, min_episodes)
        episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        pieces: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(N)]
        obs = tr._obs
        while sh.active.any():
            uniforms, pos = noise_rows()
            L = len(uniforms)
            bufs = self.buffers(L)
            bufs["obs"][pos] = obs
            reached = self.run(uniforms, pos, L, bufs, sh)
            used_rows(reached)
            rec = bufs["recorded"][pos:reached]
            ends = (bufs["episode"][pos:reached] > 0) & rec
            start = np.full(N, pos)
            for s, i in zip(*(a.tolist() for a in np.nonzero(ends)), strict=True):
                s += pos
                part = [*pieces[i], self._slice(bufs, i, start[i], s + 1)]
                pieces[i] = []
                episodes.append(tuple(np.concatenate(c) for c in zip(*part, strict=True)))
                start[i] = s + 1
            for i in range(N):  # the unfinished episode of a still-recording env carries on
                n_rec = int(rec[:, i].sum())
                stop = pos + n_rec
                if stop > start[i]:
                    pieces[i].append(self._slice(bufs, i, start[i], stop))
            obs = bufs["obs"][reached].copy()
        tr._obs = obs
        return episodes, obs

    @staticmethod
    def _slice(bufs: dict[str, np.ndarray], i: int, a: int, b: int):
        return bufs["obs"][a:b, i], bufs["actions"][a:b, i], bufs["rewards"][a:b, i]
