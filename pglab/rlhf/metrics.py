"""Every metric an RLHF Lab run reports: name -> (meaning, formula). TRL's names where TRL
has one; ``exact/*`` are enumerations over all V^L responses, means over prompts."""

from __future__ import annotations

METRICS: dict[str, tuple[str, str]] = {
    "exact/kl_to_optimum": (
        "How far the policy is from the optimum of its own objective (0 = solved)",
        "KL(pi_theta || pi*_beta), pi* ∝ pi_SFT exp(r/beta) (DPO: r = r*/T), enumerated",
    ),
    "exact/kl_to_sft": ("Distance travelled from pi_SFT", "KL(pi_theta || pi_SFT), enumerated"),
    "exact/gold_reward": ("What the policy is really worth", "E_{y~pi_theta}[r*(x, y)]"),
    "exact/proxy_reward": (
        "What the training reward thinks it is worth",
        "E_{y~pi_theta}[r(x, y)], r = reward model (or r* with reward=gold)",
    ),
    "exact/win_rate": (
        "Gold win rate against pi_SFT, ties half",
        "P[r*(y) > r*(y')] + 0.5 P[r*(y) = r*(y')], y ~ pi_theta, y' ~ pi_SFT",
    ),
    "exact/objective": ("The KL-regularised objective", "E_pi[r] - beta KL(pi || pi_SFT)"),
    "objective/kl": (
        "Sample estimate of the KL to pi_SFT (compare with the exact one)",
        "mean_i sum_t kl_t, kl_t = k1 or k3",
    ),
    "objective/scores": ("Mean training reward of the sampled responses", "mean_i r(x, y_i)"),
    "objective/rlhf_reward": (
        "Sample estimate of the objective",
        "mean_i (r(x, y_i) - beta sum_t kl_t)",
    ),
    "objective/entropy": ("Sample estimate of the policy's entropy", "mean_i -log pi(y_i|x)"),
    "rollout/gold_mean": ("Mean gold reward of the sampled responses", "mean_i r*(x, y_i)"),
    "loss/policy_avg": ("Policy loss of the method (see its file)", "mean over minibatches"),
    "loss/value_avg": ("PPO's value loss", "0.5 mean max((V-R)^2, (V_clip-R)^2)"),
    "policy/clipfrac": (
        "Fraction of tokens whose ratio left the clip range",
        "mean [|pi/pi_old - 1| > clip_coef]",
    ),
    "policy/approxkl_avg": (
        "PPO's KL between the new and the sampling policy",
        "0.5 mean (log rho)^2",
    ),
    "policy/grad_norm": ("Gradient norm before clipping", "||g||_2"),
    "val/ratio": ("Mean probability ratio of the updated to the sampling policy", "mean pi/pi_old"),
    "val/clipfrac_avg": (
        "Fraction of value predictions clipped",
        "mean [|V - V_old| > cliprange_value]",
    ),
    "rewards/chosen": (
        "DPO's implied reward of the chosen responses",
        "beta mean (log pi - log pi_SFT)(y_w)",
    ),
    "rewards/rejected": (
        "DPO's implied reward of the rejected responses",
        "beta mean (log pi - log pi_SFT)(y_l)",
    ),
    "rewards/margins": ("DPO's implied reward margin", "mean beta (h(y_w) - h(y_l))"),
    "rewards/accuracies": ("Pairs DPO ranks the right way", "mean [h(y_w) > h(y_l)]"),
    "loss/dpo": ("DPO (or IPO) loss", "-mean log sigma(beta (h(y_w) - h(y_l)))"),
    "time/env_steps": ("Responses sampled (DPO: scored) so far", "sum of batch sizes"),
    "time/wall_s": ("Seconds inside update() so far", "sum of update durations"),
    "time/updates": ("Updates done so far", "count"),
    "time/sps": ("Responses per second of the last update", "batch size / update duration"),
}


def caption(name: str) -> str:
    """One line for a chart caption: meaning (formula); empty for an unknown name."""
    m = METRICS.get(name)
    return f"{m[0]} ({m[1]})" if m else ""
