"""RLHF Lab: preferences -> reward model -> KL-regularised policy optimisation (or DPO),
measured against the exact optimum of a toy language world."""

import streamlit as st

from pglab import ui
from pglab.rlhf.config import GOLD_HELP, METHODS, WORLDS, RLHFConfig
from pglab.ui import rlhf as lab

ui.require_router()

st.title("RLHF Lab")
st.caption(
    "A language model small enough to solve exactly: every response is enumerated, so the "
    "optimum pi* ∝ pi_SFT exp(r/beta), every KL and the gold win rate are exact. Learn a reward "
    "model from preferences, fine-tune with REINFORCE, RLOO, PPO or GRPO under a KL leash, or "
    "run DPO on the same pairs, and watch the gold reward the proxy was meant to stand for."
)
registry = ui.registry_or_stop()

c_world, c_gold, c_pairs = st.columns([2, 1, 1])
world = c_world.selectbox("World", list(WORLDS), key="rlhf:world")
gold = c_gold.selectbox("Gold reward r*", list(GOLD_HELP), key="rlhf:gold")
c_gold.caption(GOLD_HELP[gold])
n_pairs = c_pairs.select_slider(
    "Preference pairs", [16, 32, 64, 128, 256, 1024, 4096], value=64, key="rlhf:pairs",
    help=ui.field_help(RLHFConfig.field("n_pairs")),
)  # fmt: skip
c_m, c_r, c_b, c_s = st.columns([2, 1, 1, 1])
methods = c_m.multiselect("Methods", METHODS, default=["rloo", "ppo", "dpo"], key="rlhf:methods")
reward = c_r.selectbox(
    "RL reward", ["model", "gold"], key="rlhf:reward",
    help="model: the reward model learned from the pairs; gold: r* itself (no reward model).",
)  # fmt: skip
beta = c_b.number_input(
    "beta", value=0.05, format="%.3f", step=0.01, key="rlhf:beta",
    help=ui.field_help(RLHFConfig.field("beta")),
)  # fmt: skip
n_seeds = c_s.number_input("Seeds", value=1, step=1, key="rlhf:seeds")
c_n, c_k = st.columns([1, 3])
budget = c_n.number_input(
    "Sample budget", value=int(RLHFConfig.field("total_steps").default), step=1000,
    key="rlhf:steps", help=ui.field_help(RLHFConfig.field("total_steps")),
)  # fmt: skip
page_fields = ("method", "reward", "gold", "n_pairs", "beta", *WORLDS[world])
with st.expander("More settings (budget, step size, k, clipping, KL estimator, ...)"):
    others = [f.name for f in RLHFConfig.fields() if f.name not in page_fields]
    knobs = ui.config_widgets(RLHFConfig, others)

settings = {**knobs, **WORLDS[world], "gold": gold, "n_pairs": n_pairs, "reward": reward,
            "beta": beta, "total_steps": budget}  # fmt: skip
try:
    base = RLHFConfig.from_dict({**settings, "method": "rloo", "k": max(2, int(knobs.get("k", 2)))})
    preview = lab.world_preview(base.to_json(), 0)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
if preview["rm"]:
    rm = preview["rm"]
    cols = st.columns(4)
    cols[0].metric("RM held-out accuracy", f"{rm['rm/heldout_accuracy']:.3f}",
                   help=f"r* itself scores {rm['rm/gold_heldout_accuracy']:.3f} on these noisy labels")  # fmt: skip
    cols[1].metric("RM train accuracy", f"{rm['rm/train_accuracy']:.3f}")
    cols[2].metric("corr(r, r*) on pi_SFT", f"{rm['rm/corr_sft']:.3f}")
    cols[3].metric("corr(r, r*) off it (uniform)", f"{rm['rm/corr_uniform']:.3f}",
                   help="Where the policy goes once it leaves pi_SFT: lower means hackable.")  # fmt: skip

if st.button("Launch", type="primary", icon=":material/rocket_launch:", key="rlhf:launch"):
    try:
        st.session_state["rlhf:runs"] = lab.launch_methods(registry, settings, methods, n_seeds)
    except ValueError as exc:  # names the field and the allowed range
        st.error(str(exc))

st.subheader("Live")
watched = st.session_state.get("rlhf:runs") or lab.latest_rlhf(registry)
active = lab.any_active(registry, watched)


@st.fragment(run_every=1.0 if active else None)
def live_panel() -> None:
    still = lab.render_rlhf_live(registry, watched, preview["frontier"])
    if active and not still:
        st.rerun()  # a full rerun switches the timer off once nothing runs


live_panel()

st.subheader("Win rate against pi_SFT (gold, ties half)")
st.dataframe(lab.win_rate_frame(registry, watched), hide_index=True, key="rlhf:winrate")
st.caption("Latest policy of each run; mean over seeds with a 95% bootstrap CI (n shown).")

with st.expander("Sample completions before and after", icon=":material/chat:", expanded=True):
    lab.completions_view(registry, watched)
