"""Gradient Lab: hold a policy fixed and measure policy-gradient estimators on the same episodes."""

import numpy as np
import streamlit as st

from pglab import compare, ui
from pglab.envs import SHORT_CORRIDOR_ID, available_envs

ui.require_router()

st.title("Gradient Lab")
st.markdown(
    r"Every estimator is $\hat g = \frac{1}{m}\sum_i \sum_t \nabla_\theta \log\pi_\theta(a^i_t"
    r"\mid s^i_t)\,\Psi^i_t$ and differs only in $\Psi_t$. Here the policy stays fixed: the lab "
    r"draws $K$ batches of $m$ episodes and computes every estimator on the *same* episodes, "
    r"so their variance, signal-to-noise ratio and bias can be compared directly."
)
try:
    from pglab.exact import short_corridor_curve, short_corridor_optimum
    from pglab.gradlab import ESTIMATORS, MAX_BATCHES, MAX_EPISODES
except ImportError as exc:
    st.info(f"The gradient lab engine is not available yet ({exc}).")
    st.stop()
registry = ui.registry_or_stop()
store_path = str(registry.store.path)

envs = available_envs()

# One click to the settings where the known biases rise above their CIs: a batch-mean baseline
# is biased by -1/m along g at gamma = 1, so m = 2 makes it -0.5, and K = 5000 batches shrink
# the CI to about +-0.16 (about 10 s on 2 cores).
BIAS_DEMO = {
    "gl:env": SHORT_CORRIDOR_ID,
    "gl:p": 0.5,
    "gl:m": 2,
    "gl:k": 5000,
    "gl:est": ["rtg", "rtg_const", "rtg_time", "rtg_loo"],
    "gl:value": "auto",
}


def _bias_demo() -> None:
    st.session_state.update(BIAS_DEMO)
    st.session_state["gl:autorun"] = True


if SHORT_CORRIDOR_ID in envs:
    st.button(
        "Show a known bias",
        icon=":material/target:",
        key="gl:demo",
        on_click=_bias_demo,
        help="Corridor, m = 2 episodes, K = 5000 batches: the batch-mean baselines (rtg_const, "
        "rtg_time) are biased by -1/m = -0.5 along the exact gradient; reward-to-go alone and "
        "leave-one-out are not. Takes about 10 s.",
    )
c1, c2, c3 = st.columns([1.3, 1.3, 1])
# FrozenLake by default: 64 policy directions, so the estimators' mean directions differ (the
# corridor's policy has one free direction, and every cosine there is +-1).
default_env = "FrozenLake-v1" if "FrozenLake-v1" in envs else SHORT_CORRIDOR_ID
env_id = c1.selectbox("Environment", envs, index=envs.index(default_env), key="gl:env")
ckpts = {
    r.id: r
    for r in registry.store.list_runs()
    if r.env_id == env_id and r.status in ("finished", "stopped")
}
source = c2.selectbox(
    "Policy",
    ["initial", *ckpts],
    key=f"gl:policy:{env_id}",
    format_func=lambda i: (
        "initial (untrained)" if i == "initial" else f"checkpoint: {ui.run_label(ckpts[i])}"
    ),
)
run_id = None if source == "initial" else source
p_right = None
if env_id == SHORT_CORRIDOR_ID and run_id is None:
    p_right = c3.slider(
        "π(right)",
        0.05,
        0.95,
        0.5,
        0.05,
        key="gl:p",
        help="The corridor's policy is one number: the probability of pressing right.",
    )

e1, e2, e3, e4, e5 = st.columns([3, 1, 1, 1, 1])
picked = e1.multiselect(
    "Estimators",
    list(ESTIMATORS),
    default=["total", "rtg", "rtg_const", "rtg_minvar", "rtg_value", "gae"],
    key="gl:est",
    help="\n\n".join(f"`{k}`: {v}" for k, v in ESTIMATORS.items()),
)
episodes = e2.number_input(
    "Batch size m (episodes)", 2, MAX_EPISODES // 2, value=16, step=8, key="gl:m"
)
batches = e3.number_input(
    "Batches K",
    1,
    MAX_BATCHES,
    value=100,
    step=50,
    key="gl:k",
    help="The bias CIs shrink as 1/sqrt(K): a bias of -1/m needs K in the thousands at small m "
    "(see **Show a known bias**).",
)
lam = e4.number_input("GAE λ", 0.0, 1.0, value=0.95, step=0.05, key="gl:lam", format="%g")
n_step = e5.number_input("n (n-step)", 1, 1000, value=5, step=1, key="gl:n")
value = st.radio(
    "Critic V(s) of the advantage estimators",
    ["auto", "exact", "fitted"],
    horizontal=True,
    key="gl:value",
    help="auto: exact on FrozenLake and the corridor (all advantages unbiased), else a value "
    "net fitted on separate episodes; 'fitted' on a finite MDP shows the bias a wrong critic "
    "gives TD(0), n-step and GAE.",
)
args = (store_path, env_id, run_id, p_right, int(episodes), int(batches), 0, tuple(picked))

if st.button("Measure", type="primary", icon=":material/science:", key="gl:go") or (
    st.session_state.pop("gl:autorun", False)
):
    st.session_state["gl:args"] = (*args, float(lam), int(n_step), value)
if st.session_state.get("gl:args") is None:
    st.info("Choose a policy and estimators, then press **Measure**.")
    st.stop()
try:
    result = ui.gradlab_run(*st.session_state["gl:args"])
except ValueError as exc:
    st.error(str(exc))
    st.stop()

table = result.table()
cis = [compare.bootstrap_variance_snr(s.batch_estimates.numpy()) for s in result.stats.values()]
for key in ("var_lo", "var_hi", "snr_lo", "snr_hi"):
    table[key] = [c[key] for c in cis]
ref = {"exact": "the exact gradient", "large_batch": "a large independent batch"}
st.caption(
    f"{result.env_id}: K = {result.batches} batches of m = {result.episodes} episodes "
    f"(mean length {result.mean_episode_length:.1f}), γ = {result.gamma:g}; bias measured "
    f"against {ref.get(result.reference_kind, 'nothing (no reference)')}. Error bars: 95% CIs."
)
if env_id == SHORT_CORRIDOR_ID:
    st.caption(
        "On the corridor every cosine is ±1: the policy has one free direction "
        "(θ_right − θ_left; every state looks the same), so every estimate lies on one line. "
        "Signed bias along g is the informative number here."
    )
b1, b2, b3 = st.columns(3)
with b1:
    ui.show_chart(
        ui.estimator_bars(table, "variance", "var_lo", "var_hi", "Variance tr Cov(ĝ) (log)", True),
        "gl:var",
    )
with b2:
    ui.show_chart(
        ui.estimator_bars(table, "snr", "snr_lo", "snr_hi", "SNR |E ĝ|² / Var (log)", True),
        "gl:snr",
    )
with b3:
    ui.show_chart(ui.bias_bars(table), "gl:bias")
st.caption(
    "Signed bias: the component of E ĝ − g along g, relative to |g| (−1/m for a batch-mean "
    "baseline at γ = 1). Bias norm: |E ĝ − g| / |g| in all directions, debiased for the noise; "
    "it needs many more batches than the signed component to rise above 0."
)
ui.show_chart(
    ui.estimator_bars(table, "rel_bias", "ci95_lo", "ci95_hi", "Bias norm |E ĝ − g| / |g|", False),
    "gl:bias_norm",
)
st.dataframe(
    table.drop(columns=["var_lo", "var_hi", "snr_lo", "snr_hi"]), hide_index=True, key="gl:table"
)

h1, h2 = st.columns(2)
with h1:
    means = {name: s.mean.numpy() for name, s in result.stats.items()}
    ui.show_chart(
        ui.heatmap(compare.cosine_matrix(means), "Cosine similarity of the mean estimates"),
        "gl:cos",
    )
with h2:
    if result.exact_grad is not None:
        st.markdown(f"**Exact gradient** (finite MDP solved exactly): J = {result.exact_J:.4f}")
        st.code(np.array2string(result.exact_grad.numpy(), precision=4, max_line_width=80))
    if env_id == SHORT_CORRIDOR_ID:
        p, J = short_corridor_curve(199, result.gamma)
        p_star, j_star = short_corridor_optimum(result.gamma)
        fig = ui.line_figure(
            [{"x": p, "y": J, "name": "J(p)", "color": ui.COLORS[0]}],
            title="Short corridor: J(p) = v(start) against p = π(right)",
            x_title="p = π(right)",
            y_title="J",
            height=300,
        )
        fig.update_yaxes(range=[max(float(J.min()), -100.0), 0])
        fig.add_vline(x=p_star, line_dash="dot", annotation_text=f"optimum p* = {p_star:.2f}")
        if p_right is not None:
            fig.add_scatter(
                x=[p_right],
                y=[result.exact_J],
                mode="markers",
                name="current policy",
                marker={"size": 12, "color": ui.COLORS[1]},
            )
        ui.show_chart(fig, "gl:corridor")

with st.expander("Variance against batch size, and bias & variance against GAE λ"):
    s1, s2 = st.columns(2)
    # Each sweep's result stays in the session until its inputs change: one never hides the other.
    if s1.button("Sweep batch size", key="gl:sweep_m"):
        st.session_state["gl:sweep:batch"] = (*args, value)
    if s2.button("Sweep GAE λ", key="gl:sweep_l"):
        st.session_state["gl:sweep:lambda"] = (*args, value)
    if st.session_state.get("gl:sweep:batch") == (*args, value):
        df = ui.gradlab_sweep("batch", *args, value)
        ui.show_chart(
            ui.sweep_figure(
                df,
                "batch_size",
                "variance",
                "Variance vs batch size m (dotted: the 1/m law through each first point)",
                "m (episodes, log)",
                True,
                inverse_reference=True,
            ),
            "gl:sweep_m_fig",
        )
    if st.session_state.get("gl:sweep:lambda") == (*args, value):
        df = ui.gradlab_sweep("lambda", *args, value)
        l1, l2 = st.columns(2)
        with l1:
            ui.show_chart(
                ui.sweep_figure(
                    df, "gae_lambda", "variance", "GAE: variance against λ", "λ", False
                ),
                "gl:sweep_l_var",
            )
        with l2:
            ui.show_chart(
                ui.sweep_figure(
                    df,
                    "gae_lambda",
                    "bias_along",
                    "GAE: signed bias along g against λ",
                    "λ",
                    False,
                    log_y=False,
                ),
                "gl:sweep_l_bias",
            )
