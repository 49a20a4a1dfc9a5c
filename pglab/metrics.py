"""Every metric an update can report: its stable name, meaning and formula.

Trainers return ``dict[str, float]`` keyed by these names (see :meth:`pglab.algos.base.Trainer.update`).
The UI's chart captions, ``python -m pglab algos --json`` and the README read this table, so a
number on a chart can be traced back to its definition here and to the line that computes it.

A metric that does not apply to an algorithm (or to an update, e.g. no episode finished) is
absent from that update's dict, never reported as a fake zero.

What healthy values look like, and the thresholds at which the Train page raises a flag
(approx KL above 1.5x the target, clip fraction above 0.3, explained variance below 0 for a
sustained window, ...), live in :mod:`pglab.health` with their sources (Spinning Up's and
SB3's 1.5 x target_kl early stop, the PPO implementation-details blog's debug variables).

Notation: a batch holds B = T * N steps; ``r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t)`` is the
probability ratio; ``A_t`` the advantages the policy loss uses; ``R_t`` the value targets;
``V(s)`` the critic.

Definitional choices, against Stable-Baselines3 (SB3) and CleanRL, where a user comparing
numbers across libraries will see a difference:

- ``diag/clip_fraction`` (PPO): the share over the LAST epoch's minibatches, each measured
  with the ratio before that minibatch's step. SB3 and CleanRL average over ALL epochs'
  minibatches, which usually reads lower (the early minibatches have barely moved).
- ``diag/approx_kl`` (PPO-Clip): the mean k3 over the last epoch's minibatches, each before
  its step (as SB3 logs it; CleanRL logs the last minibatch's). PPO-Penalty reports the KL
  its beta rule reads: KL(pi_old || pi_new) over the whole batch AFTER the epochs.
- Target-KL early stop (PPO ``target_kl``): checked after each epoch, on that epoch's mean
  k3, against ``target_kl`` (CleanRL checks after each epoch on the last minibatch's KL; SB3
  checks every minibatch, before its step, against 1.5 x target_kl).
- Advantage normalisation (PPO ``norm_adv``): over the whole rollout by default; SB3 and
  CleanRL normalise each minibatch (``norm_adv_scope="minibatch"`` does that). Identical
  when one minibatch is the whole batch.
- ``loss/value`` (PPO): E[(V - R)^2] (SB3's F.mse_loss), clipped or not. CleanRL's is half of
  it (0.5 x, also in its clipped form), so CleanRL's vf_coef c matches pglab's c / 2.
- ``diag/grad_var``: tr Cov(g_i) / m, the variance of the MEAN of m per-segment gradient
  samples g_i (a segment is an episode, cut at the rollout's ends for PPO/A2C), with the
  update's own weights Psi_t (PPO: the advantages, normalised when norm_adv normalises over
  the batch), at the parameters before the
  update. Not the variance of one sample, and not a per-parameter mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # short chart title
    meaning: str  # one line: what it tells the user
    formula: str  # how it is computed
    algos: tuple[str, ...] = ("reinforce", "a2c", "ppo", "trpo")  # who reports it

    def caption(self) -> str:
        """One line for a chart caption: meaning, then the formula."""
        return f"{self.meaning} ({self.formula})"

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["algos"] = list(self.algos)
        return d


_ALL = ("reinforce", "a2c", "ppo", "trpo")
_CRITIC = ("a2c", "ppo", "trpo")  # plus reinforce with baseline="value"

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        # -- time -------------------------------------------------------------------------------
        Metric(
            "time/env_steps",
            "Env steps",
            "Environment steps taken so far, summed over the parallel envs.",
            "sum over updates of T * N",
        ),
        Metric("time/updates", "Updates", "Updates (iterations) done so far.", "count"),
        Metric(
            "time/wall_s",
            "Wall time (s)",
            "Seconds spent inside update() so far (collect + learn), excluding pauses.",
            "sum of per-update wall-clock durations",
        ),
        Metric(
            "time/sps",
            "Steps per second",
            "Throughput of the last update.",
            "env steps in the update / its wall-clock seconds",
        ),
        # -- rollout ----------------------------------------------------------------------------
        Metric(
            "rollout/ep_return_mean",
            "Episode return",
            "Mean undiscounted return of the episodes that finished during this update.",
            "mean_i sum_t r_t^i over finished episodes i",
        ),
        Metric(
            "rollout/ep_return_std",
            "Return std",
            "Spread of the returns of episodes finished during this update.",
            "population std over finished episodes",
        ),
        Metric(
            "rollout/ep_return_min",
            "Return min",
            "Worst return among episodes finished during this update.",
            "min over finished episodes",
        ),
        Metric(
            "rollout/ep_return_max",
            "Return max",
            "Best return among episodes finished during this update.",
            "max over finished episodes",
        ),
        Metric(
            "rollout/ep_length_mean",
            "Episode length",
            "Mean length (steps) of the episodes finished during this update.",
            "mean over finished episodes of their step count",
        ),
        Metric(
            "rollout/episodes",
            "Episodes",
            "Episodes that finished during this update.",
            "count",
        ),
        Metric(
            "rollout/return_last20",
            "Return (last 20)",
            "Mean return of the last 20 finished episodes: the 'solved' criterion.",
            "mean of the 20 most recent episode returns",
        ),
        # -- losses -----------------------------------------------------------------------------
        Metric(
            "loss/policy",
            "Policy loss",
            "The policy objective being minimised (its level is not comparable across "
            "algorithms; its gradient is what matters).",
            "PPO: -E[min(r A, clip(r, 1-eps, 1+eps) A)] (+ beta KL for PPO-Penalty); "
            "REINFORCE/A2C: -E[log pi(a|s) Psi]; TRPO: -E[r A] before the step",
        ),
        Metric(
            "loss/value",
            "Value loss",
            "How far the critic is from its regression targets.",
            "E[(V(s) - R)^2] (PPO with clip_vloss: E[max((V-R)^2, (V_clip-R)^2)]); some "
            "algorithms report half of it, see their docstrings",
            _ALL,
        ),
        Metric(
            "policy/entropy",
            "Entropy",
            "Randomness of the policy; falls as it becomes deterministic.",
            "E_s[H(pi(.|s))] = -E_s sum_a pi(a|s) log pi(a|s) (Gaussian: sum log(sigma sqrt(2 pi e)))",
        ),
        # -- diagnostics ------------------------------------------------------------------------
        Metric(
            "diag/approx_kl",
            "Approx. KL (k3)",
            "How far the update moved the policy from the one that collected the data "
            "(PPO-Clip: the last epoch's minibatches, each before its step; PPO-Penalty: "
            "the whole batch after the epochs).",
            "k3 = E_old[(r - 1) - log r], an unbiased, non-negative estimator of KL(old || new)",
            ("ppo",),
        ),
        Metric(
            "diag/approx_kl_k1",
            "Approx. KL (k1)",
            "The naive KL estimate; unbiased but noisy and can go negative.",
            "k1 = E_old[-log r]",
            ("ppo",),
        ),
        Metric(
            "diag/clip_fraction",
            "Clip fraction",
            "Share of samples whose ratio left the clip range (last epoch): how often the "
            "clip is active.",
            "E[|r - 1| > eps]",
            ("ppo",),
        ),
        Metric(
            "diag/explained_variance",
            "Explained variance",
            "How much of the return's variance the critic explains: 1 perfect, 0 no better than a "
            "constant, < 0 worse.",
            "1 - Var(R - V(s)) / Var(R), on the batch before the update",
            _CRITIC,
        ),
        Metric(
            "diag/grad_norm",
            "Gradient norm",
            "Global L2 norm of the loss gradient before clipping (mean over minibatches).",
            "||grad_theta L||_2 over all trained parameters",
            ("a2c", "ppo", "reinforce"),
        ),
        Metric(
            "diag/grad_var",
            "Gradient variance",
            "Variance of the batch policy-gradient estimate, from per-episode gradient samples "
            "at the start of the update (same code as the Gradient Lab). Computed in chunks "
            "under a fixed memory cap (256 MB) whatever the batch and net, every episode "
            "counted: the episodes x parameters samples are never held at once.",
            "tr Cov(g_i) / m,  g_i = grad sum_{t in segment i} log pi(a_t|s_t) Psi_t, m segments",
        ),
        Metric(
            "diag/grad_snr",
            "Gradient SNR",
            "Signal-to-noise ratio of the batch policy-gradient estimate: > 1 means the mean "
            "direction dominates the noise. Same chunked, memory-capped pass as diag/grad_var.",
            "|mean_i g_i|^2 / (tr Cov(g_i) / m)",
        ),
        # -- optimiser --------------------------------------------------------------------------
        Metric(
            "opt/learning_rate",
            "Learning rate",
            "Step size used in this update (after any schedule).",
            "lr_0 (constant) or lr_0 * (1 - env_steps / total_steps) (linear)",
            ("reinforce", "a2c", "ppo"),
        ),
        Metric(
            "opt/clip_coef",
            "Clip range",
            "PPO's epsilon used in this update (after any schedule).",
            "eps_0 or eps_0 * (1 - env_steps / total_steps)",
            ("ppo",),
        ),
        Metric(
            "opt/kl_beta",
            "KL coefficient",
            "PPO-Penalty's beta used in this update; doubled when KL > 1.5 x target, halved when "
            "KL < target / 1.5.",
            "L = -E[r A] + beta * KL",
            ("ppo",),
        ),
        Metric(
            "opt/epochs",
            "Epochs run",
            "Epochs PPO ran this update; fewer than n_epochs when the target-KL early stop fired.",
            "count",
            ("ppo",),
        ),
        Metric(
            "trpo/line_search_ok",
            "Line search OK",
            "1 if the backtracking line search found a step that improves the surrogate within "
            "the KL limit, else 0 (the policy is left unchanged).",
            "1[L(theta') < L(theta) and KL <= delta]",
            ("trpo",),
        ),
        Metric(
            "trpo/line_search_steps",
            "Line-search steps",
            "Backtracking steps taken before a step was accepted (or the maximum).",
            "count",
            ("trpo",),
        ),
        Metric(
            "trpo/kl",
            "KL of the step",
            "Mean KL between the old and the new policy after TRPO's step.",
            "E_s[KL(pi_old(.|s) || pi_new(.|s))]",
            ("trpo",),
        ),
        Metric(
            "value/mean",
            "Mean value",
            "Average critic estimate over the batch; should track the discounted return.",
            "E[V(s_t)] over the batch",
            _CRITIC,
        ),
    ]
}


def metric_names() -> list[str]:
    return list(METRICS)


def describe(name: str) -> str:
    """Caption for a metric (empty string for names not in the table)."""
    m = METRICS.get(name)
    return m.caption() if m is not None else ""


def label(name: str) -> str:
    """Short chart title for a metric (the raw name for names not in the table)."""
    m = METRICS.get(name)
    return m.label if m is not None else name
