"""RLHF Lab: preferences -> reward model -> KL-regularised policy gradients, and DPO, on a toy
language world small enough to enumerate, so every run is measured against the exact optimum.

Data flow (one module each)::

    world.py        prompts, V^L responses, gold rewards r*, pi_SFT (a prefix MLP fitted to a corpus)
    exact.py        log pi(y|x) for all y, KL, E_pi[r], pi*_beta, win rate, the reward-vs-KL frontier
    preferences.py  pairs from pi_SFT labelled by Bradley-Terry on r*, the reward model r_phi
    common.py       the shared sampler, k1/k3 KL estimators, TRL's objective/* metrics
    reinforce.py, rloo.py, ppo.py, grpo.py, dpo.py   one method each: a pure loss + step()
    config.py       RLHFConfig (every knob, range and help text)
    trainer.py      RLHFTrainer: the run engine's trainer protocol, exact metrics every update
    metrics.py      every metric name with its meaning and formula
    report.py       the win-rate table (bootstrap CIs over seeds) and completions

No Streamlit here: the page's helpers are in :mod:`pglab.ui.rlhf`.
"""
