"""``RLHFConfig``: every knob of an RLHF Lab run, declared once (default, range, help) for the
CLI's ``--set``, the page's widgets and the run store. Shared fields of
:class:`pglab.config.BaseConfig` keep their meaning: ``total_steps`` is the budget of sampled
responses (DPO: responses scored, two per pair), ``learning_rate`` the policy's Adam step,
``gamma`` PPO's per-token discount, ``hidden_size``/``n_layers`` the policy MLP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pglab.config import BaseConfig, param
from pglab.rlhf.world import ENUM_CAP, GOLD_REWARDS, MAX_VOCAB, check_world

METHODS = ("reinforce", "rloo", "ppo", "grpo", "dpo")
# The method's own default where a field is None.
DEFAULT_KL_ESTIMATOR = {"reinforce": "k1", "rloo": "k1", "ppo": "k1", "grpo": "k3", "dpo": "k1"}
# PPO: TRL's num_ppo_epochs is 4; on this toy 4 full-batch passes at lr 1e-2 overfit each batch
# (14k samples to the criterion against 9k with 2), so the lab's default is 2.
DEFAULT_EPOCHS = {"ppo": 2, "grpo": 1}
# Worlds the page offers (any vocab_size/seq_len/n_prompts within the cap works from the CLI).
WORLDS: dict[str, dict[str, int]] = {
    "6 words, 4 tokens, 3 prompts (1,296 responses a prompt)": {
        "vocab_size": 6,
        "seq_len": 4,
        "n_prompts": 3,
    },
    "6 words, 3 tokens, 2 prompts (216 responses a prompt)": {
        "vocab_size": 6,
        "seq_len": 3,
        "n_prompts": 2,
    },
    "8 words, 4 tokens, 4 prompts (4,096 responses a prompt)": {
        "vocab_size": 8,
        "seq_len": 4,
        "n_prompts": 4,
    },
    "10 words, 3 tokens, 3 prompts (1,000 responses a prompt)": {
        "vocab_size": 10,
        "seq_len": 3,
        "n_prompts": 3,
    },
}
GOLD_HELP = {
    "sentiment": "#positive (good, great) - #bad - 2 x repeated tokens; max 2. Repetition is rare on pi_SFT: the hackable one.",
    "count": "number of 'good' tokens, 0..L.",
    "pattern": "positions matching the prompt's target sentence, 0..L.",
}


@dataclass(frozen=True)
class RLHFConfig(BaseConfig):
    algo: ClassVar[str] = "rlhf"
    unused_fields: ClassVar[tuple[str, ...]] = ("activation", "grad_diagnostics")

    env_id: str = param(
        "rlhf-toy",
        "The toy language world (its size: vocab_size, seq_len, n_prompts).",
        choices=("rlhf-toy",),
    )
    total_steps: int = param(
        16_000,
        "Budget of sampled responses (DPO: responses scored, two per pair per step).",
        low=1,
        high=10_000_000,
    )
    learning_rate: float = param(
        1e-2, "Adam step size of the policy (and PPO's value model).", low=1e-6, high=1.0, log=True
    )
    gamma: float = param(
        1.0, "PPO's per-token discount (1: the response is one episode).", low=0.0, high=1.0
    )
    hidden_size: int = param(64, "Units of the policy MLP's hidden layer.", low=4, high=512)
    n_layers: int = param(1, "Hidden layers of the policy MLP.", low=1, high=3)
    grad_diagnostics: bool = param(False, "Not used by RLHF runs.")

    method: str = param(
        "rloo",
        "Policy optimiser: reinforce, rloo, ppo, grpo (sample from pi_theta) or dpo (offline pairs).",
        choices=METHODS,
    )
    reward: str = param(
        "model",
        "What the RL methods maximise: the reward model learned from the pairs, or the gold "
        "reward itself (no reward model).",
        choices=("model", "gold"),
    )
    gold: str = param(
        "sentiment", "The hidden gold reward r*(x, y) that labels the pairs.", choices=GOLD_REWARDS
    )
    vocab_size: int = param(6, "Words in the vocabulary (V).", low=6, high=MAX_VOCAB)
    seq_len: int = param(
        4, f"Tokens per response (L); V^L must be at most {ENUM_CAP}.", low=1, high=12
    )
    n_prompts: int = param(3, "Prompts in the prompt set.", low=1, high=8)
    world_seed: int = param(
        0, "Seed of the world (corpus, pi_SFT, pattern targets).", low=0, high=2**31 - 1
    )
    n_pairs: int = param(
        64,
        "Preference pairs (the preference budget) for the reward model and DPO.",
        low=2,
        high=100_000,
    )
    label_temperature: float = param(
        1.0,
        "Bradley-Terry label temperature T (0: noiseless labels).",
        low=0.0,
        high=100.0,
        equation="p(y1 > y2) = sigma((r*(y1) - r*(y2)) / T)",
    )
    rm_hidden: int = param(32, "Hidden units of the reward model.", low=1, high=256)
    rm_steps: int = param(
        300, "Full-batch AdamW steps of reward-model training.", low=1, high=20_000
    )
    beta: float = param(
        0.05,
        "KL coefficient: how hard the policy is leashed to pi_SFT.",
        low=1e-3,
        high=100.0,
        log=True,
        equation="max E[r] - beta KL(pi || pi_SFT);  pi* ∝ pi_SFT exp(r / beta)",
    )
    kl_estimator: str | None = param(
        None,
        "Per-token KL estimator in the reward (GRPO: k3 in the loss, k1 in the score); none: "
        "the method's default (k3 for GRPO, k1 otherwise).",
        choices=("k1", "k3"),
    )
    k: int = param(
        16, "Responses sampled per prompt per update (RLOO/GRPO: the group).", low=1, high=1024
    )
    baseline: str = param("mean", "REINFORCE's baseline.", choices=("none", "mean"))
    clip_coef: float = param(0.2, "PPO/GRPO ratio clip range eps.", low=0.0, high=10.0)
    n_epochs: int | None = param(
        None,
        "Passes over each batch (PPO, GRPO); none: 2 for PPO (TRL: 4), 1 for GRPO (TRL's num_iterations).",
        low=1,
        high=50,
    )
    num_minibatches: int = param(1, "Minibatches per pass (PPO, GRPO).", low=1, high=64)
    gae_lambda: float = param(0.95, "PPO's GAE lambda.", low=0.0, high=1.0)
    vf_coef: float = param(0.1, "Weight of PPO's value loss.", low=0.0, high=100.0)
    cliprange_value: float = param(0.2, "PPO's value clip range.", low=0.0, high=100.0)
    scale_rewards: str = param(
        "group",
        "GRPO: divide by the group std (group) or not (none, Dr. GRPO).",
        choices=("group", "none"),
    )
    loss_type: str = param(
        "sigmoid", "DPO loss: sigmoid (DPO) or ipo (IPO).", choices=("sigmoid", "ipo")
    )
    dpo_batch_size: int | None = param(
        None, "Pairs per DPO step; none: all pairs (full batch).", low=1, high=100_000
    )
    anneal_lr: bool = param(
        True,
        "Decay the step size linearly to 0 over the budget (TRL's default linear schedule): "
        "the sampling noise floor of KL to pi* shrinks with the step size.",
        equation="lr_i = lr (1 - samples_i / total_steps)",
    )
    max_grad_norm: float = param(1.0, "Global gradient-norm clip.", low=1e-6, high=1e6)

    def validate(self) -> None:
        check_world(self.vocab_size, self.seq_len)
        if self.method in ("rloo", "grpo") and self.k < 2:
            raise ValueError(
                f"k: {self.k} is out of range for {self.method} (>= 2: it needs a group of samples)"
            )
        if (
            self.method == "dpo"
            and self.dpo_batch_size is not None
            and self.dpo_batch_size > self.n_pairs
        ):
            raise ValueError(
                f"dpo_batch_size: {self.dpo_batch_size} is out of range (<= n_pairs = {self.n_pairs})"
            )

    @property
    def kl(self) -> str:
        """The KL estimator in use (``kl_estimator`` or the method's default)."""
        return self.kl_estimator or DEFAULT_KL_ESTIMATOR[self.method]

    @property
    def epochs(self) -> int:
        return self.n_epochs or DEFAULT_EPOCHS.get(self.method, 1)
