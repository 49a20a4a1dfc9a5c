"""Textbook reproductions: the book's experiment, its published reference values and a stated
criterion that says whether the lab's run matches.

Experiments (:data:`EXPERIMENTS`; ``python -m pglab reproduce --list``):

- ``sb-fig13.1``: Sutton & Barto (2018), Figure 13.1. REINFORCE (Monte Carlo policy gradient,
  section 13.3, plain SGD) on the short corridor with switched actions (Example 13.1),
  alpha in {2^-12, 2^-13, 2^-14}, 1000 episodes, total reward per episode averaged over 100
  runs, the optimum v*(s0) = -11.6 as a line.
- ``sb-fig13.2``: Figure 13.2. REINFORCE with alpha = 2^-13 against REINFORCE with a learned
  state-value baseline (section 13.4), alpha_theta = 2^-9, alpha_w = 2^-6.
- ``ppo-table1``: Schulman et al. (2017), Table 1 in miniature on CartPole-v1: no clipping or
  penalty, clip eps 0.1 / 0.2 / 0.3, adaptive KL d_targ 0.003 / 0.01 / 0.03, fixed beta 1;
  PPO's trainer in the run engine, one run per setting and seed.
- ``gae-sweep``: Schulman et al. (2016), the gamma x lambda sweep (their Figure 2, cart-pole)
  in miniature on CartPole-v1 with PPO: the best lambda lies strictly between 0 and 1.

The policy is the book's linear softmax over action preferences h(s, a, theta) = theta . x(s, a)
with x(s, right) = (1, 0), x(s, left) = (0, 1) (every state looks the same), so
grad ln pi(a|s) = x(s, a) - sum_b pi(b|s) x(s, b). As in the widely used reproduction of the
book's figures (github.com/ShangtongZhang/reinforcement-learning-an-introduction,
chapter13/short_corridor.py), theta starts at (-1.47, 1.47), pi(right) = 0.05, and the
probabilities are kept at least 0.05 (epsilon = 0.05): the book's "epsilon-greedy left" start.
Updates per step of each finished episode, in order t = 0, 1, ... (gamma = 1):

    REINFORCE:           theta <- theta + alpha G_t grad ln pi(A_t|S_t, theta)
    with baseline v = w: delta = G_t - w;  w <- w + alpha_w delta;
                         theta <- theta + alpha_theta delta grad ln pi(A_t|S_t, theta)

All runs of all step sizes go through one compiled loop (numba) over the [configs x runs]
independent learners: 100 runs x 1000 episodes x 3 step sizes take well under a second.
Seeds: learner (config c, run r) draws from a stream seeded from ``(seed, c, r)`` alone.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from pglab.corridor import GOAL, corridor_next_state
from pglab.exact import short_corridor_optimum

V_STAR = -11.6  # the book's value of the start state under the best policy (Example 13.1)
THETA0 = (-1.47, 1.47)  # pi(right) = 0.05
EPSILON = 0.05
CHUNK = 50  # episodes per compiled call: progress, the store and Stop land between chunks
MAX_STEPS = 10_000  # per episode; with pi >= 0.05 an episode ends long before (mean <= 82)

_NEXT = np.array([[corridor_next_state(s, a) for a in (0, 1)] for s in range(GOAL)])


@dataclass
class CorridorCurves:
    """Per-configuration total reward per episode: ``returns`` ``[C, runs, episodes]``."""

    labels: list[str]
    returns: np.ndarray
    final_p_right: np.ndarray  # [C, runs]
    truncated: int  # episodes cut at MAX_STEPS (0 in practice)

    @property
    def mean(self) -> np.ndarray:
        """Mean over runs ``[C, episodes]``: the book's curves."""
        return self.returns.mean(1)


@njit(cache=True, nogil=True)
def _learn(
    a_th: np.ndarray,
    a_w: np.ndarray,
    has_w: np.ndarray,
    seeds: np.ndarray,
    ep_lo: int,
    ep_hi: int,
    theta: np.ndarray,
    w: np.ndarray,
    out: np.ndarray,
) -> int:
    """Episodes ``ep_lo..ep_hi-1`` of every learner n (in place on ``theta`` ``[N, 2]``, ``w``
    ``[N]``, ``out`` ``[N, episodes]``); returns the number of episodes cut at MAX_STEPS."""
    N = a_th.shape[0]
    acts = np.empty(MAX_STEPS, dtype=np.int64)
    cut = 0
    for n in range(N):
        np.random.seed(seeds[n] + ep_lo)  # one stream per learner and chunk of episodes
        for ep in range(ep_lo, ep_hi):
            # the policy is fixed during an episode (Monte Carlo updates after it)
            p = 1.0 / (1.0 + np.exp(theta[n, 1] - theta[n, 0]))
            p = min(max(p, EPSILON), 1.0 - EPSILON)
            s = 0
            T = 0
            while s != GOAL and T < MAX_STEPS:
                a = 1 if np.random.random() < p else 0  # 1 = right
                acts[T] = a
                s = _NEXT[s, a]
                T += 1
            if s != GOAL:
                cut += 1
            for t in range(T):  # per-step updates in order, G_t = -(T - t)
                G = -(T - t) * 1.0
                pr = 1.0 / (1.0 + np.exp(theta[n, 1] - theta[n, 0]))
                pr = min(max(pr, EPSILON), 1.0 - EPSILON)
                # grad ln pi(a) = x(a) - sum_b pi(b) x(b): right (1-p, -(1-p)), left (-p, p)
                g0 = 1.0 - pr if acts[t] == 1 else -pr
                delta = G
                if has_w[n]:
                    delta = G - w[n]
                    w[n] += a_w[n] * delta
                theta[n, 0] += a_th[n] * delta * g0
                theta[n, 1] -= a_th[n] * delta * g0
            out[n, ep] = -T
    return cut


def corridor_reinforce(
    alpha_theta: list[float],
    alpha_w: list[float | None],
    runs: int,
    episodes: int,
    seed: int = 0,
    labels: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_chunk: Callable[[list[str], int, np.ndarray], None] | None = None,
) -> CorridorCurves:
    """REINFORCE (``alpha_w[c] is None``) or REINFORCE with a state-value baseline on the short
    corridor, for every configuration c and run r (see the module docstring); one compiled
    loop over the [C x runs] independent learners, in chunks of :data:`CHUNK` episodes.

    After each chunk: ``on_chunk(labels, lo, mean)`` gets the chunk's mean return over the
    runs ``[C, hi - lo]`` for episodes ``lo..hi-1``, then ``progress(hi)`` is called and
    ``should_stop()`` is checked; a stop ends early (the curves then hold the episodes done).
    The chunking does not change the numbers: a learner's stream is reseeded per chunk from
    its seed and the chunk's first episode. Returns :class:`CorridorCurves`.
    """
    C = len(alpha_theta)
    if len(alpha_w) != C:
        raise ValueError("alpha_w: needs one entry (or None) per alpha_theta")
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs: {runs!r} is not allowed (an integer >= 1)")
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: {episodes!r} is not allowed (an integer >= 1)")
    N = C * runs
    a_th = np.repeat(np.asarray(alpha_theta, dtype=np.float64), runs)
    has_w = np.repeat(np.array([w is not None for w in alpha_w]), runs)
    a_w = np.repeat(np.array([0.0 if w is None else w for w in alpha_w]), runs)
    theta = np.tile(np.asarray(THETA0, dtype=np.float64), (N, 1))  # [N, 2]: (right, left)
    w = np.zeros(N)
    # learner (c, r) draws from seeds derived from (seed, c, r) only
    seeds = np.array(
        [
            int(np.random.default_rng([seed, c, r]).integers(2**31 - 2**20))
            for c in range(C)
            for r in range(runs)
        ],
        dtype=np.int64,
    )
    out = np.zeros((N, episodes))
    if labels is None:
        labels = [f"alpha={a:g}" for a in alpha_theta]
    truncated = 0
    done = 0
    while done < episodes:
        if should_stop is not None and should_stop():
            break
        hi = min(done + CHUNK, episodes)
        truncated += _learn(a_th, a_w, has_w, seeds, done, hi, theta, w, out)
        if on_chunk is not None:
            on_chunk(labels, done, out[:, done:hi].reshape(C, runs, hi - done).mean(1))
        done = hi
        if progress is not None:
            progress(done)
    out = out[:, :done]
    p = 1.0 / (1.0 + np.exp(theta[:, 1] - theta[:, 0]))
    return CorridorCurves(
        labels=labels,
        returns=out.reshape(C, runs, done),
        final_p_right=np.clip(p, EPSILON, 1.0 - EPSILON).reshape(C, runs),
        truncated=truncated,
    )


# -- experiments ----------------------------------------------------------------------------------


@dataclass
class Reproduction:
    """The outcome of one experiment: curves, references, the criterion and the verdict."""

    experiment: str
    title: str
    runs: int
    seeds: str
    budget: str
    criterion: str
    matches: bool
    figures: dict[str, Any]
    curves: dict[str, list[float]] = field(repr=False)
    references: dict[str, float] = field(default_factory=dict)
    episodes_done: int = 0

    def sentence(self) -> str:
        verdict = "matches" if self.matches else "does NOT match"
        return f"{self.title}: the lab's run {verdict} the published result ({self.criterion})."

    def to_json(self) -> dict[str, Any]:
        """The last line of ``python -m pglab reproduce NAME --json``."""
        return {
            "experiment": self.experiment,
            "matches": self.matches,
            "criterion": self.criterion,
            "runs": self.runs,
            "seeds": self.seeds,
            "budget": self.budget,
            "figures": self.figures,
            "references": self.references,
        }


def _window(curve: np.ndarray, lo: int, hi: int) -> float:
    return float(np.mean(curve[lo:hi])) if hi > lo else float("nan")


def _corridor_reproduction(
    experiment: str,
    title: str,
    runs: int,
    seed: int,
    episodes: int,
    criterion: str,
    matches: bool,
    figures: dict[str, float],
    labels: list[str],
    mean: np.ndarray,
    references: dict[str, float],
) -> Reproduction:
    """The :class:`Reproduction` of a short-corridor figure (seeds and budget alike)."""
    return Reproduction(
        experiment=experiment,
        title=title,
        runs=runs,
        seeds=f"learner (config, run) seeded from numpy default_rng([{seed}, config, run]), "
        f"runs 0..{runs - 1}",
        budget=f"{episodes} episodes per run, gamma = 1, plain SGD",
        criterion=criterion,
        matches=bool(matches),
        figures=figures,
        curves={lab: m.tolist() for lab, m in zip(labels, mean, strict=True)},
        references=references,
        episodes_done=mean.shape[1],
    )


def fig13_1(runs: int = 100, seed: int = 0, episodes: int = 1000, **hooks: Any) -> Reproduction:
    """Figure 13.1: REINFORCE on the short corridor for three step sizes."""
    alphas = [2.0**-12, 2.0**-13, 2.0**-14]
    labels = ["alpha=2^-12", "alpha=2^-13", "alpha=2^-14"]
    cur = corridor_reinforce(alphas, [None] * 3, runs, episodes, seed, labels, **hooks)
    mean = cur.mean
    n = mean.shape[1]
    last = max(n - 100, 0)
    figs = {
        f"{lab}: mean return, last 100 episodes": _window(m, last, n)
        for lab, m in zip(labels, mean, strict=True)
    }
    figs |= {
        f"{lab}: mean return, all episodes": _window(m, 0, n)
        for lab, m in zip(labels, mean, strict=True)
    }
    figs["first 10 episodes, all alphas"] = _window(mean.mean(0), 0, min(10, n))
    f12, f13, f14 = (_window(m, last, n) for m in mean)
    all13, all14 = _window(mean[1], 0, n), _window(mean[2], 0, n)
    matches = (
        n == episodes
        and figs["first 10 episodes, all alphas"] < -40.0
        and abs(f13 - V_STAR) <= 1.5
        and abs(f12 - V_STAR) <= 2.5
        and all14 < all13
        and f14 < f13
    )
    criterion = (
        "from the epsilon-greedy-left start (first 10 episodes below -40), alpha=2^-13 ends "
        "within 1.5 and alpha=2^-12 within 2.5 of v* = -11.6 (mean of the last 100 "
        "episodes), and alpha=2^-14 learns slower: below alpha=2^-13 over all episodes "
        "and at the end"
    )
    return _corridor_reproduction(
        "sb-fig13.1",
        "Sutton & Barto Figure 13.1 (REINFORCE, short corridor)",
        runs, seed, episodes, criterion, matches, figs, labels, mean,
        {"v*(s0)": V_STAR, "exact optimum J(p*)": short_corridor_optimum()[1]},
    )  # fmt: skip


def fig13_2(runs: int = 100, seed: int = 0, episodes: int = 1000, **hooks: Any) -> Reproduction:
    """Figure 13.2: REINFORCE against REINFORCE with a learned state-value baseline."""
    labels = ["REINFORCE alpha=2^-13", "with baseline alpha_theta=2^-9 alpha_w=2^-6"]
    cur = corridor_reinforce(
        [2.0**-13, 2.0**-9], [None, 2.0**-6], runs, episodes, seed, labels, **hooks
    )
    mean = cur.mean
    n = mean.shape[1]
    early = min(200, n)
    last = max(n - 100, 0)
    plain_early, base_early = (_window(m, 0, early) for m in mean)
    plain_last, base_last = (_window(m, last, n) for m in mean)
    figs = {
        f"{labels[0]}: mean return, first 200 episodes": plain_early,
        f"{labels[1]}: mean return, first 200 episodes": base_early,
        f"{labels[0]}: mean return, last 100 episodes": plain_last,
        f"{labels[1]}: mean return, last 100 episodes": base_last,
    }
    matches = (
        n == episodes
        and base_early > plain_early + 5.0
        and abs(base_last - V_STAR) <= 1.5
        and abs(plain_last - V_STAR) <= 1.5
    )
    criterion = (
        "with the baseline the curve rises much faster (mean of the first 200 episodes at "
        "least 5 higher than plain REINFORCE's) and both end within 1.5 of v* = -11.6 (mean "
        "of the last 100 episodes)"
    )
    return _corridor_reproduction(
        "sb-fig13.2",
        "Sutton & Barto Figure 13.2 (REINFORCE with baseline, short corridor)",
        runs, seed, episodes, criterion, matches, figs, labels, mean, {"v*(s0)": V_STAR},
    )  # fmt: skip


# -- experiments that train the lab's own algorithms in the run engine ----------------------------

# Table 1's step size. At PPO's default 3e-4, CartPole is too easy for the surrogate to go
# wrong within 30k steps: unclipped PPO scored 0.89 (clip 0.2: 0.91, best fixed beta=1) over
# 3 seeds, so nothing separates. At 3e-3, 10 epochs of unconstrained steps on one batch
# overshoot (the instability the paper's clipping is for): unclipped runs collapse late in
# training while clipped and penalised ones reach 500 (README, issue 13).
TABLE1_LR = 3e-3
CARTPOLE_RANDOM = 22.0  # mean return of the uniform random policy on CartPole-v1
GAE_GAMMAS = (0.98, 0.99)
GAE_LAMBDAS = (0.0, 0.5, 0.8, 0.95, 1.0)


def _train_settings(
    name: str,
    settings: list[tuple[str, dict[str, Any]]],
    seeds: int,
    total_steps: int,
    store: Any,
    launch: str,
    progress: Callable[[int], None] | None,
    should_stop: Callable[[], bool] | None,
    stop: threading.Event | None = None,
) -> tuple[dict[str, list[float]], dict[str, float], int]:
    """Train PPO on CartPole-v1 for every (label, settings) and seed 0..seeds-1 through
    :func:`pglab.engine.run_foreground` (stored as runs of ``launch``). A run's score is the
    mean of ``rollout/ep_return_mean`` over its updates (the area under its learning curve,
    which rewards fast and stable learning). Returns (mean curve per label, mean score per
    label, runs done). ``stop`` (set from another thread) ends the current run ``stopped``
    within one env step and starts no further run."""
    from pglab.engine import run_foreground

    curves: dict[str, list[float]] = {}
    scores: dict[str, float] = {}
    done = 0
    for label, extra in settings:
        per_seed, run_curves = [], []
        for seed in range(seeds):
            if (should_stop is not None and should_stop()) or (stop is not None and stop.is_set()):
                return curves, scores, done
            rec = run_foreground(
                "ppo",
                {"env_id": "CartPole-v1", "total_steps": total_steps, **extra},
                seed,
                store=store,
                name=f"{name} {label} s{seed}",
                group=f"reproduce · {name} · {label}",
                launch=launch,
                stop=stop,
            )
            if rec.status == "stopped":  # a failed run (NaN) is a result; a stopped one is not
                return curves, scores, done
            df = store.metrics(rec.id)
            col = df["rollout/ep_return_mean"].dropna() if "rollout/ep_return_mean" in df else []
            per_seed.append(float(np.mean(col)) if len(col) else float("nan"))
            run_curves.append(np.asarray(col, dtype=float))
            done += 1
            if progress is not None:
                progress(done)
        n = min(len(c) for c in run_curves)
        curves[label] = np.mean([c[:n] for c in run_curves], axis=0).tolist()
        scores[label] = float(np.nanmean(per_seed))
    return curves, scores, done


def ppo_table1(
    runs: int = 3,
    seed: int = 0,
    total_steps: int = 30_000,
    store: Any = None,
    launch: str | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop: threading.Event | None = None,
) -> Reproduction:
    """PPO paper Table 1 in miniature: surrogate objectives compared on CartPole-v1."""
    del seed  # seeds are 0..runs-1
    settings: list[tuple[str, dict[str, Any]]] = [
        ("no clipping or penalty", {"variant": "kl_penalty", "kl_beta_init": 0.0,
                                    "kl_adaptive": False}),
        ("clip eps=0.1", {"variant": "clip", "clip_coef": 0.1}),
        ("clip eps=0.2", {"variant": "clip", "clip_coef": 0.2}),
        ("clip eps=0.3", {"variant": "clip", "clip_coef": 0.3}),
        ("adaptive KL d_targ=0.003", {"variant": "kl_penalty", "kl_target": 0.003}),
        ("adaptive KL d_targ=0.01", {"variant": "kl_penalty", "kl_target": 0.01}),
        ("adaptive KL d_targ=0.03", {"variant": "kl_penalty", "kl_target": 0.03}),
        ("fixed KL beta=1", {"variant": "kl_penalty", "kl_beta_init": 1.0, "kl_adaptive": False}),
    ]  # fmt: skip
    settings = [(label, {"learning_rate": TABLE1_LR, **extra}) for label, extra in settings]
    curves, scores, done = _train_settings(
        "ppo-table1", settings, runs, total_steps, store, launch, progress, should_stop, stop
    )
    best = max(scores.values()) if scores else float("nan")
    norm = {k: (v - CARTPOLE_RANDOM) / (best - CARTPOLE_RANDOM) for k, v in scores.items()}
    figs = {f"{k}: normalised score": v for k, v in norm.items()}
    figs |= {f"{k}: mean return over training": v for k, v in scores.items()}
    complete = done == len(settings) * runs
    clip_best = max((norm[k] for k in norm if k.startswith("clip")), default=float("nan"))
    matches = complete and norm["no clipping or penalty"] == min(norm.values()) and clip_best >= 0.9
    return Reproduction(
        experiment="ppo-table1",
        title="PPO paper Table 1 in miniature (CartPole-v1)",
        runs=runs,
        seeds=f"trainer seeds 0..{runs - 1} for every setting",
        budget=f"{total_steps} env steps per run, Adam step size {TABLE1_LR:g} (10x PPO's "
        "default: see TABLE1_LR), PPO defaults otherwise (8 envs x 128 steps, 10 epochs, "
        "minibatch 256)",
        criterion=(
            "as in the paper, no clipping or penalty scores lowest of all settings, and a "
            "clipped setting scores within 0.1 of the best (normalised score: 0 = random "
            "policy, 1 = best setting; score = mean episode return over training)"
        ),
        matches=bool(matches),
        figures=figs,
        curves=curves,
        references={  # the paper's normalised scores (Table 1, MuJoCo, 1M steps)
            "paper: no clipping or penalty": -0.39,
            "paper: clip eps=0.1": 0.76,
            "paper: clip eps=0.2": 0.82,
            "paper: clip eps=0.3": 0.70,
            "paper: adaptive KL d_targ=0.003": 0.68,
            "paper: adaptive KL d_targ=0.01": 0.74,
            "paper: adaptive KL d_targ=0.03": 0.71,
            "paper: fixed KL beta=1": 0.71,
        },
        episodes_done=done,
    )


def gae_sweep(
    runs: int = 2,
    seed: int = 0,
    total_steps: int = 30_000,
    store: Any = None,
    launch: str | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop: threading.Event | None = None,
) -> Reproduction:
    """GAE paper's gamma x lambda sweep in miniature: PPO on CartPole-v1."""
    del seed
    gammas, lambdas = GAE_GAMMAS, GAE_LAMBDAS
    settings = [
        (f"gamma={g} lambda={lam}", {"gamma": g, "gae_lambda": lam})
        for g in gammas
        for lam in lambdas
    ]
    curves, scores, done = _train_settings(
        "gae-sweep", settings, runs, total_steps, store, launch, progress, should_stop, stop
    )
    figs = {f"{k}: mean return over training": v for k, v in scores.items()}
    interior = []
    for g in gammas:
        row = {lam: scores.get(f"gamma={g} lambda={lam}", float("nan")) for lam in lambdas}
        best = max(row, key=lambda lam: row[lam])
        figs[f"gamma={g}: best lambda"] = best
        # strictly better than both ends (a tie with lambda = 1 is no interior optimum)
        interior.append(0.0 < best < 1.0 and row[best] > max(row[0.0], row[1.0]))
    complete = done == len(settings) * runs
    matches = complete and all(interior)
    return Reproduction(
        experiment="gae-sweep",
        title="GAE paper gamma x lambda sweep in miniature (CartPole-v1, PPO)",
        runs=runs,
        seeds=f"trainer seeds 0..{runs - 1} for every (gamma, lambda)",
        budget=f"{total_steps} env steps per run, PPO defaults otherwise",
        criterion=(
            "for every gamma the best lambda (highest mean episode return over training, mean "
            "over seeds) lies strictly between 0 and 1 and beats both lambda = 0 and lambda = 1, "
            "as in the paper's cart-pole sweep (best lambda 0.92-0.98)"
        ),
        matches=bool(matches),
        figures=figs,
        curves=curves,
        references={"paper: best lambda, low": 0.92, "paper: best lambda, high": 0.98},
        episodes_done=done,
    )


TRAINED = {"ppo-table1": ppo_table1, "gae-sweep": gae_sweep}
DEFAULT_RUNS = {"sb-fig13.1": 100, "sb-fig13.2": 100, "ppo-table1": 3, "gae-sweep": 2}
# what progress() counts, and its total at the default runs
PROGRESS_TOTAL = {"sb-fig13.1": 1000, "sb-fig13.2": 1000, "ppo-table1": 8, "gae-sweep": 10}

EXPERIMENTS: dict[str, tuple[str, Callable[..., Reproduction]]] = {
    "sb-fig13.1": (
        "Sutton & Barto Fig. 13.1: REINFORCE on the short corridor, 3 step sizes",
        fig13_1,
    ),
    "sb-fig13.2": ("Sutton & Barto Fig. 13.2: REINFORCE vs REINFORCE with baseline", fig13_2),
    "ppo-table1": ("PPO paper Table 1 in miniature: surrogate objectives on CartPole", ppo_table1),
    "gae-sweep": ("GAE paper: gamma x lambda sweep on CartPole (PPO)", gae_sweep),
}


def reproduce(name: str, runs: int | None = None, seed: int = 0, **hooks: Any) -> Reproduction:
    """Run the corridor experiment ``name`` (``sb-fig13.1``, ``sb-fig13.2``) with ``runs`` runs
    (default 100), in memory. The trained experiments need a store: :func:`reproduce_to_store`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment: {name!r} is not one of {', '.join(EXPERIMENTS)}")
    if name in TRAINED:
        raise ValueError(f"experiment: {name!r} trains in the run engine (reproduce_to_store)")
    if runs is not None and (not isinstance(runs, int) or runs < 1):
        raise ValueError(f"runs: {runs!r} is not allowed (an integer >= 1)")
    fn = EXPERIMENTS[name][1]
    return fn(runs=100 if runs is None else runs, seed=seed, **hooks)


def smooth_window(n: int) -> int:
    """A moving-average window for drawing ``n`` episodes (the book's curves are smooth)."""
    return max(1, int(math.sqrt(n)) // 2)


def moving_average(curve: list[float], k: int) -> np.ndarray:
    """Trailing mean of the last ``k`` points (fewer at the start), same length as ``curve``."""
    c = np.cumsum(np.r_[0.0, np.asarray(curve, dtype=np.float64)])
    i = np.arange(1, len(curve) + 1)
    lo = np.maximum(i - k, 0)
    return (c[i] - c[lo]) / (i - lo)


def reproduce_to_store(
    name: str,
    store: Any,
    runs: int | None = None,
    seed: int = 0,
    launch: str | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    total_steps: int | None = None,
    stop: threading.Event | None = None,
) -> tuple[Reproduction, list[str]]:
    """:func:`reproduce` with its curves recorded in ``store`` (a :class:`pglab.store.Store`),
    all under one launch id (:func:`pglab.store.new_launch_id` when not given).

    Corridor experiments: one run per curve (algo ``reproduce``), created running when the
    first chunk of episodes is done and given that chunk's rows at once (one metric row per
    episode: ``rollout/ep_return_mean`` is the mean over the runs), so the Runs page follows
    them; finished at the end, ``stopped`` when ``should_stop``/``stop`` ended them early,
    ``failed`` (with the error) if the loop raised. The trained experiments (``ppo-table1``,
    ``gae-sweep``) store every trainer run of the launch instead, with ``runs`` seeds per
    setting and ``total_steps`` env steps per run (their defaults when None); ``stop`` ends
    the current run within one env step. Returns the reproduction and the run ids."""
    from pglab.store import new_launch_id

    launch = launch or new_launch_id()
    if name in TRAINED:
        if runs is not None and (not isinstance(runs, int) or runs < 1):
            raise ValueError(f"runs: {runs!r} is not allowed (an integer >= 1)")
        kw: dict[str, Any] = {} if total_steps is None else {"total_steps": total_steps}
        rep = TRAINED[name](
            **({} if runs is None else {"runs": runs}),
            store=store,
            launch=launch,
            progress=progress,
            should_stop=should_stop,
            stop=stop,
            **kw,
        )
        ids = [r.id for r in store.list_runs() if r.launch == launch]
        return rep, ids
    episodes = 1000
    n_runs = 100 if runs is None else runs
    ids: list[str] = []

    def on_chunk(labels: list[str], lo: int, mean: np.ndarray) -> None:
        if not ids:
            for label in labels:
                config = {"experiment": name, "curve": label, "runs": n_runs}
                config["total_steps"] = episodes
                ids.append(
                    store.create_run(
                        algo="reproduce",
                        env_id="pglab/ShortCorridor-v0",
                        config=config,
                        seed=seed,
                        device="cpu",
                        name=f"{name} {label}",
                        group=f"reproduce · {name}",
                        launch=launch,
                        status="running",
                    )
                )
        for run_id, curve in zip(ids, mean, strict=True):
            rows = [
                {
                    "rollout/ep_return_mean": float(v),
                    "time/env_steps": float(lo + i + 1),
                    "time/updates": float(lo + i + 1),
                }
                for i, v in enumerate(curve)
            ]
            store.append_metrics(run_id, rows)

    def stopping() -> bool:
        return (should_stop is not None and should_stop()) or (stop is not None and stop.is_set())

    try:
        rep = reproduce(
            name, runs, seed, progress=progress, should_stop=stopping, on_chunk=on_chunk
        )
    except BaseException as exc:
        for run_id in ids:
            store.set_status(run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    for run_id in ids:
        store.set_status(run_id, "finished" if rep.episodes_done == episodes else "stopped")
    return rep, ids


def progress_total(name: str, runs: int | None = None) -> int:
    """What ``progress(n)`` counts up to: episodes (corridor) or trainer runs (trained)."""
    if name in TRAINED:
        return PROGRESS_TOTAL[name] * (DEFAULT_RUNS[name] if runs is None else runs)
    return PROGRESS_TOTAL[name]


class Job:
    """One reproduction in a background thread, for the Reproduce page: progress, Stop, and the
    result once it ends; every curve or trainer run goes to ``store`` under :attr:`launch`
    (:func:`reproduce_to_store`).

    ``status`` is ``running``, then ``finished``, ``stopped`` (after :meth:`stop`: the corridor
    loop ends after its current chunk of :data:`CHUNK` episodes, a trainer run within one env
    step) or ``failed`` (:attr:`error` says why). Invalid input raises ``ValueError`` in the
    constructor, before anything is stored or started.
    """

    def __init__(
        self,
        name: str,
        store: Any,
        runs: int | None = None,
        seed: int = 0,
        total_steps: int | None = None,
    ):
        from pglab.store import new_launch_id

        if name not in EXPERIMENTS:
            raise ValueError(f"experiment: {name!r} is not one of {', '.join(EXPERIMENTS)}")
        if runs is not None and (not isinstance(runs, int) or isinstance(runs, bool) or runs < 1):
            raise ValueError(f"runs: {runs!r} is not allowed (an integer >= 1)")
        if total_steps is not None and (not isinstance(total_steps, int) or total_steps < 1):
            raise ValueError(f"total_steps: {total_steps!r} is not allowed (an integer >= 1)")
        self.name, self.store, self.runs, self.seed = name, store, runs, seed
        self.total_steps = total_steps
        self.launch = new_launch_id()
        self.total = progress_total(name, runs)
        self.done = 0
        self.status = "running"
        self.error: str | None = None
        self.result: Reproduction | None = None
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._work, name=f"pglab-reproduce-{self.launch}", daemon=True
        )

    def start(self) -> Job:
        self._thread.start()
        return self

    def _progress(self, n: int) -> None:
        self.done = n

    def _work(self) -> None:
        import torch

        torch.set_num_threads(1)
        try:
            self.result, self.ids = reproduce_to_store(
                self.name,
                self.store,
                self.runs,
                self.seed,
                launch=self.launch,
                progress=self._progress,
                total_steps=self.total_steps,
                stop=self._stop,
            )
            complete = self.result.episodes_done == (self.total if self.name in TRAINED else 1000)
            self.status = "stopped" if self._stop.is_set() and not complete else "finished"
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
        finally:
            with contextlib.suppress(Exception):
                self.store.release_thread()

    def stop(self) -> None:
        """Ask the job to stop; returns at once (:meth:`wait` blocks until it has)."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        return self.status
