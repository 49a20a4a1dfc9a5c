"""Train: environment, algorithm + variant, preset, hyperparameters -> background runs, live."""

import streamlit as st

from pglab import labels, ui
from pglab.algos import get_trainer_class, make_config
from pglab.envs import available_envs, env_info

ui.require_router()

st.title("Train")
st.caption(
    "Pick an environment and an estimator, launch one run per seed in the background, and "
    "watch the diagnostics that explain why it learns (or does not)."
)
registry = ui.registry_or_stop()
algos = ui.available_algos()
if not algos:
    st.info("No training algorithm is available yet.")
    st.stop()

c_env, c_algo, c_preset = st.columns(3)
env_id = c_env.selectbox("Environment", available_envs(), key="train:env")
c_env.caption(env_info(env_id).summary)
algo = c_algo.selectbox(
    "Algorithm", algos, key="train:algo", format_func=lambda a: ui.ALGO_TITLES.get(a, a)
)
cls = get_trainer_class(algo).Config
presets = ui.presets_for(algo, env_id)
preset_key, steps_key = f"train:preset:{algo}:{env_id}", "train:steps"
preset = c_preset.selectbox(
    "Preset",
    ["(library defaults)", *presets],
    key=preset_key,
    on_change=ui.apply_preset,
    args=(cls, preset_key, steps_key, env_id),
    help="Published hyperparameters (e.g. RL Zoo) for this algorithm and environment.",
)
if preset in presets:
    c_preset.caption(f"{presets[preset].description} Source: {presets[preset].source}")

variant_fields = ui.VARIANT_FIELDS.get(algo, ())
variant = ui.config_widgets(cls, variant_fields) if variant_fields else {}
inactive = labels.inactive_fields(algo, ui.widget_settings(cls), env_id)
with st.expander("Hyperparameters (hover the ? for the equation each one changes)"):
    others = [f.name for f in cls.fields() if f.name not in variant_fields]
    knobs = ui.config_widgets(cls, others, inactive=inactive)
    if inactive:
        reasons: dict[str, list[str]] = {}
        for name, why in inactive.items():
            reasons.setdefault(why, []).append(labels.field_label(algo, name))
        st.caption(
            "Hidden, no effect here: "
            + "; ".join(f"{', '.join(n)} ({why})" for why, n in reasons.items())
        )

if steps_key not in st.session_state:
    st.session_state[steps_key] = int(cls.field("total_steps").default)
c1, c2, c3, c4, c5 = st.columns([1, 1, 1.4, 1, 1.2], vertical_alignment="bottom")
n_seeds = c1.number_input(
    "Seeds", value=1, step=1, key="train:seeds", help="Runs launched, one per seed (1 to 16)."
)
first_seed = c2.number_input("First seed", value=0, step=1, key="train:seed0")
steps = c3.number_input(
    "Step budget", step=10_000, key=steps_key, help=ui.field_help(cls.field("total_steps"))
)
device = c4.selectbox("Device", ui.device_options(), key="train:device")
launch = c5.button("Launch", type="primary", icon=":material/rocket_launch:", key="train:launch")

if launch:
    try:
        seeds = ui.check_seeds(n_seeds, first_seed)
        config = make_config(algo, {**variant, **knobs, "env_id": env_id, "total_steps": steps})
        group = f"{labels.variant_title(algo, config.to_dict())} · {env_id}"
        ids = ui.launch_group(registry, algo, config, seeds, device, group)
        ui.remember_launch(ids, registry.record(ids[0]).launch)
    except ValueError as exc:  # names the field, the value and the allowed range
        st.error(str(exc))
    else:
        st.rerun()  # the sidebar above was drawn before the launch: redraw it with the runs

st.subheader("Live")
watched, hidden = ui.watched_runs(registry)
frozen = st.toggle("Freeze the charts (training keeps going)", key="train:frozen")
active = any(
    (r := ui.safe_record(registry, i)) is not None and r.status in ui.ACTIVE for i in watched
)


# The controls refresh every 3 s in a timed fragment of their own: a click on Pause reruns
# only them, at once. The charts sit outside it, drawn by full reruns that the fragment asks
# for when they are due (ui.charts_due: every 6-15 s, ui.chart_period, or when a run ends):
# each 3 s refresh then re-renders a few progress bars in the browser, not ten charts and
# their captions, and the CPU it saves is the runs' on 2 cores. The fragment is called
# after the charts, into a slot above them, so in a full rerun it sees them just drawn.
controls = st.container()
smoothing, x_axis = ui.view_controls()
ui.render_charts(registry, watched, smoothing, x_axis)


# The sidebar's count has no timer of its own here (ui.sidebar_status(refresh=False) in
# app.py): this fragment asks for a full rerun when it changed, so the page has one timer.
ticking = active or bool(registry.active_ids())


@st.fragment(run_every=3.0 if ticking else None)
def live_controls() -> None:
    still_active = ui.render_controls(registry, watched, hidden)
    if active and not still_active:
        st.rerun()  # a full rerun switches the timer off once nothing runs
    if (not frozen and ui.charts_due(registry, watched)) or ui.sidebar_stale(registry):
        st.rerun()  # a full rerun redraws the charts and the sidebar


with controls:
    live_controls()

with st.expander("Watch the agent", icon=":material/movie:"):
    ui.watch_agent(registry, watched)
