"""Plain-language names for the lab's knobs, variants and charts, in one table (Streamlit-free).

The config field names (``psi``, ``batch_mode``, ``gae_lambda``) stay the stable API of the
CLI, the store and the exports; the UI shows the label and keeps the field name in the help
text. Chart captions are written per algorithm (REINFORCE's KL caption says what KL means for
REINFORCE, not PPO's epochs), with their equations as LaTeX for Streamlit's markdown.

- :func:`field_label`: ``("reinforce", "psi") -> "Return weighting"``
- :func:`choice_label`: ``("psi", "rtg") -> "reward-to-go"``
- :func:`inactive_fields`: knobs with no effect for the chosen variant, with the reason
- :func:`variant_title`: ``"REINFORCE · reward-to-go · learned value baseline"``
- :func:`chart_caption`: the caption of one live chart for one algorithm
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

ALGO_SHORT = {"reinforce": "REINFORCE", "a2c": "A2C", "ppo": "PPO", "trpo": "TRPO"}

# (algo, field) first, then ("*", field).
FIELD_LABELS: dict[tuple[str, str], str] = {
    ("*", "env_id"): "Environment",
    ("*", "total_steps"): "Step budget",
    ("*", "learning_rate"): "Learning rate",
    ("*", "gamma"): "Discount factor γ",
    ("*", "hidden_size"): "Hidden units per layer",
    ("*", "n_layers"): "Hidden layers",
    ("*", "activation"): "Activation",
    ("*", "grad_diagnostics"): "Measure gradient variance and SNR",
    ("*", "num_envs"): "Parallel environments",
    ("*", "n_steps"): "Rollout length (steps per env)",
    ("*", "gae_lambda"): "GAE λ (bias-variance trade-off)",
    ("*", "ent_coef"): "Entropy bonus weight",
    ("*", "vf_coef"): "Value-loss weight",
    ("*", "max_grad_norm"): "Gradient-norm clip",
    ("*", "norm_adv"): "Normalise advantages",
    ("*", "vf_learning_rate"): "Critic learning rate",
    ("*", "vf_iters"): "Critic fitting steps per update",
    ("*", "optimizer"): "Optimiser",
    ("*", "rollout"): "Rollout engine",
    ("reinforce", "psi"): "Return weighting",
    ("reinforce", "baseline"): "Baseline",
    ("reinforce", "batch_mode"): "Batch counted in",
    ("reinforce", "batch_size"): "Batch size (episodes or steps)",
    ("reinforce", "norm_adv"): "Normalise the weights Ψ",
    ("ppo", "batch_size"): "Minibatch size",
    ("ppo", "n_epochs"): "Epochs per update",
    ("ppo", "variant"): "Policy objective",
    ("ppo", "clip_coef"): "Clip range ε",
    ("ppo", "clip_schedule"): "Clip-range schedule",
    ("ppo", "lr_schedule"): "Learning-rate schedule",
    ("ppo", "clip_vloss"): "Clip the value update too",
    ("ppo", "target_kl"): "Early stop at KL (empty = off)",
    ("ppo", "kl_target"): "Target KL of the penalty",
    ("ppo", "kl_beta_init"): "Initial KL penalty β",
    ("ppo", "log_std_init"): "Initial log σ (continuous actions)",
    ("ppo", "normalize_obs"): "Normalise observations",
    ("ppo", "normalize_reward"): "Scale rewards",
    ("trpo", "max_kl"): "Trust-region radius δ (max KL)",
    ("trpo", "cg_iters"): "Conjugate-gradient iterations",
    ("trpo", "cg_damping"): "Fisher damping",
    ("trpo", "line_search_steps"): "Line-search steps",
    ("trpo", "line_search_decay"): "Line-search shrink factor",
    ("trpo", "vf_iters"): "Critic epochs per update",
    ("trpo", "vf_batch_size"): "Critic minibatch size",
}

CHOICE_LABELS: dict[str, dict[Any, str]] = {
    "psi": {"total": "whole-episode return", "rtg": "reward-to-go"},
    "baseline": {
        "none": "none",
        "constant": "batch-mean return",
        "time": "mean return at each time step",
        "min_variance": "variance-minimising constant",
        "loo": "leave-one-out mean",
        "value": "learned value V(s)",
    },
    "batch_mode": {"episodes": "whole episodes", "steps": "env steps"},
    "variant": {"clip": "clipped surrogate (PPO-Clip)", "kl_penalty": "adaptive KL penalty"},
    "optimizer": {"rmsprop": "RMSprop", "adam": "Adam"},
    "clip_schedule": {"constant": "constant", "linear": "linear decay to 0"},
    "lr_schedule": {"constant": "constant", "linear": "linear decay to 0"},
    "activation": {"tanh": "tanh", "relu": "ReLU"},
    "rollout": {
        "auto": "compiled where it applies (CartPole on CPU)",
        "python": "Python env loop (the reference)",
    },
}


def field_label(algo: str, name: str) -> str:
    """The widget label of a config field (the field name itself when none is written)."""
    return FIELD_LABELS.get((algo, name)) or FIELD_LABELS.get(("*", name)) or name


def choice_label(name: str, value: Any) -> str:
    return CHOICE_LABELS.get(name, {}).get(value, str(value))


@functools.lru_cache(maxsize=64)
def _box_actions(env_id: str) -> bool:
    from gymnasium import spaces

    from pglab.envs import make_env

    env = make_env(env_id)
    try:
        return isinstance(env.action_space, spaces.Box)
    finally:
        env.close()


def inactive_fields(
    algo: str, settings: Mapping[str, Any], env_id: str | None = None
) -> dict[str, str]:
    """Fields that do nothing with these ``settings`` -> why, so the page can hide them."""
    out: dict[str, str] = {}
    if algo == "reinforce" and settings.get("baseline") != "value":
        for name in ("vf_learning_rate", "vf_iters"):
            out[name] = "only used with the learned value baseline"
    if algo == "ppo":
        if settings.get("variant", "clip") == "clip":
            for name in ("kl_target", "kl_beta_init"):
                out[name] = "only used by the KL-penalty objective"
        elif not settings.get("clip_vloss"):
            for name in ("clip_coef", "clip_schedule"):
                out[name] = "the KL-penalty objective does not clip (unless the value loss is)"
        if env_id is not None:
            try:
                box = _box_actions(env_id)
            except Exception:  # an env that cannot be built here: show the knob
                box = True
            if not box:
                out["log_std_init"] = "only used for continuous actions"
    return out


def variant_title(algo: str, settings: Mapping[str, Any]) -> str:
    """Human title of an algorithm and its variant, e.g. for run names and groups."""
    head = ALGO_SHORT.get(algo, algo)
    if algo == "reinforce":
        parts = [choice_label("psi", settings.get("psi", "rtg"))]
        b = settings.get("baseline", "none")
        parts.append("no baseline" if b == "none" else f"baseline: {choice_label('baseline', b)}")
        return " · ".join([head, *parts])
    if algo == "ppo":
        return f"{head} · {'clip' if settings.get('variant', 'clip') == 'clip' else 'KL penalty'}"
    if algo == "a2c":
        return f"{head} · {choice_label('optimizer', settings.get('optimizer', 'rmsprop'))}"
    return head


# -- chart captions: (algo, metric) first, then ("*", metric); markdown with LaTeX ---------------
_PSI = r"\Psi_t"
CAPTIONS: dict[tuple[str, str], str] = {
    ("*", "rollout/return_last20"): (
        r"Return $G=\sum_t r_t$ of the episodes finished in each update (faint), and its "
        r"smoothed line; the dotted line is the environment's *solved* threshold."
    ),
    ("reinforce", "loss/policy"): (
        r"$L(\theta) = -\frac{1}{|D|}\sum_t \log\pi_\theta(a_t\mid s_t)\,"
        + _PSI
        + r"$: its level says nothing about performance; its gradient is the policy gradient."
    ),
    ("a2c", "loss/policy"): (
        r"$L(\theta) = -\mathbb{E}_t[\log\pi_\theta(a_t\mid s_t)\,\hat A_t]$ with GAE "
        r"advantages $\hat A_t$; only its gradient matters."
    ),
    ("ppo", "loss/policy"): (
        r"$L^{CLIP} = -\mathbb{E}_t[\min(\rho_t \hat A_t,\ \mathrm{clip}(\rho_t, 1-\epsilon, "
        r"1+\epsilon)\hat A_t)]$, $\rho_t = \pi_\theta(a_t|s_t)/\pi_{old}(a_t|s_t)$ "
        r"(KL penalty: $-\mathbb{E}[\rho_t\hat A_t] + \beta\,\mathrm{KL}$), mean over minibatches."
    ),
    ("trpo", "loss/policy"): (
        r"Surrogate $-\mathbb{E}_t[\rho_t \hat A_t]$ before the step; TRPO maximises it "
        r"subject to $\overline{\mathrm{KL}}(\pi_{old}\,\|\,\pi_\theta) \le \delta$."
    ),
    ("*", "loss/value"): (
        r"Critic error $\mathbb{E}_t[(V_\phi(s_t) - \hat R_t)^2]$ against its targets; it "
        r"grows with the scale of the returns."
    ),
    ("*", "diag/grad_var"): (
        r"Variance of the batch gradient $\operatorname{tr}\operatorname{Cov}(g_i)/m$, from "
        r"$m$ per-episode samples $g_i = \nabla_\theta\sum_t \log\pi_\theta(a_t|s_t)\,"
        + _PSI
        + r"$: what baselines and GAE lower."
    ),
    ("*", "diag/grad_snr"): (
        r"Signal-to-noise $\|\bar g\|^2 / (\operatorname{tr}\operatorname{Cov}(g_i)/m)$: "
        r"above 1 the mean direction beats the noise."
    ),
    ("ppo", "diag/approx_kl"): (
        r"How far an update moves the policy: $k_3 = \mathbb{E}_{old}[(\rho-1) - \log\rho]$ "
        r"on the last epoch. Healthy PPO: about 0.01-0.02."
    ),
    ("reinforce", "diag/approx_kl"): (
        r"How far one policy step moved the policy on the batch: "
        r"$k_3 = \mathbb{E}[(\rho-1)-\log\rho]$, $\rho = \pi_{new}/\pi_{old}$; large values "
        r"mean the learning rate is aggressive."
    ),
    ("a2c", "diag/approx_kl"): (
        r"How far one A2C step moved the policy on its rollout: "
        r"$k_3 = \mathbb{E}[(\rho-1)-\log\rho]$, $\rho = \pi_{new}/\pi_{old}$."
    ),
    ("trpo", "trpo/kl"): (
        r"$\overline{\mathrm{KL}}(\pi_{old}\,\|\,\pi_{new})$ of the accepted step; the line "
        r"search keeps it at or below $\delta$ (max KL)."
    ),
    ("ppo", "diag/clip_fraction"): (
        r"Share of samples with $|\rho_t - 1| > \epsilon$ (last epoch): they give no policy "
        r"gradient. Healthy: about 0.05-0.2."
    ),
    ("*", "policy/entropy"): (
        r"$H = -\mathbb{E}_s\sum_a \pi(a|s)\log\pi(a|s)$: the policy's randomness; it falls "
        r"as the policy commits."
    ),
    ("*", "diag/explained_variance"): (
        r"$1 - \mathrm{Var}(\hat R - V)/\mathrm{Var}(\hat R)$: 1 a perfect critic, 0 a "
        r"constant, below 0 worse than a constant."
    ),
    ("trpo", "trpo/line_search_ok"): (
        r"1 when the backtracking line search found a step that improves the surrogate "
        r"within $\delta$; 0 leaves the policy unchanged."
    ),
    ("*", "time/sps"): r"Env steps per second of training time (pauses left out).",
}


def chart_caption(algo: str, metric: str) -> str:
    """Markdown caption (with LaTeX) of a live chart for ``algo``; the metric table's
    one-liner where no specific one is written."""
    text = CAPTIONS.get((algo, metric)) or CAPTIONS.get(("*", metric))
    if text is None:
        from pglab import metrics

        text = metrics.describe(metric) or metric
    return text
