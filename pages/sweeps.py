"""Sweeps: a grid, an Optuna search or a many-seed study, live, ranked with CIs; promote a trial."""

import streamlit as st

from pglab import ui
from pglab.sweep import Sweep, parse_spec_text, view

ui.require_router()

st.title("Sweeps")
st.caption(
    "A sweep is a launch of many runs: every trial trains N seeds and is scored by the IQM of "
    "its seeds with a bootstrap 95% CI. Runs train in this lab's threads or on Ray (a local "
    "runtime, or a cluster by address). The same spec runs from the CLI: "
    "`python -m pglab sweep SPEC.json --executor ray --json`."
)
registry = ui.registry_or_stop()
store = registry.store


@st.cache_resource(show_spinner=False)
def live_sweeps(store_path: str) -> dict[str, Sweep]:
    """Sweeps started from this lab, by id (one dict per store, shared by all sessions)."""
    return {}


sweeps = live_sweeps(str(store.path))

with st.expander("New sweep", icon=":material/add:", expanded=not view.records(store, sweeps)):
    text = st.text_area("Spec (JSON)", value=view.EXAMPLE_SPEC, height=230, key="sw:spec")
    st.caption(
        '`grid` {field: [values]} or `search` {field: {"low", "high", "log"}} with `trials`; '
        "`seeds`, `budget` (steps a run), `objective` (final_iqm, auc, steps_to_threshold "
        "with `threshold`), `max_concurrent`."
    )
    c1, c2, c3 = st.columns([1, 2, 1], vertical_alignment="bottom")
    executor = c1.selectbox("Executor", ["local", "ray"], key="sw:executor")
    address = c2.text_input(
        "Ray cluster (HOST:PORT)",
        key="sw:address",
        placeholder="empty: a local Ray runtime with this machine's cores",
        disabled=executor != "ray",
    )
    if c3.button("Start sweep", type="primary", icon=":material/play_arrow:", key="sw:start"):
        try:
            spec = parse_spec_text(text)
            addr = (address.strip() or None) if executor == "ray" else None
            sweep = Sweep(spec, store, executor=executor, address=addr)
        except ValueError as exc:  # names the field; nothing started
            st.error(str(exc))
        else:
            sweep.start()
            sweeps[sweep.id] = sweep
            st.session_state["sw:pick"] = sweep.id

records = view.records(store, sweeps)
if not records:
    st.info("No sweep yet: write a spec above and start one, or run `python -m pglab sweep`.")
    st.stop()
labels = {r["launch"]: view.record_label(r) for r in records}
if st.session_state.get("sw:pick") not in labels:
    st.session_state["sw:pick"] = records[0]["launch"]
pick = st.selectbox("Sweep", list(labels), format_func=labels.get, key="sw:pick")
live = sweeps.get(pick)
every = 1.0 if live is not None and live.active else None


@st.fragment(run_every=every)
def sweep_panel() -> None:
    record = live.record() if live is not None else next(r for r in records if r["launch"] == pick)
    if live is not None and live.active:
        b1, b2, _ = st.columns([1, 1, 5])
        if live.status == "paused":
            b1.button("Resume", icon=":material/play_arrow:", key="sw:resume", on_click=live.resume)
        else:
            b1.button("Pause", icon=":material/pause:", key="sw:pause", on_click=live.pause)
        b2.button("Stop sweep", icon=":material/stop:", key="sw:stop", on_click=live.stop)
    done = sum(1 for t in record["trials"] if t["status"] not in ("queued", "running", "paused"))
    st.markdown(
        f"**{record['status']}** · {done} of {record['spec'].get('trials', len(record['trials']))} "
        f"trials ended · {len(record['seeds'])} seeds a trial · {record['budget']:,} steps a run "
        f"· executor `{record['executor']}`"
        + (f" at `{record['address']}`" if record["address"] else "")
    )
    if record.get("error"):
        st.error(record["error"])
    if record.get("optuna_storage"):
        st.caption(
            f"Optuna study `{record['launch']}`: `optuna-dashboard {record['optuna_storage']}`"
        )
    frame = view.trials_frame(record)
    if frame.empty:
        st.info("Starting: no trial yet.")
    else:
        if view.swept_fields(record) and frame["objective"].notna().any():
            st.plotly_chart(view.parallel_coordinates(record), key="sw:parcoords")
        st.dataframe(
            frame,
            hide_index=True,
            key="sw:table",
            column_config={
                "progress": st.column_config.ProgressColumn(
                    "progress", min_value=0.0, max_value=1.0
                ),
                "objective": st.column_config.NumberColumn(
                    view.OBJECTIVE_TITLES[record["objective"]], format="%.4g"
                ),
                "ci_low": st.column_config.NumberColumn("CI low (95%)", format="%.4g"),
                "ci_high": st.column_config.NumberColumn("CI high (95%)", format="%.4g"),
                "n": st.column_config.NumberColumn("n", help="seeds scored (finished runs)"),
            },
        )
    if every is not None and not live.active:
        st.rerun()  # a full rerun switches the timer off once the sweep has ended


sweep_panel()

record = live.record() if live is not None else next(r for r in records if r["launch"] == pick)
scored = [t for t in record["trials"] if t["objective"] is not None]
with st.expander("Promote a trial to a preset", icon=":material/star:"):
    if not scored:
        st.caption("No trial has an objective yet.")
    else:
        c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
        best = (record["best"] or scored[0])["number"]
        number = c1.selectbox(
            "Trial",
            [t["number"] for t in scored],
            index=[t["number"] for t in scored].index(best),
            format_func=lambda n: f"{n}: {record['trials'][n]['label']}",
            key="sw:promote_trial",
        )
        name = c2.text_input("Preset name", value=f"{record['launch']}-t{number}", key="sw:name")
        if c3.button("Promote", icon=":material/star:", key="sw:promote"):
            try:
                saved = view.promote(store, record, number, name)
            except ValueError as exc:
                st.error(str(exc))
            else:
                st.success(
                    f"Saved preset **{saved['name']}**: pick it under Preset on Train "
                    f"({saved['algo']} on {saved['env_id']})."
                )
