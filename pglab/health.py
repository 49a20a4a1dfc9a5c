"""Health flags: plain-language warnings computed from a run's metrics as they arrive.

Each flag says what it saw (with the measured number), why it matters and what to try, so a
flag teaches rather than scolds. :func:`check` is a pure function of the metric columns (the
rows a trainer reports, :mod:`pglab.metrics`), the algorithm and its config, so the Train
page, a notebook and the tests all get the same flags::

    flags = check(columns, "ppo", config)   # columns: {"diag/approx_kl": array, ...}

Thresholds and their sources (:data:`THRESHOLDS`):

- **KL too large.** Spinning Up's PPO stops an update's epochs early once the approximate KL
  exceeds ``1.5 * target_kl`` (spinningup/algos/pytorch/ppo/ppo.py; SB3's PPO uses the same
  1.5 factor, stable_baselines3/ppo/ppo.py), so a KL above 1.5x the target means the update
  went further than the trust region it asked for. PPO-Penalty doubles beta at the same 1.5x
  (Schulman et al. 2017, section 4). For clip PPO without a target, practitioners read a KL
  above ~0.02-0.05 per update as "steps too large" (the approx_kl debug variable of "The 37
  Implementation Details of PPO", Huang et al. 2022); the flag fires at 0.03.
- **Clip fraction above 0.3.** With eps = 0.2, healthy PPO runs clip roughly 0.05-0.2 of the
  samples (same debug variable, clipfrac); above 0.3 most of the batch gets no gradient from
  the surrogate. A rule of thumb, not a theorem.
- **Explained variance below 0, sustained.** ``1 - Var(R - V) / Var(R) < 0`` means the critic
  predicts worse than a constant (SB3's ``explained_variance``: "ev=0 => might as well have
  predicted zero ... ev<0 => worse than just predicting zero"); a few negative updates early are normal, so the flag
  needs the median of the last 20 updates below -0.05 (an untrained critic sits at ~0), and is silent once the task is solved
  (every return the same: Var(R) ~ 0 makes the ratio meaningless).
- **Entropy collapse early.** The policy's entropy below 10% of where it started while less
  than a quarter of the budget is spent and the task is not solved: the policy stopped
  exploring before it found a good behaviour (the reason for the entropy bonus, Mnih et al.
  2016, A3C).
- **Gradient SNR far below 1.** ``|mean g|^2 / (tr Cov g / m) < 0.1`` (median of the last
  10): the batch gradient is mostly noise, the motivation of every variance-reduction trick
  (Greensmith et al. 2004; the Gradient Lab measures the same quantity).
- **Value loss exploding.** The median value loss of the last 5 updates more than 10x that
  of the 20 before, and at its maximum: divergence, not the slow growth that follows
  growing returns.
- **Return collapse after a peak.** The mean return of the last 20 episodes has lost more
  than half of what it had gained at its peak (policy collapse, a known failure of PPO
  without learning-rate annealing; Dohare et al. 2023).
- **NaN guard.** A loss, gradient or weight became NaN/Inf and the run was ended
  (:class:`pglab.algos.NonFiniteError`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["THRESHOLDS", "Flag", "check"]

THRESHOLDS: dict[str, float] = {
    "kl_over_target": 1.5,  # x target_kl / kl_target (Spinning Up, SB3, PPO paper sec. 4)
    "kl_clip_ppo": 0.03,  # clip PPO without a target: in the 0.02-0.05 rule-of-thumb range
    "clip_fraction": 0.3,
    "explained_variance": -0.05,  # median of the last EV_WINDOW updates below this
    "entropy_fraction": 0.1,  # entropy below this share of its starting value...
    "entropy_early": 0.25,  # ...while less than this share of the budget is spent
    "grad_snr": 0.1,
    "value_loss_growth": 10.0,
    "return_collapse": 0.5,  # share of the gain since the start lost after the peak
}
WINDOW = 10  # updates a flag looks at (median): one noisy update never fires a flag
EV_WINDOW = 20


@dataclass(frozen=True)
class Flag:
    """One health warning. ``level`` is ``"warning"`` or ``"error"``."""

    key: str
    level: str
    title: str  # what happened, in plain words
    detail: str  # the measured numbers
    why: str  # why it matters
    fix: str  # what to try

    def text(self) -> str:
        return f"**{self.title}** ({self.detail}). {self.why} *Try:* {self.fix}"


def _col(columns: Mapping[str, Any], name: str) -> np.ndarray:
    """The finite values of one metric, in update order (empty if absent)."""
    if name not in columns:
        return np.empty(0)
    a = np.asarray(columns[name], dtype=np.float64)
    return a[np.isfinite(a)]


def _recent(a: np.ndarray, n: int = WINDOW) -> float | None:
    """Median of the last ``n`` values, or None with fewer than ``n``."""
    return float(np.median(a[-n:])) if len(a) >= n else None


def check(
    columns: Mapping[str, Any],
    algo: str,
    config: Mapping[str, Any],
    *,
    status: str | None = None,
    error: str | None = None,
    reward_threshold: float | None = None,
) -> list[Flag]:
    """Every flag that the metric ``columns`` (name -> values per update, NaN where absent)
    of one run raise now; ``[]`` for a healthy run. ``config`` is the run's settings
    (``target_kl``, ``kl_target``, ``variant``, ``total_steps``)."""
    t = THRESHOLDS
    flags: list[Flag] = []
    if status == "failed" and error and ("nan" in error.lower() or "inf" in error.lower()):
        flags.append(
            Flag(
                "nan",
                "error",
                "Training blew up: a number became NaN or infinite",
                error,
                "One step was so large that a loss, gradient or weight overflowed; the run "
                "was ended so it cannot write garbage.",
                "a smaller learning rate, max_grad_norm 0.5, normalised advantages or "
                "observations.",
            )
        )

    kl = _recent(_col(columns, "diag/approx_kl"))
    if algo == "ppo" and kl is not None:
        target = config.get("kl_target") if config.get("variant") == "kl_penalty" else None
        target = target if target is not None else config.get("target_kl")
        limit = t["kl_over_target"] * target if target else t["kl_clip_ppo"]
        if kl > limit:
            basis = (
                f"{t['kl_over_target']}x the target {target:g}"
                if target
                else f"{limit:g} for clip PPO"
            )
            flags.append(
                Flag(
                    "kl",
                    "warning",
                    "Each update moves the policy too far",
                    f"approx. KL {kl:.3g} > {basis}",
                    "PPO trusts its data only near the policy that collected it; beyond that "
                    "the surrogate's improvement is not real and learning can collapse.",
                    "a smaller learning rate, fewer epochs, a smaller clip range, or a "
                    "target_kl (early stop) of 0.01-0.02.",
                )
            )

    clip = _recent(_col(columns, "diag/clip_fraction"))
    if clip is not None and clip > t["clip_fraction"]:
        flags.append(
            Flag(
                "clip",
                "warning",
                "Most of the batch is clipped",
                f"clip fraction {clip:.2f} > {t['clip_fraction']}",
                "A clipped sample gives no policy gradient: the update learns from a shrinking "
                "share of the data and the ratio has drifted far from 1.",
                "a smaller learning rate or fewer epochs (or a larger clip range).",
            )
        )

    ret = _col(columns, "rollout/return_last20")
    solved = reward_threshold is not None and len(ret) > 0 and ret[-1] >= reward_threshold
    ev = _recent(_col(columns, "diag/explained_variance"), EV_WINDOW)
    # once solved, every return is the same and Var(R) ~ 0 makes EV meaningless
    if ev is not None and ev < t["explained_variance"] and not solved:
        flags.append(
            Flag(
                "ev",
                "warning",
                "The critic predicts worse than a constant",
                f"explained variance, median of the last {EV_WINDOW} updates, {ev:.2f} < 0",
                "Advantages A = R - V(s) then add noise instead of removing it, so the "
                "baseline makes the gradient worse.",
                "a larger value learning rate or vf_coef, more value iterations, reward "
                "normalisation, or check gamma.",
            )
        )

    ent = _col(columns, "policy/entropy")
    steps = _col(columns, "time/env_steps")
    total = config.get("total_steps")
    if len(ent) >= WINDOW and ent[0] > 0 and len(steps) and total and not solved:
        now = float(np.median(ent[-3:]))
        spent = float(steps[-1]) / float(total)
        if now < t["entropy_fraction"] * ent[0] and spent < t["entropy_early"]:
            flags.append(
                Flag(
                    "entropy",
                    "warning",
                    "The policy stopped exploring early",
                    f"entropy {now:.3g}, {now / ent[0]:.0%} of its start {ent[0]:.3g}, "
                    f"after {spent:.0%} of the budget",
                    "A near-deterministic policy tries nothing new, so it rarely finds "
                    "better actions than the ones it already prefers.",
                    "an entropy bonus (ent_coef 0.01), a smaller learning rate, or "
                    "normalised advantages.",
                )
            )

    snr = _recent(_col(columns, "diag/grad_snr"))
    if snr is not None and snr < t["grad_snr"]:
        flags.append(
            Flag(
                "snr",
                "warning",
                "The gradient is mostly noise",
                f"gradient SNR {snr:.3g} << 1",
                "Each update moves in a nearly random direction; progress needs many more samples.",
                "a larger batch, reward-to-go, a baseline or GAE (see the Gradient Lab).",
            )
        )

    vl = _col(columns, "loss/value")
    if len(vl) >= 25:
        before, last = float(np.median(vl[-25:-5])), float(np.median(vl[-5:]))
        if before > 0 and last > t["value_loss_growth"] * before and vl[-1] >= vl.max():
            flags.append(
                Flag(
                    "value_loss",
                    "warning",
                    "The value loss is exploding",
                    f"{last:.3g}, {last / before:.0f}x the {before:.3g} of 20 updates before",
                    "A diverging critic feeds huge, wrong advantages to the policy.",
                    "a smaller learning rate, clip_vloss, max_grad_norm, or reward normalisation.",
                )
            )

    if len(ret) >= 2 * WINDOW:
        start, peak, now = float(ret[0]), float(ret.max()), float(ret[-1])
        at_peak = int(np.argmax(ret))
        gain = peak - start
        if (
            gain > 0
            and len(ret) - at_peak > WINDOW
            and now < peak - t["return_collapse"] * gain
            and math.isfinite(now)
        ):
            flags.append(
                Flag(
                    "collapse",
                    "warning",
                    "The return collapsed after a peak",
                    f"return (last 20) {now:.1f}, down from its peak {peak:.1f}",
                    "The policy took a bad step and lost what it had learned; on-policy "
                    "methods then have to relearn from their own worse data.",
                    "a decaying learning rate (lr_schedule linear), a target_kl, a smaller "
                    "clip range, or stop at the peak.",
                )
            )
    return flags
