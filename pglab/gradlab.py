"""Gradient Lab: bias and variance of policy-gradient estimators, measured on the same episodes.

Every estimator is  g = (1/m) sum_i g_i,  g_i = sum_t grad log pi(a_t^i|s_t^i) * Psi_t^i,  and
differs only in its weights Psi_t (see :data:`ESTIMATORS`). The lab samples K independent
batches of m whole episodes with a fixed policy; on each batch it computes every estimator's
g from the *same* episodes, with the per-episode samples g_i of
:func:`pglab.diagnostics.grad_samples` (one vectorised pass per estimator). Over the K
batches it reports, per estimator:

- ``mean``: E g estimated by the mean of the K batch estimates;
- ``variance``: tr Cov(g) across the K batches (ddof 1): the variance of one batch estimate;
- ``snr`` = |E g|^2 / variance;
- ``cosine`` between E g and the reference gradient;
- ``bias_along`` = (E g - ref) . ref / |ref|^2, the signed bias along the reference relative to
  its length (-1/m for a batch-mean baseline at gamma = 1: the estimate is (1 - 1/m) ref), with
  a 95% confidence interval (:func:`signed_bias_ci`);
- ``rel_bias`` = |E g - ref| / |ref|, the norm of the bias in all directions, with a 95%
  confidence interval (:func:`bias_ci`). The norm needs many more batches than the signed
  projection to tell a small bias from noise: its noise is that of all P directions.

On the short corridor every estimate lies on one line: the policy's only free direction is
theta_right - theta_left (the softmax of two actions sees only their difference, and every
state looks the same), so all cosines are +-1 there; FrozenLake has 64 directions.

On finite MDPs the K batches are drawn from the exact model all at once (one vectorised pass
over K x m episodes, then split), which is what makes thousands of batches cheap.

The reference is the exact gradient on finite MDPs (:mod:`pglab.exact`; FrozenLake-v1 and
the short corridor) and otherwise the mean of an independent large batch of leave-one-out
estimates (unbiased), whose own noise enters the confidence interval.

Objective: J = E[sum_{t<H} gamma^t r_t] with H the env's time limit, so a time-limit
truncation is the end of the objective, not something to bootstrap over. Its unbiased
per-step weights carry gamma^t:  grad J = E[sum_t grad log pi(a_t|s_t) gamma^t (G_t - b(s_t, t))]
(Thomas 2014, http://proceedings.mlr.press/v32/thomas14.html). Training code usually drops
gamma^t; the lab keeps it so "unbiased" means unbiased for the J it compares against.

Values V where an estimator needs them (``rtg_value``, ``td0``, ``nstep``, ``gae``):
``value="exact"`` (finite MDPs) uses the exact time-indexed V_t(s_t), under which all four are
unbiased; ``value="fitted"`` uses a value MLP fitted by regression on reward-to-go over a
separate set of episodes (never the measured ones). With a fitted V, ``rtg_value`` stays
unbiased (a baseline that depends only on the state and on independent data), while ``td0``,
``nstep`` and ``gae`` with lambda < 1 are biased by the critic's errors: the lab reports it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from gymnasium import spaces
from torch import Tensor, nn

from pglab.diagnostics import grad_samples
from pglab.envs import SHORT_CORRIDOR_ID, check_env_id, env_info, make_vec
from pglab.estimators import (
    constant_baseline,
    episode_reward_to_go,
    episode_scores,
    gae,
    loo_baseline,
    min_variance_baseline,
    nstep_advantage,
    td0_advantage,
    time_baseline,
    total_return,
)
from pglab.exact import FiniteMDP, exact_gradient, exact_values, mdp_for_env
from pglab.policies import LinearSoftmax, TabularSoftmax, ValueMLP, make_policy
from pglab.rollout import to_env_action

ESTIMATORS: dict[str, str] = {
    "total": "R(tau) on every step: the whole episode's discounted return (REINFORCE)",
    "total_loo": "R(tau) - b_i, b_i = mean return of the other episodes (unbiased)",
    "total_minvar": "R(tau) - b_i, b_i = E[|z|^2 R]/E[|z|^2] over the other episodes, "
    "z = sum_t grad log pi (variance-optimal constant, unbiased)",
    "rtg": "gamma^t G_t: discounted reward-to-go",
    "rtg_const": "gamma^t (G_t - b), b = batch mean of the episodes' returns "
    "(bias -E[z G_0]/m, = -grad J/m at gamma=1)",
    "rtg_time": "gamma^t (G_t - b_t), b_t = batch mean of G_t at step t (bias -grad J/m)",
    "rtg_minvar": "gamma^t (G_t - b_i), b_i = E[y.z]/E[z.z] over the other episodes "
    "(variance-optimal constant, unbiased)",
    "rtg_loo": "gamma^t (G_t - b_i), b_i = mean return of the other episodes (RLOO)",
    "rtg_value": "gamma^t (G_t - V(s_t)): state-value baseline",
    "td0": "gamma^t (r_t + gamma V(s_{t+1}) - V(s_t)): TD(0) advantage",
    "nstep": "gamma^t (n-step return - V(s_t)): n-step advantage",
    "gae": "gamma^t GAE(gamma, lambda) advantage",
}
DEFAULT_ESTIMATORS = list(ESTIMATORS)
_NEEDS_VALUE = {"rtg_value", "td0", "nstep", "gae"}
VALUE_SOURCES = ("auto", "exact", "fitted")


def default_gamma(env_id: str) -> float:
    """The corridor is the book's undiscounted task; elsewhere the usual 0.99."""
    return 1.0 if env_id == SHORT_CORRIDOR_ID else 0.99


def parse_estimators(names: list[str] | str | None) -> list[str]:
    """Validate estimator names (a list or a comma-separated string); None means all."""
    if names is None:
        return list(DEFAULT_ESTIMATORS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError(f"estimators: empty list (choose from {', '.join(ESTIMATORS)})")
    for n in names:
        if n not in ESTIMATORS:
            raise ValueError(
                f"estimators: {n!r} is not an estimator (one of {', '.join(ESTIMATORS)})"
            )
    return list(dict.fromkeys(names))


# -- episodes ------------------------------------------------------------------------------------


@dataclass
class EpisodeBatch:
    """m whole episodes, time-major ``[L, m]``, one episode per column from its first step.

    ``mask`` marks real steps; padding rows have zero reward and ``terminated`` set, so every
    recursion stops at an episode's end. ``states`` are the hidden states (finite MDPs) and
    ``final_obs`` ``[m, ...]`` the observation after each episode's last step.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    mask: Tensor
    final_obs: Tensor
    states: Tensor | None

    @property
    def m(self) -> int:
        return self.mask.shape[1]

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(0)

    def columns(self, lo: int, hi: int) -> EpisodeBatch:
        """Episodes ``lo..hi-1`` as their own batch, trimmed to their longest episode."""
        L = max(int(self.mask[:, lo:hi].sum(0).max()), 1)
        return EpisodeBatch(
            obs=self.obs[:L, lo:hi],
            actions=self.actions[:L, lo:hi],
            rewards=self.rewards[:L, lo:hi],
            terminated=self.terminated[:L, lo:hi],
            truncated=self.truncated[:L, lo:hi],
            mask=self.mask[:L, lo:hi],
            final_obs=self.final_obs[lo:hi],
            states=None if self.states is None else self.states[:L, lo:hi],
        )

    def flat(self) -> tuple[Tensor, Tensor, Tensor]:
        """(obs, actions, segment ids) of the real steps, in ``mask`` order."""
        seg = torch.arange(self.m).expand_as(self.mask)
        return self.obs[self.mask], self.actions[self.mask], seg[self.mask]


def sample_mdp_episodes(
    mdp: FiniteMDP, policy: nn.Module, m: int, generator: torch.Generator
) -> EpisodeBatch:
    """m episodes drawn from a finite MDP's exact model (same law as its env, much faster).

    Rewards are drawn per transition (``R_sas``), so their noise is the env's. An episode
    terminates on entering a terminal state and is truncated after ``mdp.horizon`` steps.
    """
    s = torch.multinomial(mdp.mu0.float(), m, replacement=True, generator=generator)
    active = torch.ones(m, dtype=torch.bool)
    rows: dict[str, list[Tensor]] = {k: [] for k in ("o", "a", "r", "te", "tr", "m", "s")}
    for t in range(mdp.horizon):
        obs = mdp.obs[s]
        with torch.no_grad():
            probs = policy(obs).probs
        a = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        s2 = torch.multinomial(mdp.P[s, a].float(), 1, generator=generator).squeeze(1)
        r = mdp.R_sas[s, a, s2].float()
        te = mdp.terminal[s2] & active
        tr = ~mdp.terminal[s2] & active & (t == mdp.horizon - 1)
        rows["o"].append(obs)
        rows["a"].append(a)
        rows["r"].append(torch.where(active, r, 0.0))
        rows["te"].append(te | ~active)
        rows["tr"].append(tr)
        rows["m"].append(active.clone())
        rows["s"].append(s)
        active = active & ~te & ~tr
        s = s2
        if not active.any():
            break
    st = {k: torch.stack(v) for k, v in rows.items()}
    return EpisodeBatch(
        obs=st["o"],
        actions=st["a"],
        rewards=st["r"],
        terminated=st["te"],
        truncated=st["tr"],
        mask=st["m"],
        final_obs=mdp.obs[s],
        states=st["s"],
    )


def sample_episodes(
    envs: gym.vector.VectorEnv, policy: nn.Module, seed: int, max_steps: int
) -> EpisodeBatch:
    """Run each env of ``envs`` (SAME_STEP auto-reset) to the end of its first episode."""
    E = envs.num_envs
    obs, info = envs.reset(seed=seed)
    # hidden states: the corridor reports them in info; a Discrete observation is the state
    discrete_obs = isinstance(envs.single_observation_space, spaces.Discrete)
    state = np.asarray(info["state"]) if "state" in info else (obs if discrete_obs else None)
    active = np.ones(E, dtype=bool)
    final_obs = np.array(obs, copy=True)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("o", "a", "r", "te", "tr", "m", "s")}
    for _ in range(max_steps + 1):
        with torch.no_grad():
            a = policy(torch.as_tensor(obs)).sample().numpy()
        next_obs, r, te, tr, infos = envs.step(to_env_action(a, envs.single_action_space))
        rows["o"].append(np.asarray(obs))
        rows["a"].append(a)
        rows["r"].append(np.where(active, r, 0.0))
        rows["te"].append(np.where(active, te, True))  # padding counts as terminated
        rows["tr"].append(tr & active)
        rows["m"].append(active.copy())
        rows["s"].append(state if state is not None else np.zeros(E, dtype=np.int64))
        done = (te | tr) & active
        if done.any():
            final_obs[done] = np.asarray(infos["final_obs"][done].tolist())
        active &= ~done
        if not active.any():
            break
        obs = next_obs
        if state is not None:
            state = np.asarray(infos["state"]) if "state" in infos else obs
    else:
        raise RuntimeError(f"episodes did not end within {max_steps} steps (no time limit?)")

    def stack(k: str) -> np.ndarray:
        return np.stack(rows[k])

    obs_t = torch.as_tensor(stack("o"))
    if obs_t.is_floating_point():
        obs_t = obs_t.float()
    actions = torch.as_tensor(stack("a"))
    final = torch.as_tensor(final_obs)
    return EpisodeBatch(
        obs=obs_t,
        actions=actions,
        rewards=torch.as_tensor(stack("r"), dtype=torch.float64).float(),
        terminated=torch.as_tensor(stack("te")),
        truncated=torch.as_tensor(stack("tr")),
        mask=torch.as_tensor(stack("m")),
        final_obs=final.float() if final.is_floating_point() else final,
        states=torch.as_tensor(stack("s")).long() if state is not None else None,
    )


# -- values --------------------------------------------------------------------------------------


def step_scores(policy: nn.Module, batch: EpisodeBatch) -> tuple[Tensor, Tensor]:
    """Per-step scores grad log pi(a_t|s_t) ``[B, P]`` of a batch's real steps, and their
    episode ids ``[B]``, from one vectorised :func:`pglab.diagnostics.grad_samples` pass
    (each step its own segment, weight 1). Per-episode samples of any estimator follow:
    g_i = sum_{t in episode i} Psi_t score_t.
    """
    o, a, seg = batch.flat()
    B = o.shape[0]
    scores = grad_samples(policy, o, a, torch.ones(B), torch.arange(B), B)
    return scores, seg


def fit_value(
    batch: EpisodeBatch, obs_space: gym.Space, gamma: float, seed: int, iters: int = 300
) -> nn.Module:
    """Regress a ValueMLP (64x64 tanh) on the discounted reward-to-go G_t of ``batch``.

    Full-batch Adam on standardised targets (the net predicts (G - mu) / sigma; the returned
    module undoes it). Meant to be fitted on episodes other than the measured ones.
    """
    G = episode_reward_to_go(batch.rewards, batch.mask, gamma)[batch.mask]
    x = batch.obs[batch.mask]
    mu, sigma = float(G.mean()), float(G.std()) if G.numel() > 1 else 1.0
    sigma = sigma if sigma > 1e-8 else 1.0
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = ValueMLP(obs_space, 64, 2, "tanh")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    y = (G - mu) / sigma
    for _ in range(iters):
        opt.zero_grad()
        loss = (net(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
    return _Scaled(net, mu, sigma).eval()


class _Scaled(nn.Module):
    def __init__(self, net: nn.Module, mu: float, sigma: float):
        super().__init__()
        self.net, self.mu, self.sigma = net, mu, sigma

    def forward(self, obs: Tensor) -> Tensor:
        return self.mu + self.sigma * self.net(obs)


def batch_values(
    batch: EpisodeBatch, value: nn.Module | None, V_exact: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(values, next_values) ``[L, m]`` for a batch; zero on padding.

    Exact: V_t(s_t) and V_{t+1}(s_{t+1}); after an episode's last step the next value is 0
    (a terminal state, or t + 1 = H where V_H = 0). Fitted: V(s_t), and V(final obs) after a
    truncated last step (a terminated one needs none).
    """
    L, m = batch.mask.shape
    maskf = batch.mask.float()
    if V_exact is not None:
        assert batch.states is not None
        t_idx = torch.arange(L).unsqueeze(1).expand(L, m).clamp(max=V_exact.shape[0] - 1)
        values = V_exact[t_idx, batch.states].float() * maskf
    else:
        assert value is not None
        with torch.no_grad():
            values = value(batch.obs.reshape(L * m, *batch.obs.shape[2:])).reshape(L, m) * maskf
    next_values = torch.zeros_like(values)
    next_values[:-1] = values[1:] * maskf[1:]
    if V_exact is None:
        last = batch.lengths - 1
        trunc_last = batch.truncated[last, torch.arange(m)]
        if trunc_last.any():
            with torch.no_grad():
                v_final = value(batch.final_obs)
            next_values[last[trunc_last], torch.arange(m)[trunc_last]] = v_final[trunc_last]
    return values, next_values


# -- estimator weights ---------------------------------------------------------------------------


def estimator_weights(
    name: str,
    batch: EpisodeBatch,
    gamma: float,
    *,
    values: Tensor | None = None,
    next_values: Tensor | None = None,
    gae_lambda: float = 0.95,
    n_step: int = 5,
    scores: Tensor | None = None,
) -> Tensor:
    """Psi_t ``[L, m]`` of estimator ``name`` on an episode batch (zero on padding).

    ``scores`` ``[B, P]``: the per-step scores of the batch's real steps in ``mask`` order
    (:func:`step_scores`), needed by ``rtg_minvar`` and ``total_minvar``.
    """
    mask = batch.mask
    maskf = mask.float()
    r = batch.rewards
    L = r.shape[0]
    disc = (gamma ** torch.arange(L, dtype=torch.float64)).float().unsqueeze(1)
    if name.startswith("total"):
        R = total_return(r, mask, gamma)
        if name == "total_loo":
            R = (R - loo_baseline(R, mask)) * maskf
        elif name == "total_minvar":
            assert scores is not None
            _, _, seg = batch.flat()
            ones = torch.ones(seg.shape[0])
            z = episode_scores(scores, ones, seg, batch.m)  # sum_t s_t
            y = z * R[0].unsqueeze(1)
            R = (R - min_variance_baseline(y, z)) * maskf
        return R
    G = episode_reward_to_go(r, mask, gamma)
    if name == "rtg":
        psi = G
    elif name == "rtg_const":
        psi = G - constant_baseline(G, mask)
    elif name == "rtg_time":
        psi = G - time_baseline(G, mask)
    elif name == "rtg_minvar":
        assert scores is not None
        _, _, seg = batch.flat()
        d = disc.expand_as(G)[mask]
        y = episode_scores(scores, d * G[mask], seg, batch.m)  # sum_t gamma^t s_t G_t
        z = episode_scores(scores, d, seg, batch.m)  # sum_t gamma^t s_t
        psi = G - min_variance_baseline(y, z)
    elif name == "rtg_loo":
        psi = G - loo_baseline(G, mask)
    elif name in _NEEDS_VALUE:
        assert values is not None and next_values is not None
        if name == "rtg_value":
            psi = G - values
        elif name == "td0":
            psi = td0_advantage(r, values, next_values, batch.terminated, gamma)
        elif name == "nstep":
            psi = nstep_advantage(
                r, values, next_values, batch.terminated, batch.truncated, gamma, n_step
            )
        else:
            psi = gae(r, values, next_values, batch.terminated, batch.truncated, gamma, gae_lambda)
    else:
        raise ValueError(f"estimators: {name!r} is not an estimator")
    return disc * psi * maskf


# -- statistics ----------------------------------------------------------------------------------


def bias_ci(
    estimates: Tensor, target: Tensor, target_samples: Tensor | None = None
) -> tuple[float, tuple[float, float]]:
    """Relative bias |mean - target| / |target| and its 95% confidence interval.

    ``estimates`` ``[K, P]`` are independent batch estimates, ``target`` ``[P]`` the reference
    (exact, or the mean of independent ``target_samples`` ``[K', P]``). With d = mean - target
    and C = Cov(d) (estimated from the batches), E|d|^2 = |b|^2 + tr C, so
    |b|^2 ~ |d|^2 - tr C with standard error sqrt(2 tr C^2 + 4 d'Cd) (Gaussian d). The point
    estimate and interval are those of |b|^2, clipped at 0, square-rooted and divided by
    |target|: an unbiased estimator's interval contains 0 about 95% of the time.
    """
    K = estimates.shape[0]
    est = estimates.double()
    tgt = target.double()
    d = est.mean(0) - tgt
    parts = []
    if K >= 2:
        parts.append((est - est.mean(0)) / math.sqrt(K * (K - 1)))
    if target_samples is not None and target_samples.shape[0] >= 2:
        k2 = target_samples.shape[0]
        ts = target_samples.double()
        parts.append((ts - ts.mean(0)) / math.sqrt(k2 * (k2 - 1)))
    norm_t = float(tgt.norm())
    if norm_t == 0.0 or not parts:
        return float("nan"), (float("nan"), float("nan"))
    Z = torch.cat(parts)  # C = Z^T Z
    tr_C = float(Z.pow(2).sum())
    gram = Z @ Z.T
    tr_C2 = float(gram.pow(2).sum())
    dCd = float((Z @ d).pow(2).sum())
    b2 = float(d @ d) - tr_C
    se = math.sqrt(max(2.0 * tr_C2 + 4.0 * dCd, 0.0))
    lo, hi = b2 - 1.96 * se, b2 + 1.96 * se

    def rel(x: float) -> float:
        return math.sqrt(max(x, 0.0)) / norm_t

    return rel(b2), (rel(lo), rel(hi))


def signed_bias_ci(
    estimates: Tensor, target: Tensor, target_samples: Tensor | None = None
) -> tuple[float, tuple[float, float]]:
    """Signed relative bias along the target,  beta = (mean - target) . u / |target|,
    u = target / |target|, and its 95% confidence interval (normal, from the spread of the
    K projections  estimates_k . u, plus that of ``target_samples`` when the target is itself
    a sample mean). -0.1 means the estimate is 10% too short along the true gradient."""
    tgt = target.double()
    norm_t = float(tgt.norm())
    K = estimates.shape[0]
    if norm_t == 0.0 or K < 2:
        return float("nan"), (float("nan"), float("nan"))
    u = tgt / norm_t
    proj = estimates.double() @ u
    beta = (float(proj.mean()) - norm_t) / norm_t
    var = float(proj.var()) / K
    if target_samples is not None and target_samples.shape[0] >= 2:
        var += float((target_samples.double() @ u).var()) / target_samples.shape[0]
    half = 1.96 * math.sqrt(var) / norm_t
    return beta, (beta - half, beta + half)


@dataclass
class EstimatorStats:
    """One estimator's figures over K batches (see the module docstring)."""

    name: str
    mean: Tensor
    variance: float
    snr: float
    cosine: float
    rel_bias: float
    rel_bias_ci95: tuple[float, float]
    wall_s: float
    batch_estimates: Tensor = field(repr=False)
    bias_along: float = float("nan")
    bias_along_ci95: tuple[float, float] = (float("nan"), float("nan"))


@dataclass
class GradLabResult:
    env_id: str
    gamma: float
    horizon: int
    episodes: int
    batches: int
    seed: int
    policy_kind: str
    policy_params: dict[str, Tensor]
    exact_J: float | None
    exact_grad: Tensor | None
    reference: Tensor | None
    reference_kind: str | None  # "exact", "large_batch" or None
    value_source: str | None
    stats: dict[str, EstimatorStats]
    timings: dict[str, float]
    mean_episode_length: float

    def _shape_like_params(self, flat: Tensor) -> Any:
        out, i = {}, 0
        for k, p in self.policy_params.items():
            out[k] = flat[i : i + p.numel()].reshape(p.shape).tolist()
            i += p.numel()
        return next(iter(out.values())) if len(out) == 1 else out

    def to_json(self) -> dict:
        """The JSON of ``python -m pglab gradlab --json`` (NaN becomes null)."""
        theta = (
            next(iter(self.policy_params.values())).tolist()
            if len(self.policy_params) == 1
            else {k: v.tolist() for k, v in self.policy_params.items()}
        )
        out: dict[str, Any] = {
            "env": self.env_id,
            "gamma": self.gamma,
            "horizon": self.horizon,
            "episodes": self.episodes,
            "batches": self.batches,
            "seed": self.seed,
            "policy": {"kind": self.policy_kind, "theta": theta},
            "reference": self.reference_kind,
            "value": self.value_source,
            "mean_episode_length": self.mean_episode_length,
        }
        if self.exact_grad is not None:
            out["exact"] = {
                "J": self.exact_J,
                "grad": self._shape_like_params(self.exact_grad),
            }
        out["estimators"] = {
            name: {
                "description": ESTIMATORS.get(name.split("@")[0], ""),
                "mean": self._shape_like_params(s.mean),
                "variance": _finite(s.variance),
                "snr": _finite(s.snr),
                "cosine": _finite(s.cosine),
                "rel_bias": _finite(s.rel_bias),
                "rel_bias_ci95": [_finite(s.rel_bias_ci95[0]), _finite(s.rel_bias_ci95[1])],
                "bias_along": _finite(s.bias_along),
                "bias_along_ci95": [
                    _finite(s.bias_along_ci95[0]),
                    _finite(s.bias_along_ci95[1]),
                ],
                "wall_s": s.wall_s,
            }
            for name, s in self.stats.items()
        }
        out["timings"] = dict(self.timings)
        return out

    def table(self) -> pd.DataFrame:
        """One row per estimator: variance, snr, cosine, rel_bias and its CI, wall time."""
        return pd.DataFrame(_rows(self))


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


# -- the lab -------------------------------------------------------------------------------------


def _build_policy(
    env_id: str,
    obs_space: gym.Space,
    act_space: gym.Space,
    mdp: FiniteMDP | None,
    policy_config: dict | None,
    policy_state: dict | None,
    seed: int,
) -> tuple[nn.Module, str]:
    cfg = dict(policy_config or {})
    kind = cfg.pop("kind", "tabular" if mdp is not None else "mlp")
    theta = cfg.pop("theta", None)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if kind == "tabular":
            if not isinstance(obs_space, spaces.Discrete) or not isinstance(
                act_space, spaces.Discrete
            ):
                raise ValueError(f"policy_config.kind: 'tabular' needs Discrete spaces ({env_id})")
            th = None if theta is None else torch.as_tensor(theta, dtype=torch.float32)
            policy: nn.Module = TabularSoftmax(int(obs_space.n), int(act_space.n), th)
        elif kind == "linear":
            if env_id != SHORT_CORRIDOR_ID:
                raise ValueError("policy_config.kind: 'linear' is offered for the short corridor")
            # Sutton & Barto's features: x(s, left) = (0, 1), x(s, right) = (1, 0)
            feats = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
            th = None if theta is None else torch.as_tensor(theta, dtype=torch.float32)
            policy = LinearSoftmax(feats, th)
        elif kind == "mlp":
            policy = make_policy(
                obs_space,
                act_space,
                int(cfg.pop("hidden_size", 64)),
                int(cfg.pop("n_layers", 2)),
                str(cfg.pop("activation", "tanh")),
                **(
                    {"log_std_init": float(cfg.pop("log_std_init"))}
                    if "log_std_init" in cfg
                    else {}
                ),
            )
        else:
            raise ValueError(
                f"policy_config.kind: {kind!r} is not a policy kind (tabular, linear, mlp)"
            )
    if cfg:
        raise ValueError(f"policy_config: unknown keys {sorted(cfg)}")
    if policy_state is not None:
        policy.load_state_dict(policy_state)
    return policy, kind


@dataclass
class _Spec:
    label: str
    name: str
    gae_lambda: float
    n_step: int


def _run(
    env_id: str,
    specs: list[_Spec],
    *,
    episodes: int,
    batches: int,
    seed: int,
    gamma: float | None,
    value: str,
    policy_state: dict | None,
    policy_config: dict | None,
    reference_batches: int,
    value_episodes: int | None,
    sampler: str = "auto",
) -> GradLabResult:
    check_env_id(env_id)
    if sampler not in ("auto", "env", "model"):
        raise ValueError(f"sampler: {sampler!r} is not allowed (one of auto, env, model)")
    if not isinstance(episodes, int) or not 2 <= episodes <= MAX_EPISODES:
        raise ValueError(
            f"episodes: {episodes!r} is not allowed (an integer in [2, {MAX_EPISODES}])"
        )
    if not isinstance(batches, int) or not 1 <= batches <= MAX_BATCHES:
        raise ValueError(f"batches: {batches!r} is not allowed (an integer in [1, {MAX_BATCHES}])")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise ValueError(f"seed: {seed!r} is not allowed (an integer in [0, 2147483647])")
    if value not in VALUE_SOURCES:
        raise ValueError(f"value: {value!r} is not allowed (one of {', '.join(VALUE_SOURCES)})")
    gamma = default_gamma(env_id) if gamma is None else float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: {gamma} is not allowed (in [0, 1])")
    horizon = env_info(env_id).max_episode_steps or gym.spec(env_id).max_episode_steps
    if horizon is None:
        raise ValueError(f"env: {env_id!r} has no time limit; the lab needs finite episodes")
    mdp = mdp_for_env(env_id, gamma, horizon)
    if value == "exact" and mdp is None:
        raise ValueError(f"value: 'exact' needs a finite MDP (not {env_id!r})")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    envs = make_vec(env_id, episodes, seed)
    try:
        policy, kind = _build_policy(
            env_id,
            envs.single_observation_space,
            envs.single_action_space,
            mdp,
            policy_config,
            policy_state,
            seed,
        )
        names = [p for p, _ in policy.named_parameters()]
        use_model = mdp is not None and sampler in ("auto", "model")
        if sampler == "model" and mdp is None:
            raise ValueError(f"sampler: 'model' needs a finite MDP (not {env_id!r})")

        def draw(batch_seed: int) -> EpisodeBatch:
            if use_model:
                gen = torch.Generator().manual_seed(batch_seed)
                return sample_mdp_episodes(mdp, policy, episodes, gen)
            return sample_episodes(envs, policy, batch_seed, horizon)

        params = {k: v.detach().clone() for k, v in policy.named_parameters()}
        exact_J = exact_grad = None
        V_exact = None
        if mdp is not None:
            exact_J, exact_grad = exact_gradient(mdp, policy)
        needs_value = any(s.name in _NEEDS_VALUE for s in specs)
        value_source = None
        fitted = None
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            base = seed * 1_000_003
            if needs_value:
                if value == "exact" or (value == "auto" and mdp is not None):
                    V_exact = exact_values(mdp, policy)
                    value_source = "exact"
                else:
                    t0 = time.perf_counter()
                    n_fit = value_episodes or episodes
                    fit_batches = [
                        draw(base + 900_000_000 + j * episodes)
                        for j in range(max(1, math.ceil(n_fit / episodes)))
                    ]
                    fitted = fit_value(
                        _concat(fit_batches), envs.single_observation_space, gamma, seed
                    )
                    value_source = "fitted"
                    timings["fit_value_s"] = time.perf_counter() - t0
            reference_kind = "exact" if exact_grad is not None else None
            reference = None if exact_grad is None else exact_grad.float()
            ref_samples = None
            if exact_grad is None and reference_batches > 0:
                t0 = time.perf_counter()
                ests = []
                for j in range(reference_batches):
                    b = draw(base + 500_000_000 + j * episodes)
                    w = estimator_weights("rtg_loo", b, gamma)
                    scores, _ = step_scores(policy, b)
                    ests.append(w[b.mask] @ scores / b.m)
                ref_samples = torch.stack(ests)
                reference = ref_samples.mean(0)
                reference_kind = "large_batch"
                timings["reference_s"] = time.perf_counter() - t0

            per_est: dict[str, list[Tensor]] = {s.label: [] for s in specs}
            wall = dict.fromkeys(per_est, 0.0)
            clock = {"sample_s": 0.0, "scores_s": 0.0}
            lengths = []

            def batches_with_scores() -> Any:
                """(batch, per-step scores [B, P]) for each of the K batches. One vectorised
                pass gives the scores grad log pi(a_t|s_t); every estimator is linear in them,
                g = (1/m) sum_t Psi_t score_t. Finite MDPs: many batches per model draw."""
                per_draw = max(1, 8192 // episodes) if use_model else 1
                for c0 in range(0, batches, per_draw):
                    n = min(per_draw, batches - c0)
                    t0 = time.perf_counter()
                    if use_model:
                        gen = torch.Generator().manual_seed(base + c0 * episodes)
                        big = sample_mdp_episodes(mdp, policy, n * episodes, gen)
                    else:
                        big = draw(base + c0 * episodes)
                    t1 = time.perf_counter()
                    scores, seg = step_scores(policy, big)
                    clock["sample_s"] += t1 - t0
                    clock["scores_s"] += time.perf_counter() - t1
                    if n == 1:
                        yield big, scores
                        continue
                    for j in range(n):
                        lo = j * episodes
                        # mask order is time-major, so the steps of columns lo..hi-1 keep the
                        # order of their own batch
                        sel = (seg >= lo) & (seg < lo + episodes)
                        yield big.columns(lo, lo + episodes), scores[sel]

            for b, scores in batches_with_scores():
                lengths.append(b.lengths.float().mean())
                values = next_values = None
                if needs_value:
                    values, next_values = batch_values(b, fitted, V_exact)
                for s in specs:
                    t0 = time.perf_counter()
                    w = estimator_weights(
                        s.name,
                        b,
                        gamma,
                        values=values,
                        next_values=next_values,
                        gae_lambda=s.gae_lambda,
                        n_step=s.n_step,
                        scores=scores,
                    )
                    per_est[s.label].append(w[b.mask] @ scores / b.m)
                    wall[s.label] += time.perf_counter() - t0
            timings.update(clock)
    finally:
        envs.close()

    stats = {}
    for s in specs:
        est = torch.stack(per_est[s.label])  # [K, P]
        mean = est.mean(0)
        variance = float(est.var(0, unbiased=True).sum()) if batches >= 2 else float("nan")
        sq = float(mean.pow(2).sum())
        snr = sq / variance if variance > 0 else float("nan")
        cosine = rel_bias = along = float("nan")
        ci = along_ci = (float("nan"), float("nan"))
        if reference is not None:
            denom = float(mean.norm()) * float(reference.norm())
            cosine = float(mean @ reference) / denom if denom > 0 else float("nan")
            rel_bias, ci = bias_ci(est, reference, ref_samples)
            along, along_ci = signed_bias_ci(est, reference, ref_samples)
        stats[s.label] = EstimatorStats(
            s.label, mean, variance, snr, cosine, rel_bias, ci, wall[s.label], est, along, along_ci
        )
    timings["total_s"] = time.perf_counter() - t_start
    return GradLabResult(
        env_id=env_id,
        gamma=gamma,
        horizon=int(horizon),
        episodes=episodes,
        batches=batches,
        seed=seed,
        policy_kind=kind,
        policy_params={k: params[k] for k in names},
        exact_J=exact_J,
        exact_grad=exact_grad,
        reference=reference,
        reference_kind=reference_kind,
        value_source=value_source,
        stats=stats,
        timings=timings,
        mean_episode_length=float(torch.stack(lengths).mean()),
    )


def _concat(batches: list[EpisodeBatch]) -> EpisodeBatch:
    """Episode batches side by side (columns), padded to the longest."""
    L = max(b.mask.shape[0] for b in batches)

    def pad(x: Tensor, fill: float | bool) -> Tensor:
        if x.shape[0] == L:
            return x
        extra = torch.full((L - x.shape[0], *x.shape[1:]), fill, dtype=x.dtype)
        return torch.cat([x, extra])

    states = None
    if all(b.states is not None for b in batches):
        states = torch.cat([pad(b.states, 0) for b in batches], 1)
    return EpisodeBatch(
        obs=torch.cat([pad(b.obs, 0) for b in batches], 1),
        actions=torch.cat([pad(b.actions, 0) for b in batches], 1),
        rewards=torch.cat([pad(b.rewards, 0.0) for b in batches], 1),
        terminated=torch.cat([pad(b.terminated, True) for b in batches], 1),
        truncated=torch.cat([pad(b.truncated, False) for b in batches], 1),
        mask=torch.cat([pad(b.mask, False) for b in batches], 1),
        final_obs=torch.cat([b.final_obs for b in batches], 0),
        states=states,
    )


# Bounds of one measurement: m episodes are stepped as one vector env of m copies, so m is
# bounded by memory; K batches by time.
MAX_EPISODES = 4096
MAX_BATCHES = 10000


def run_gradlab(
    env_id: str,
    *,
    episodes: int = 64,
    batches: int = 20,
    seed: int = 0,
    estimators: list[str] | str | None = None,
    gae_lambda: float = 0.95,
    n_step: int = 5,
    policy_state: dict | None = None,
    policy_config: dict | None = None,
    gamma: float | None = None,
    value: str = "auto",
    reference_batches: int = 8,
    value_episodes: int | None = None,
    sampler: str = "auto",
) -> GradLabResult:
    """Measure the chosen estimators on ``batches`` batches of ``episodes`` episodes each.

    Args:
        env_id: a lab env id; FrozenLake-v1 and pglab/ShortCorridor-v0 get exact gradients.
        estimators: names from :data:`ESTIMATORS` (default: all).
        gae_lambda, n_step: parameters of ``gae`` and ``nstep``.
        policy_state: a ``state_dict`` to load into the policy (e.g. from a trained run).
        policy_config: ``{"kind": "tabular" | "linear" | "mlp", "theta": ..., "hidden_size":
            ..., "n_layers": ..., "activation": ...}``; default tabular (uniform) on finite
            MDPs, a freshly initialised 64x64 MLP (seeded by ``seed``) elsewhere.
        gamma: discount of J (default 1 for the corridor, 0.99 elsewhere).
        value: "auto" (exact on finite MDPs, fitted elsewhere), "exact" or "fitted".
        reference_batches: batches of ``episodes`` leave-one-out estimates averaged into the
            reference gradient on envs without an exact one (0: no reference, no bias).
        value_episodes: episodes for fitting V (default ``episodes``), separate from the
            measured ones.
        sampler: "env" steps the gymnasium env; "model" draws from the exact model of a
            finite MDP (the same law, tens of times faster); "auto": model when there is one.
    """
    names = parse_estimators(estimators)
    if not 0.0 <= gae_lambda <= 1.0:
        raise ValueError(f"gae_lambda: {gae_lambda} is not allowed (in [0, 1])")
    if not isinstance(n_step, int) or n_step < 1:
        raise ValueError(f"n_step: {n_step!r} is not allowed (an integer >= 1)")
    specs = [_Spec(n, n, gae_lambda, n_step) for n in names]
    return _run(
        env_id,
        specs,
        episodes=episodes,
        batches=batches,
        seed=seed,
        gamma=gamma,
        value=value,
        policy_state=policy_state,
        policy_config=policy_config,
        reference_batches=reference_batches,
        value_episodes=value_episodes,
        sampler=sampler,
    )


def _rows(result: GradLabResult, **extra: Any) -> list[dict]:
    return [
        {
            **extra,
            "estimator": name,
            "variance": s.variance,
            "snr": s.snr,
            "cosine": s.cosine,
            "bias_along": s.bias_along,
            "along_lo": s.bias_along_ci95[0],
            "along_hi": s.bias_along_ci95[1],
            "rel_bias": s.rel_bias,
            "ci95_lo": s.rel_bias_ci95[0],
            "ci95_hi": s.rel_bias_ci95[1],
            "wall_s": s.wall_s,
            "description": ESTIMATORS.get(name.split("@")[0], ""),
        }
        for name, s in result.stats.items()
    ]


def sweep_batch_size(
    env_id: str,
    sizes: list[int],
    estimators: list[str] | str | None = None,
    batches: int = 20,
    seed: int = 0,
    **kwargs: Any,
) -> pd.DataFrame:
    """Variance (and SNR, bias) of each estimator against the batch size m.

    For independent episodes the variance falls as 1/m; one row per (batch_size, estimator).
    """
    rows: list[dict] = []
    for m in sizes:
        res = run_gradlab(
            env_id, episodes=int(m), batches=batches, seed=seed, estimators=estimators, **kwargs
        )
        rows += _rows(res, batch_size=int(m))
    return pd.DataFrame(rows)


def sweep_lambda(
    env_id: str,
    lambdas: list[float],
    batches: int = 20,
    episodes: int = 64,
    seed: int = 0,
    **kwargs: Any,
) -> pd.DataFrame:
    """Bias and variance of GAE(gamma, lambda) for each lambda, all on the same episodes.

    One row per lambda (column ``gae_lambda``). With a fitted critic, lambda < 1 trades
    bias for variance; with the exact V (finite MDPs) every lambda is unbiased.
    """
    for lam in lambdas:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambdas: {lam} is not allowed (in [0, 1])")
    specs = [_Spec(f"gae@{lam:g}", "gae", float(lam), 1) for lam in lambdas]
    res = _run(
        env_id,
        specs,
        episodes=episodes,
        batches=batches,
        seed=seed,
        gamma=kwargs.pop("gamma", None),
        value=kwargs.pop("value", "auto"),
        policy_state=kwargs.pop("policy_state", None),
        policy_config=kwargs.pop("policy_config", None),
        reference_batches=kwargs.pop("reference_batches", 8),
        value_episodes=kwargs.pop("value_episodes", None),
        sampler=kwargs.pop("sampler", "auto"),
    )
    if kwargs:
        raise ValueError(f"sweep_lambda: unknown arguments {sorted(kwargs)}")
    rows = _rows(res)
    for row, lam in zip(rows, lambdas):
        row["gae_lambda"] = float(lam)
    return pd.DataFrame(rows)
