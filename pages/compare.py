"""Compare: launches as groups of seeds, a line and 95% bootstrap band per group, a summary."""

import streamlit as st

from pglab import compare, ui
from pglab.envs import available_envs
from pglab.metrics import describe, label

ui.require_router()

st.title("Compare")
st.caption(
    "A group is one launch (a Launch click, a ladder rung, a `train --seeds` call), one run "
    "per seed. The line is the mean (or IQM) across seeds, the band its 95% bootstrap "
    "confidence interval, clipped to what the metric can reach; by default a group is drawn "
    "only where all its seeds have data. Overlapping bands mean the difference may be luck."
)
registry = ui.registry_or_stop()

with st.expander("Launch the variance-reduction ladder in one click", icon=":material/stairs:"):
    st.markdown(
        "REINFORCE with the total return → reward-to-go → + constant baseline → + value "
        "baseline → A2C with GAE → PPO: the same environment, budget and seeds for each rung, "
        "all in one launch, so one pick below brings the whole ladder back."
    )
    l1, l2, l3, l4 = st.columns([2, 1, 1.4, 1], vertical_alignment="bottom")
    ladder_env = l1.selectbox("Environment", available_envs(), key="cmp:ladder_env")
    ladder_seeds = l2.number_input("Seeds per rung", value=3, step=1, key="cmp:ladder_seeds")
    ladder_steps = l3.number_input("Step budget", value=50_000, step=10_000, key="cmp:ladder_steps")
    if l4.button("Launch ladder", type="primary", key="cmp:ladder_go"):
        try:
            seeds = ui.check_seeds(ladder_seeds, 0)
            launch, ids = ui.launch_ladder(registry, ladder_env, seeds, int(ladder_steps))
            st.session_state["cmp:launches"] = [launch]
            st.session_state["cmp:extra"] = []
            st.success(f"Launched {len(ids)} runs as launch {launch}; they appear below.")
        except ValueError as exc:
            st.error(str(exc))

records = [r for r in registry.store.list_runs() if r.algo != "rlhf"]  # RLHF Lab has its page
if not records:
    st.info("No runs in the store yet: train some on the **Train** page or launch the ladder.")
    st.stop()
by_id = {r.id: r for r in records}
launches = ui.launch_options(records)
if "cmp:launches" not in st.session_state:  # default: the newest launch
    st.session_state["cmp:launches"] = [next(iter(launches))]
st.session_state["cmp:launches"] = [x for x in st.session_state["cmp:launches"] if x in launches]
st.session_state["cmp:extra"] = [i for i in st.session_state.get("cmp:extra", []) if i in by_id]

ladders = ui.ladder_launches(records)
if ladders:
    st.button(
        "Show the newest ladder",
        key="cmp:ladder_reload",
        icon=":material/stairs:",
        on_click=lambda: st.session_state.update({"cmp:launches": [ladders[0]], "cmp:extra": []}),
    )
p1, p2 = st.columns([3, 2])
chosen_launches = p1.multiselect(
    "Launches",
    list(launches),
    key="cmp:launches",
    format_func=launches.get,
    placeholder="Choose launches: each brings all its runs",
)
extra = p2.multiselect(
    "Single runs",
    list(by_id),
    key="cmp:extra",
    format_func=lambda i: f"{by_id[i].name} · {i}",
    placeholder="Add runs one by one",
)
chosen = [r.id for r in records if compare.launch_of(r) in chosen_launches or r.id in extra]
if not chosen:
    st.info("Choose a launch (or single runs) above.")
    st.stop()
c1, c2, c3, c4, c5 = st.columns([1.2, 1.2, 1, 1, 1.2])
by = c1.selectbox(
    "Group by", list(compare.GROUP_BY), format_func=compare.GROUP_BY.get, key="cmp:by"
)
x_name = c2.radio("x axis", list(compare.X_AXES), key="cmp:x", horizontal=True)
stat = c3.radio(
    "Line",
    ["mean", "iqm"],
    key="cmp:stat",
    horizontal=True,
    format_func={"mean": "mean", "iqm": "IQM"}.get,
)
span = c4.radio(
    "Span",
    list(compare.SPANS),
    key="cmp:span",
    horizontal=True,
    help="common: only where every seed of a group has data; all: n varies",
)
show_ref = c5.toggle(
    "Reference bands",
    value=True,
    key="cmp:ref",
    help="The p10-p90 band of a 10-seed study of the preset a run came from",
)
all_metrics = st.toggle("Show every metric", key="cmp:all")
active = any(by_id[i].status in ui.ACTIVE for i in chosen)


@st.fragment(run_every=2.0 if active else None)
def results() -> None:
    recs = [r for r in (ui.safe_record(registry, i) for i in chosen) if r is not None]
    frames = ui.run_frames(registry, recs)
    groups = compare.make_groups(recs, by)
    names = compare.metric_columns(frames)
    if not names:
        st.info("The chosen runs have no metrics yet.")
        return
    default = names.index(compare.RETURN) if compare.RETURN in names else 0
    m1, m2 = st.columns([3, 1])
    metric = m1.selectbox("Metric", names, index=default, format_func=label, key="cmp:metric")
    thr_default = compare.default_threshold(groups, metric)
    threshold = m2.number_input(
        "Threshold",
        value=thr_default,
        key=f"cmp:thr:{metric}",
        help="'Steps to threshold': first env step the metric reaches it",
    )
    x = compare.X_AXES[x_name]
    curves = compare.group_curves(frames, groups, metric, x, span=span, stat=stat)
    behind = []
    if show_ref and metric == compare.RETURN and x == compare.STEPS:
        for band in ui.reference_bands_for(recs):
            behind += ui.reference_traces(band)
    fig = ui.band_figure(
        curves,
        title=label(metric),
        x_title=x_name,
        y_title=label(metric),
        log_y=metric.startswith("diag/grad_"),
        behind=behind,
        hline=threshold if metric == compare.RETURN else None,
    )
    ui.show_chart(fig, "cmp:main")
    st.caption(describe(metric))
    result = compare.summarize(frames, groups, metric, threshold)
    st.subheader("Summary")
    ui.show_table(compare.summary_table(result), "cmp:table")
    st.caption(compare.method_note(result))
    st.markdown(result["reading"])
    with st.expander(f"Runs ({len(recs)}), status now"):
        ui.show_table(ui.compare_runs_table(recs, groups), "cmp:runs_table")
    ui.compare_downloads(fig, result, compare.curves_frame(curves, x_name=x), metric)
    st.caption("For a PNG, use the camera button in the chart's toolbar.")
    if all_metrics:
        cols = st.columns(2)
        for k, other in enumerate(n for n in names if n != metric and not n.startswith("time/")):
            with cols[k % 2]:
                small = compare.group_curves(frames, groups, other, x, span=span, stat=stat)
                ui.show_chart(
                    ui.band_figure(
                        small,
                        title=label(other),
                        x_title=x_name,
                        log_y=other.startswith("diag/grad_"),
                        height=300,
                    ),
                    f"cmp:all:{other}",
                )
                st.caption(describe(other))


results()
