"""Reproduce: a textbook figure next to the lab's run, the published values marked, a verdict."""

import streamlit as st

from pglab import ui
from pglab.reproduce import (
    DEFAULT_RUNS,
    EXPERIMENTS,
    PROGRESS_TOTAL,
    TRAINED,
    V_STAR,
    moving_average,
    reproduce_to_store,
    smooth_window,
)

ui.require_router()

st.title("Reproduce")
st.markdown(
    "One click runs a published experiment in the lab, draws its curves with the published "
    "reference values marked, and says whether the result matches (the criterion is stated). "
    "The curves are stored as runs of one launch (see the Runs page)."
)
registry = ui.registry_or_stop()

c1, c2, c3 = st.columns([3, 1, 1])
name = c1.selectbox(
    "Experiment", list(EXPERIMENTS), format_func=lambda n: EXPERIMENTS[n][0], key="rep:name"
)
trained = name in TRAINED
runs = int(
    c2.number_input(
        "Seeds per setting" if trained else "Runs",
        min_value=1,
        max_value=1000,
        value=DEFAULT_RUNS[name],
        key=f"rep:runs:{name}",
    )
)
seed = int(c3.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="rep:seed"))

if st.button("Reproduce", type="primary", icon=":material/replay:", key="rep:go"):
    total = PROGRESS_TOTAL[name] * (runs if trained else 1)
    unit = "runs trained" if trained else "episode"
    bar = st.progress(0.0, text="Running...")
    rep, ids = reproduce_to_store(
        name,
        registry.store,
        runs,
        seed,
        progress=lambda n: bar.progress(min(n / total, 1.0), text=f"{unit} {n} of {total}"),
    )
    bar.empty()
    st.session_state["rep:last"] = (name, runs, seed, rep, ids)
last = st.session_state.get("rep:last")
if last is None or last[:3] != (name, runs, seed):
    st.info(
        "Choose an experiment and press **Reproduce**. The corridor figures take seconds; "
        "the CartPole experiments train PPO once per setting and seed (minutes)."
    )
    st.stop()
_, _, _, rep, ids = last

(st.success if rep.matches else st.warning)(rep.sentence())
st.caption(f"{rep.runs} runs; {rep.budget}; seeds: {rep.seeds}. Stored as runs {', '.join(ids)}.")
k = smooth_window(len(next(iter(rep.curves.values()))))
traces = []
for i, (label, curve) in enumerate(rep.curves.items()):
    raw = list(curve)
    smooth = moving_average(raw, k)
    color = ui.COLORS[i % len(ui.COLORS)]
    x = list(range(1, len(raw) + 1))
    traces.append(
        {
            "x": x,
            "y": raw,
            "name": f"{label} (raw)",
            "color": color,
            "opacity": 0.25,
            "showlegend": False,
        }
    )
    traces.append({"x": x, "y": smooth, "name": label, "color": color})
fig = ui.line_figure(
    traces,
    title=(
        f"{rep.title}: mean episode return per update, mean over {rep.runs} seeds"
        if trained
        else f"{rep.title}: total reward per episode, mean over {rep.runs} runs"
    ),
    x_title="update" if trained else "episode",
    y_title="mean episode return" if trained else "total reward on episode",
    height=420,
)
if not trained:
    fig.add_hline(y=V_STAR, line_dash="dot", annotation_text="v*(s0) = -11.6 (published)")
    fig.update_yaxes(range=[-90, -10])
ui.show_chart(fig, "rep:curves")
st.dataframe(
    [{"figure": key, "value": round(v, 3)} for key, v in rep.figures.items()],
    hide_index=True,
    key="rep:figures",
)
st.caption(f"Criterion: {rep.criterion}.")
st.dataframe(
    [{"published / exact reference": key, "value": v} for key, v in rep.references.items()],
    hide_index=True,
    key="rep:refs",
)
