"""Streamlit helpers shared by the pages: the only pglab package that imports streamlit.

- :func:`get_registry`: the process-wide run registry (``st.cache_resource``), one per store
  path so a test that points ``PGLAB_STORE`` elsewhere gets its own.
- :func:`config_widgets`: hyperparameter widgets generated from a config class's
  ``fields()`` specs (defaults, allowed range, help text with the equation).
- Chart helpers: plotly ``go.Scatter`` figures of fixed height, at most
  :data:`MAX_POINTS` points a trace, drawn under a stable key.
- :func:`render_controls` / :func:`render_charts`: the Train page's live panel: progress and
  Stop/Pause in a fragment that reruns every 3 s; health flags and charts (component
  iframes, :mod:`~pglab.ui.livecharts`, redrawn in place) drawn by the full reruns that
  fragment asks for when :func:`charts_due`; :func:`sidebar_status`: the sidebar's live count.

Worker threads never call ``st.*``: the panel pulls new points from the registry on each
rerun. ``st.session_state`` holds only UI choices (widget values, which runs to watch).

Modules, each named for its job: :mod:`~pglab.ui.common` (registry, store, safe calls),
:mod:`~pglab.ui.widgets` (widgets from the config schema), :mod:`~pglab.ui.charts`,
:mod:`~pglab.ui.live` (the live panel: buffers, reduction, health flags),
:mod:`~pglab.ui.livecharts` (its charts' component), :mod:`~pglab.ui.watch` (replay),
:mod:`~pglab.ui.compare` and :mod:`~pglab.ui.gradlab`. Pages use ``from pglab import ui`` and
``ui.NAME``: every public name is re-exported here.
"""

from pglab.compare import launch_ladder  # noqa: F401
from pglab.ui.charts import (  # noqa: F401
    band_figure,
    base_layout,
    caption_for,
    downsample,
    line_figure,
    line_spec,
    plain_text,
    reference_traces,
    rgba,
    show_chart,
)
from pglab.ui.common import (  # noqa: F401
    ACTIVE,
    ALGO_TITLES,
    CHART_HEIGHT,
    COLORS,
    MAX_POINTS,
    PAGE_FIELDS,
    PLOTLY_CONFIG,
    VARIANT_FIELDS,
    _registry_for,
    active_summary,
    available_algos,
    device_options,
    get_registry,
    get_store,
    install_host_check,
    presets_for,
    registry_or_stop,
    require_router,
    sidebar_stale,
    sidebar_status,
    steady_progress,
    store_error,
)
from pglab.ui.compare import (  # noqa: F401
    _stored_frame,
    compare_downloads,
    compare_runs_table,
    download_name,
    download_payloads,
    group_key,
    ladder_launches,
    launch_options,
    reference_bands_for,
    run_frames,
    show_table,
)
from pglab.ui.gradlab import (  # noqa: F401
    bias_bars,
    estimator_bars,
    gradlab_policy,
    gradlab_run,
    gradlab_sweep,
    heatmap,
    sweep_figure,
)
from pglab.ui.live import (  # noqa: F401
    CHART_POINTS,
    LIVE_CHARTS,
    X_AXES,
    _buffers_for,
    _controls,
    _LiveBuffers,
    charts_due,
    fmt_eta,
    live_columns,
    live_frame,
    progress_text,
    remember_launch,
    render_charts,
    render_controls,
    render_health,
    render_live,
    run_label,
    runs_table,
    safe,
    safe_record,
    view_controls,
    watched_runs,
)
from pglab.ui.watch import _replay, _replay_state, watch_agent  # noqa: F401
from pglab.ui.widgets import (  # noqa: F401
    _float_step,
    apply_preset,
    apply_settings,
    check_seeds,
    config_widgets,
    field_help,
    field_widget,
    hp_key,
    launch_group,
    variant_label,
    widget_settings,
)
