"""Reproduce: a textbook figure next to the lab's run, the published values marked, a verdict."""

import streamlit as st

from pglab import ui
from pglab.reproduce import (
    DEFAULT_RUNS,
    EXPERIMENTS,
    TRAINED,
    V_STAR,
    Job,
    moving_average,
    smooth_window,
)

ui.require_router()


@st.cache_resource(show_spinner=False)
def jobs() -> dict[str, Job]:
    """The reproductions started in this server process, by launch id (they outlive a rerun)."""
    return {}


st.title("Reproduce")
st.markdown(
    "One click runs a published experiment in the lab, in the background, draws its curves "
    "with the published reference values marked, and says whether the result matches (the "
    "criterion is stated). The curves are stored as runs of one launch (see the Runs page)."
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

job_id = st.session_state.get("rep:job")
job = jobs().get(job_id) if job_id else None
busy = job is not None and job.running
if st.button("Reproduce", type="primary", icon=":material/replay:", key="rep:go", disabled=busy):
    try:
        job = Job(name, registry.store, runs, seed).start()
    except ValueError as exc:  # names the field and the allowed range
        st.error(str(exc))
        st.stop()
    jobs()[job.launch] = job
    st.session_state["rep:job"] = job.launch
    st.session_state["rep:job_key"] = (name, runs, seed)
    busy = True


@st.fragment(run_every=1.0 if busy else None)
def live() -> None:
    assert job is not None
    unit = "runs trained" if job.name in TRAINED else "episode"
    if job.running:
        st.progress(
            min(job.done / job.total, 1.0),
            text=f"{job.name}: {unit} {job.done} of {job.total} (launch {job.launch})",
        )
        if st.button("Stop", icon=":material/stop:", key="rep:stop"):
            job.stop()
    elif busy:
        st.rerun()  # a full rerun draws the result and switches the timer off


if job is not None:
    live()
if job is None or st.session_state.get("rep:job_key") != (name, runs, seed):
    st.info(
        "Choose an experiment and press **Reproduce**. The corridor figures take seconds; "
        "the CartPole experiments train PPO once per setting and seed (minutes)."
    )
    st.stop()
if job.running:
    st.stop()
if job.status == "failed":
    st.error(f"The reproduction failed: {job.error}")
    st.stop()
rep, ids = job.result, job.ids
assert rep is not None
if job.status == "stopped":
    st.warning(f"Stopped after {job.done} of {job.total}: the figures below are partial.")

if not rep.curves:
    st.stop()
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
