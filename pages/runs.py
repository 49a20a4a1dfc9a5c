"""Runs: every run in the store; filter, delete, export, re-launch, import a config."""

import streamlit as st

from pglab import ui
from pglab.store import parse_config_json

ui.require_router()

st.title("Runs")
st.caption("Every run in the store, whether launched here, from the CLI or by an earlier session.")
registry = ui.registry_or_stop()
store = registry.store
records = store.list_runs()

f1, f2, f3, f4 = st.columns([1.2, 1, 1, 1.5])
statuses = f1.multiselect("Status", sorted({r.status for r in records}), key="runs:status")
algos = f2.multiselect("Algorithm", sorted({r.algo for r in records}), key="runs:algo")
envs = f3.multiselect("Environment", sorted({r.env_id for r in records}), key="runs:env")
text = f4.text_input("Name or group contains", key="runs:text").strip().lower()
shown = [
    r
    for r in records
    if (not statuses or r.status in statuses)
    and (not algos or r.algo in algos)
    and (not envs or r.env_id in envs)
    and (not text or text in r.name.lower() or text in (r.group or "").lower())
]
st.caption(f"{len(shown)} of {len(records)} runs · store: `{store.path}`")
if shown:
    st.dataframe(
        ui.runs_table(shown),
        hide_index=True,
        key="runs:table",
        column_config={
            "final return": st.column_config.NumberColumn(format="%.1f"),
            "time (s)": st.column_config.NumberColumn(format="%.1f"),
        },
    )
else:
    st.info("No runs match." if records else "No runs yet: launch some on the **Train** page.")

by_id = {r.id: r for r in shown}
selected = st.multiselect(
    "Act on runs",
    list(by_id),
    key="runs:selected",
    format_func=lambda i: ui.run_label(by_id[i]),
)
if selected:
    a1, a2, a3 = st.columns(3)
    if a1.button(f"Delete {len(selected)} run(s)", key="runs:delete", icon=":material/delete:"):
        st.session_state["runs:confirm"] = list(selected)
    if a2.button("Re-launch with the same config", key="runs:relaunch", icon=":material/replay:"):
        try:
            for i in selected:
                algo, cfg = parse_config_json(store.config_json(i))
                rec = by_id[i]
                registry.launch(algo, cfg, seed=rec.seed, device=rec.device, group=rec.group)
            st.success(f"Launched {len(selected)} run(s); watch them on **Train** or **Compare**.")
        except ValueError as exc:
            st.error(str(exc))
    first = by_id[selected[0]]
    with a3.popover("Export", icon=":material/download:"):
        st.caption(f"{first.name} ({first.id})")
        st.download_button(
            "Metrics (CSV)",
            lambda: store.metrics(first.id).to_csv(index=False),
            f"{first.name}-metrics.csv",
            "text/csv",
            key="runs:dl_metrics",
        )
        st.download_button(
            "Config (JSON)",
            ui.safe(store.config_json, first.id) or "",  # "" if the run was deleted meanwhile
            f"{first.name}-config.json",
            "application/json",
            key="runs:dl_config",
        )

pending = [i for i in st.session_state.get("runs:confirm", []) if i in by_id]
if pending:
    st.warning(
        f"Delete {len(pending)} run(s) with their metrics and checkpoints? This cannot be undone."
    )
    y, n, _ = st.columns([1, 1, 6])
    if y.button("Yes, delete", type="primary", key="runs:confirm_yes"):
        for i in pending:
            ui.safe(registry.delete, i)
        st.session_state["runs:confirm"] = []
        st.session_state.pop("runs:selected", None)
        st.rerun()
    if n.button("Cancel", key="runs:confirm_no"):
        st.session_state["runs:confirm"] = []
        st.rerun()

st.subheader("Import a config")
upload = st.file_uploader(
    "Config JSON (as exported above)",
    type=["json"],
    key="runs:upload",
)
if upload is not None:
    try:
        algo, cfg = parse_config_json(upload.getvalue())  # size, depth, duplicates checked
        st.code(cfg.to_json(), language="json")
        s1, s2 = st.columns([1, 3], vertical_alignment="bottom")
        seed = s1.number_input("Seed", 0, 2**31 - 1, value=0, step=1, key="runs:import_seed")
        if s2.button(f"Launch {algo} on {cfg.env_id}", type="primary", key="runs:import_go"):
            rid = registry.launch(algo, cfg, seed=int(seed))
            st.success(f"Launched run {rid}.")
    except ValueError as exc:
        st.error(str(exc))
