"""``RLHFTrainer``: an RLHF Lab run behind the run engine's trainer protocol.

Built from an :class:`~pglab.rlhf.config.RLHFConfig`: the world and pi_SFT, the preference
pairs and (unless ``reward="gold"``) the reward model, the policy pi_theta initialised from
pi_SFT and, for PPO, a value model. Each :meth:`update` is one step of the method (its file's
``step``) followed by the exact metrics of the new policy, computed by enumeration against
pi*_beta of the run's own reward (the learned reward, or r* with ``reward="gold"``; for DPO
the optimum of its population loss, pi*_beta of r*/T)::

    exact/kl_to_optimum  KL(pi_theta || pi*_beta)          exact/kl_to_sft  KL(pi_theta || pi_SFT)
    exact/gold_reward    E_pi[r*]                         exact/proxy_reward E_pi[r] (training reward)
    exact/win_rate       P[r*(y) > r*(y_SFT)] + 0.5 P[=]  exact/objective    E_pi[r] - beta KL

all means over prompts. ``time/env_steps`` counts sampled responses (the ``samples`` budget).
The engine wraps :meth:`env_step` (the sampler) so a stop lands between two samplings.
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from typing import Any, ClassVar

import torch
from torch import Tensor

from pglab.algos.base import NonFiniteError
from pglab.rlhf import exact as E
from pglab.rlhf.config import RLHFConfig
from pglab.rlhf.preferences import Pairs, label_pairs, reward_model_report, train_reward_model
from pglab.rlhf.world import WorldSpec, enumerated_token_log_probs, make_world

CRITERION_KL = 0.05  # nats, mean over prompts: "reached the optimum" for tests and the bench
_INIT_LOCK = threading.Lock()


class RLHFTrainer:
    """RLHF on the toy world: REINFORCE, RLOO, PPO, GRPO or DPO against the exact optimum."""

    name: ClassVar[str] = "rlhf"
    Config: ClassVar[type[RLHFConfig]] = RLHFConfig

    def __init__(self, config: RLHFConfig, seed: int = 0, device: str = "cpu"):
        if not isinstance(config, RLHFConfig):
            raise TypeError(f"rlhf needs an RLHFConfig, got {type(config).__name__}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
            raise ValueError(f"seed: {seed!r} is not allowed (an integer in [0, 2147483647])")
        if device not in ("cpu", "auto"):
            raise ValueError(
                f"device: {device!r} is not allowed for rlhf (cpu: the toy world is tiny)"
            )
        self.config, self.seed, self.device = config, seed, torch.device("cpu")
        self.method = config.method
        self.kl_estimator = config.kl
        self.n_epochs = config.epochs
        self.generator = torch.Generator().manual_seed(seed)
        self.world = make_world(
            WorldSpec(config.vocab_size, config.seq_len, config.n_prompts, config.world_seed)
        )
        w = self.world
        self.gold = w.gold(config.gold)  # [P, N]
        t0 = time.perf_counter()
        # Pairs are drawn from their own stream so every method of one seed sees the same pairs.
        pair_gen = torch.Generator().manual_seed(1_000_003 + seed)
        self.pairs: Pairs | None = label_pairs(
            w, self.gold, config.n_pairs, config.label_temperature, pair_gen
        )
        held_out = label_pairs(w, self.gold, 1000, config.label_temperature, pair_gen)
        self.rm_report: dict[str, float] = {}
        if config.reward == "gold":
            self.reward = self.gold
        else:
            rm = train_reward_model(
                w, self.pairs, steps=config.rm_steps, hidden_size=config.rm_hidden, seed=seed
            )
            self.reward_model = rm
            self.reward = rm.table(w)
            self.rm_report = reward_model_report(w, self.reward, self.gold, self.pairs, held_out)
        self.rm_wall_s = time.perf_counter() - t0
        # The yardstick pi*_beta of the run's own objective. DPO optimises no reward: the
        # optimum of its population loss under BT labels at temperature T is pi*_beta of r*/T
        # (T = 0: of r* itself, as a stand-in for the degenerate limit).
        self.target = self.reward
        if self.method == "dpo":
            T = config.label_temperature
            self.target = self.gold / T if T > 0 else self.gold
        self.opt_logp = E.optimum_log_probs(w.sft_logp, self.target, config.beta)  # [P, N]
        with _INIT_LOCK:  # weight init from the global RNG: one trainer at a time
            state = torch.random.get_rng_state()
            torch.manual_seed(seed)
            self.policy = w.new_policy()
            self.policy.load_state_dict(w.sft.state_dict())
            self.value_model = w.new_policy(out_size=1) if self.method == "ppo" else None
            torch.random.set_rng_state(state)
        self.params = list(self.policy.parameters())
        self.value_params = list(self.value_model.parameters()) if self.value_model else []
        self.opt = torch.optim.Adam(self.params + self.value_params, lr=config.learning_rate)
        self._step = importlib.import_module(f"pglab.rlhf.{self.method}").step
        self.env_steps = 0
        self.updates = 0
        self.wall_s = 0.0
        self.samples_to_criterion: int | None = None
        self.wall_to_criterion: float | None = None
        self.last: dict[str, float] = {}
        self._refresh()
        self.initial = self.exact_metrics()

    # -- the engine's protocol ----------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.env_steps >= self.config.total_steps

    def env_step(self, n: int) -> Tensor:
        """The sampler: ``n`` response indices per prompt ``[P, n]`` drawn from pi_theta, or
        for DPO ``n`` pair indices ``[n]`` (all pairs, in order, when ``n`` is their number)."""
        if self.method == "dpo":
            assert self.pairs is not None
            M = len(self.pairs)
            if n >= M:
                return torch.arange(M)
            return torch.randint(0, M, (n,), generator=self.generator)
        return torch.multinomial(self.logp.exp(), n, replacement=True, generator=self.generator)

    def update(self) -> dict[str, float]:
        t0 = time.perf_counter()
        if self.config.anneal_lr:
            frac = 1.0 - self.env_steps / self.config.total_steps
            for group in self.opt.param_groups:
                group["lr"] = frac * self.config.learning_rate
        metrics = self._step(self)
        self._refresh()
        dt = time.perf_counter() - t0
        samples = int(metrics.pop("samples"))
        self.env_steps += samples
        self.updates += 1
        self.wall_s += dt
        metrics.update(self.exact_metrics())
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise NonFiniteError(
                    f"{name} became {value} at update {self.updates} - try a smaller learning rate"
                )
        if self.samples_to_criterion is None and metrics["exact/kl_to_optimum"] <= CRITERION_KL:
            self.samples_to_criterion, self.wall_to_criterion = self.env_steps, self.wall_s
        metrics["time/env_steps"] = float(self.env_steps)
        metrics["time/updates"] = float(self.updates)
        metrics["time/wall_s"] = self.wall_s
        metrics["time/sps"] = samples / max(dt, 1e-9)
        self.last = metrics
        return metrics

    def check_finite(self, name: str, value: Tensor) -> None:
        if not torch.isfinite(value).all():
            raise NonFiniteError(
                f"{name} became NaN/Inf at update {self.updates + 1} - try a smaller learning rate"
            )

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "policy": self.policy.state_dict(),
            "reward": self.reward.clone(),
            "target": self.target.clone(),
            "env_steps": self.env_steps,
        }
        if self.value_model is not None:
            state["value"] = self.value_model.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.value_model is not None and "value" in state:
            self.value_model.load_state_dict(state["value"])
        self._refresh()

    def close(self) -> None:
        """Nothing to release (no environments, no files)."""

    # -- exact quantities ---------------------------------------------------------------------
    @torch.no_grad()
    def _refresh(self) -> None:
        """Enumerate the current policy: per-token ``token_logp [P, N, L]`` and ``logp [P, N]``."""
        self.token_logp = enumerated_token_log_probs(self.policy, self.world.n_prompts)
        self.logp = self.token_logp.sum(-1)

    def exact_metrics(self) -> dict[str, float]:
        """The exact metrics of the current policy (module docstring), means over prompts."""
        w, lp, beta = self.world, self.logp, self.config.beta
        return {
            "exact/kl_to_optimum": float(E.kl(lp, self.opt_logp).mean()),
            "exact/kl_to_sft": float(E.kl(lp, w.sft_logp).mean()),
            "exact/gold_reward": float(E.expectation(lp, self.gold).mean()),
            "exact/proxy_reward": float(E.expectation(lp, self.reward).mean()),
            "exact/win_rate": float(E.win_rate(lp, w.sft_logp, self.gold).mean()),
            "exact/objective": float(E.objective(lp, w.sft_logp, self.target, beta).mean()),
        }

    def frontier(self, betas: Tensor | None = None) -> dict[str, dict[str, list[float]]]:
        """The exact reward-vs-KL paths of pi*_beta: for the gold reward (the frontier) and
        for this run's training reward (where a perfect optimiser of it would go)."""
        b = E.default_betas() if betas is None else betas
        w = self.world
        return {
            "gold": E.frontier(w.sft_logp, self.gold, self.gold, b),
            "proxy": E.frontier(w.sft_logp, self.reward, self.gold, b),
        }


def policy_tables(config: RLHFConfig, state: dict[str, Any]) -> dict[str, Any]:
    """Everything the completions view needs from a stored run, without retraining its
    reward model: the world, ``logp`` tables ``[P, N]`` for pi_SFT, pi_theta (from the
    checkpoint or live weights ``state``) and pi*_beta of the run's reward, and r*, r."""
    world = make_world(
        WorldSpec(config.vocab_size, config.seq_len, config.n_prompts, config.world_seed)
    )
    policy = world.new_policy()
    policy.load_state_dict(state["policy"])
    reward = state["reward"]
    target = state.get("target", reward)
    with torch.no_grad():
        theta = E.sequence_log_probs(policy, world)
    return {
        "world": world,
        "logps": {
            "pi_SFT": world.sft_logp,
            "pi_theta": theta,
            "pi*": E.optimum_log_probs(world.sft_logp, target, config.beta),
        },
        "gold": world.gold(config.gold),
        "reward": reward,
    }
