"""Home: what the lab is, a short guided tour, links to the pages."""

import streamlit as st

from pglab import ui

ui.require_router()

st.title("pglab: a policy-gradient lab")
st.markdown(
    """
Train **REINFORCE**, its variance-reduction tricks (reward-to-go, baselines, GAE, critics),
**A2C**, **PPO** and **TRPO** on classic-control tasks, watch live diagnostics, and see *why*
one estimator learns faster than another. Every knob carries the equation it changes; every
chart says what its number means.

All of them estimate the same gradient,
"""
)
st.latex(
    r"\nabla_\theta J(\theta) = \mathbb{E}_{\pi_\theta}\Big[\sum_t "
    r"\nabla_\theta \log \pi_\theta(a_t \mid s_t)\, \Psi_t\Big],"
)
st.markdown(
    r"""
and differ only in the weight $\Psi_t$ (total return, reward-to-go, minus a baseline, an
advantage estimate) and in how far one update may move the policy (PPO's clip, TRPO's trust
region). A better $\Psi_t$ does not change the expected gradient; it lowers its **variance**,
and lower variance means fewer samples for the same progress.
"""
)

st.subheader("A guided tour (15 minutes)")
tour = [
    (
        "pages/train.py",
        "Train",
        ":material/fitness_center:",
        "Pick CartPole, PPO and the *ppo-cartpole-zoo* preset, press **Launch**. Watch the return "
        "climb, the entropy fall and the clip fraction settle. Pause, resume, stop; then watch the "
        "agent balance the pole.",
    ),
    (
        "pages/compare.py",
        "Compare",
        ":material/monitoring:",
        "Launch the **variance-reduction ladder** (3 seeds each): REINFORCE with the total return, "
        "then reward-to-go, baselines, A2C with GAE and PPO. Read the bands: where they do not "
        "overlap, the difference is real.",
    ),
    (
        "pages/gradient_lab.py",
        "Gradient Lab",
        ":material/science:",
        "Hold the policy fixed and measure each estimator directly: variance, signal-to-noise "
        "ratio and bias against the exact gradient, and how the variance falls with batch size "
        "and GAE's lambda.",
    ),
    (
        "pages/runs.py",
        "Runs",
        ":material/folder_open:",
        "Every run ever trained (also from the CLI): filter, export metrics and config, re-launch "
        "a config or import one from a JSON file.",
    ),
]
for k, (path, title, icon, text) in enumerate(tour, start=1):
    c1, c2 = st.columns([1, 4], vertical_alignment="center")
    c1.page_link(path, label=f"{k}. {title}", icon=icon)
    c2.markdown(text)

st.divider()
st.caption(
    "Everything here is also a Python call or a CLI command (`python -m pglab --help`); runs "
    "live in one SQLite store (`$PGLAB_STORE`, default `~/.pglab/runs.sqlite`)."
)
