"""Compare: groups of runs (seeds) as mean curves with 95% bands, and a summary table."""

import streamlit as st

from pglab import compare, ui
from pglab.algos import make_config
from pglab.envs import available_envs, env_info
from pglab.metrics import describe, label

ui.require_router()

st.title("Compare")
st.caption(
    "Every curve is the mean over the seeds of a group; the shaded band is the 95% confidence "
    "interval of that mean (Student t, n seeds). Overlapping bands mean the difference may be "
    "luck."
)
registry = ui.registry_or_stop()

with st.expander("Launch the variance-reduction ladder in one click", icon=":material/stairs:"):
    st.markdown(
        "REINFORCE with the total return → reward-to-go → + constant baseline → + value "
        "baseline → A2C with GAE → PPO: the same environment, budget and seeds for each rung."
    )
    l1, l2, l3, l4 = st.columns([2, 1, 1.4, 1], vertical_alignment="bottom")
    ladder_env = l1.selectbox("Environment", available_envs(), key="cmp:ladder_env")
    ladder_seeds = l2.number_input("Seeds per rung", value=3, step=1, key="cmp:ladder_seeds")
    ladder_steps = l3.number_input("Step budget", value=50_000, step=10_000, key="cmp:ladder_steps")
    if l4.button("Launch ladder", type="primary", key="cmp:ladder_go"):
        try:
            from pglab.presets import ladder

            seeds = ui.check_seeds(ladder_seeds, 0)
            rungs = [
                (
                    lab,
                    algo,
                    make_config(algo, {**s, "env_id": ladder_env, "total_steps": ladder_steps}),
                )
                for lab, algo, s in ladder(ladder_env, int(ladder_steps))
            ]  # every rung validated before anything starts
            ids = []
            for lab, algo, cfg in rungs:
                ids += ui.launch_group(registry, algo, cfg, seeds, "cpu", f"{lab} · {ladder_env}")
            st.session_state["cmp:runs"] = ids
            st.success(f"Launched {len(ids)} runs; they appear below as they train.")
        except ImportError:
            st.info("The ladder (pglab.presets) is not available yet.")
        except ValueError as exc:
            st.error(str(exc))

records = [r for r in registry.store.list_runs() if r.algo != "rlhf"]  # RLHF Lab has its page
if not records:
    st.info("No runs in the store yet: train some on the **Train** page or launch the ladder.")
    st.stop()
by_id = {r.id: r for r in records}
if "cmp:runs" not in st.session_state:  # default: the newest group
    newest = records[0].group or records[0].name
    st.session_state["cmp:runs"] = [r.id for r in records if (r.group or r.name) == newest]
st.session_state["cmp:runs"] = [i for i in st.session_state["cmp:runs"] if i in by_id]

p1, p2 = st.columns([4, 1])
chosen = p1.multiselect(
    "Runs",
    list(by_id),
    key="cmp:runs",
    format_func=lambda i: ui.run_label(by_id[i]),
    placeholder="Choose runs to compare",
)
by = p2.selectbox("Group by", ["launch group", "algorithm", "each run"], key="cmp:by")
if not chosen:
    st.info("Choose runs above.")
    st.stop()
c2, c3 = st.columns([1.2, 1])
x_name = c2.radio("x axis", list(compare.X_AXES), key="cmp:x", horizontal=True)
envs = {by_id[i].env_id for i in chosen}
default_thr = env_info(next(iter(envs))).reward_threshold if len(envs) == 1 else None
threshold = c3.number_input(
    "Return threshold",
    value=default_thr,
    key=f"cmp:thr:{sorted(envs)}",
    help="'Steps to threshold' = first env step where the mean of the last 20 returns reaches it.",
)
all_metrics = st.toggle("Show every metric", key="cmp:all")
active = any(by_id[i].status in ui.ACTIVE for i in chosen)


@st.fragment(run_every=2.0 if active else None)
def results() -> None:
    recs = [r for r in (ui.safe_record(registry, i) for i in chosen) if r is not None]
    frames = ui.run_frames(registry, recs)
    groups = {r.id: ui.group_key(r, by) for r in recs}
    names = compare.metric_columns(frames)
    if not names:
        st.info("The chosen runs have no metrics yet.")
        return
    default = names.index(compare.RETURN) if compare.RETURN in names else 0
    metric = st.selectbox("Metric", names, index=default, format_func=label, key="cmp:metric")
    x = compare.X_AXES[x_name]
    log_y = metric.startswith("diag/grad_")
    bands = compare.group_bands(frames, groups, metric, x)
    fig = ui.band_figure(
        bands,
        title=label(metric),
        x_title=x_name,
        y_title=label(metric),
        log_y=log_y,
        hline=threshold if metric == compare.RETURN else None,
    )
    ui.show_chart(fig, "cmp:main")
    st.caption(describe(metric))
    table = compare.summary_table(frames, groups, threshold)
    st.subheader("Summary")
    st.dataframe(table, hide_index=True, key="cmp:table")
    d1, d2, _ = st.columns([1, 1, 3])
    d1.download_button(
        "Figure (HTML)",
        lambda: fig.to_html(include_plotlyjs="cdn"),
        "pglab-compare.html",
        "text/html",
        key="cmp:dl_fig",
        icon=":material/download:",
    )
    d2.download_button(
        "Table (CSV)",
        table.to_csv(index=False),
        "pglab-summary.csv",
        "text/csv",
        key="cmp:dl_csv",
        icon=":material/download:",
    )
    st.caption("For a PNG, use the camera button in the chart's toolbar.")
    if all_metrics:
        cols = st.columns(2)
        for k, name in enumerate(n for n in names if n != metric and not n.startswith("time/")):
            with cols[k % 2]:
                small = ui.band_figure(
                    compare.group_bands(frames, groups, name, x),
                    title=label(name),
                    x_title=x_name,
                    log_y=name.startswith("diag/grad_"),
                    height=300,
                )
                ui.show_chart(small, f"cmp:all:{name}")
                st.caption(describe(name))


results()
