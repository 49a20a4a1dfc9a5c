"""Streamlit helpers shared by the pages: the only pglab module that imports streamlit.

- :func:`get_registry`: the process-wide run registry (``st.cache_resource``), one per store
  path so a test that points ``PGLAB_STORE`` elsewhere gets its own.
- :func:`config_widgets`: hyperparameter widgets generated from a config class's
  ``fields()`` specs (defaults, allowed range, help text with the equation).
- Chart helpers: plotly ``go.Scatter`` figures of fixed height, at most
  :data:`MAX_POINTS` points a trace, drawn under a stable key.
- :func:`render_live`: the Train page's live panel (progress, Stop/Pause, charts); the page
  wraps it in ``st.fragment(run_every=...)``.

Worker threads never call ``st.*``: the panel pulls new points from the registry on each
rerun. ``st.session_state`` holds only UI choices (widget values, which runs to watch).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pglab import metrics as M
from pglab.config import BaseConfig, FieldInfo

MAX_POINTS = 2000  # per trace: more points cost browser time and show nothing new
CHART_HEIGHT = 260
ACTIVE = frozenset({"queued", "running", "paused"})
COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)  # fmt: skip
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}

# Fields that say *which* estimator or variant is trained: shown next to the algorithm
# picker instead of among the tuning knobs.
VARIANT_FIELDS: dict[str, tuple[str, ...]] = {
    "reinforce": ("psi", "baseline", "batch_mode"),
    "a2c": ("optimizer",),
    "ppo": ("variant",),
    "trpo": (),
}
PAGE_FIELDS = ("env_id", "total_steps")  # chosen by the page's own widgets


# -- long-lived objects ------------------------------------------------------------------------
def require_router() -> None:
    """Make a page opened by direct URL go through ``app.py``'s ``st.navigation``.

    Streamlit decides once per process whether the app is an old-style ``pages/``-folder app.
    Until ``app.py`` has called ``st.navigation``, a first visit straight to ``/train`` runs
    ``pages/train.py`` alone, without the router's layout and sidebar. Each page calls this
    first: in that mode it clears the (private) flag and runs ``app.py`` in its place, in the
    same script run, so widget events of this run (a button click) are not lost.
    """
    import runpy
    from pathlib import Path

    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
        st.stop()


@st.cache_resource(show_spinner=False)
def _registry_for(store_path: str) -> Any:
    from pglab.engine import Registry
    from pglab.store import Store

    return Registry(Store(store_path))


def get_registry() -> Any:
    """The run registry of the current store (``$PGLAB_STORE``), shared by all sessions."""
    from pglab.store import default_store_path

    return _registry_for(str(default_store_path()))


def get_store() -> Any:
    return get_registry().store


def registry_or_stop() -> Any:
    """The registry, or an explanation and ``st.stop()`` when the engine cannot be loaded."""
    try:
        return get_registry()
    except ImportError as exc:
        st.info(f"The run engine is not available yet ({exc}).")
        st.stop()
    except ValueError as exc:  # e.g. a store of a newer schema
        st.error(str(exc))
        st.stop()


def device_options() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


ALGO_TITLES = {
    "reinforce": "REINFORCE (Monte-Carlo policy gradient)",
    "a2c": "A2C (advantage actor-critic)",
    "ppo": "PPO (proximal policy optimisation)",
    "trpo": "TRPO (trust-region policy optimisation)",
}


def available_algos() -> list[str]:
    """Algorithms whose trainer module imports (all four in a complete install)."""
    from pglab.algos import ALGO_NAMES, get_trainer_class

    out = []
    for algo in ALGO_NAMES:
        try:
            get_trainer_class(algo)
        except ImportError:
            continue
        out.append(algo)
    return out


def presets_for(algo: str, env_id: str) -> dict[str, Any]:
    """Presets of ``algo`` on ``env_id`` by name ({} if the presets module is missing)."""
    try:
        from pglab import presets
    except ImportError:
        return {}
    return {p.name: p for p in presets.presets_for(algo, env_id)}


def apply_preset(
    config_cls: type[BaseConfig], preset_key: str, steps_key: str, env_id: str
) -> None:
    """``on_change`` of a preset picker: load the preset's settings into the widgets."""
    name = st.session_state.get(preset_key)
    preset = presets_for(config_cls.algo, env_id).get(name)
    settings = dict(preset.settings) if preset is not None else {}
    apply_settings(config_cls, settings)
    st.session_state[steps_key] = int(
        settings.get("total_steps", config_cls.field("total_steps").default)
    )


# -- hyperparameter widgets ----------------------------------------------------------------------
def hp_key(algo: str, name: str) -> str:
    return f"hp:{algo}:{name}"


def field_help(info: FieldInfo) -> str:
    """Help text of a widget: what it does, the equation it changes, what it accepts."""
    parts = [info.spec.help]
    if info.spec.equation:
        parts.append(f"`{info.spec.equation}`")
    allowed = info.spec.describe() + (" or empty (off)" if info.optional else "")
    parts.append(f"Allowed: {allowed}. Default: `{info.default}`.")
    return "\n\n".join(parts)


def _float_step(value: float) -> float:
    """A number_input step one decade below the value's leading digit (0.99 -> 0.01)."""
    if not value or not math.isfinite(value):
        return 0.001
    return 10.0 ** (math.floor(math.log10(abs(value))) - 1)


def apply_settings(config_cls: type[BaseConfig], settings: dict[str, Any]) -> None:
    """Put ``settings`` (missing keys: defaults) into the widgets' session state."""
    for info in config_cls.fields():
        if info.name in PAGE_FIELDS:
            continue
        value = settings.get(info.name, info.default)
        if info.type is float and value is not None and not isinstance(value, bool):
            value = float(value)
        st.session_state[hp_key(config_cls.algo, info.name)] = value


def field_widget(algo: str, info: FieldInfo, container: Any = st) -> Any:
    """One widget for one config field; its value lives under ``hp_key(algo, name)``.

    Widgets do not clamp to the allowed range: the config validates on Launch and names the
    field, the value and the range, so the rule lives in one place.
    """
    key = hp_key(algo, info.name)
    if key not in st.session_state:
        st.session_state[key] = (
            float(info.default) if info.type is float and info.default is not None else info.default
        )
    helptext = field_help(info)
    spec = info.spec
    if spec.log and info.type is float:
        # Step sizes span decades (3e-4, 1e-2): a text field typed as "3e-4" keeps every
        # digit, where a number input's float formatting can round a small value to 0.
        value = st.session_state[key]
        if not isinstance(value, str):
            st.session_state[key] = "" if value is None else f"{value:g}"
        return container.text_input(info.name, key=key, help=helptext)
    if spec.choices is not None:
        return container.selectbox(info.name, list(spec.choices), key=key, help=helptext)
    if info.type is bool:
        return container.checkbox(info.name, key=key, help=helptext)
    if info.type is int:
        return container.number_input(info.name, step=1, key=key, help=helptext)
    if info.type is float:
        default = info.default if isinstance(info.default, float) else 0.0
        return container.number_input(
            info.name,
            step=_float_step(default),
            format="%g",
            key=key,
            help=helptext,
            placeholder="empty = off" if info.optional else None,
        )
    return container.text_input(info.name, key=key, help=helptext)


def config_widgets(
    config_cls: type[BaseConfig], names: Iterable[str] | None = None, columns: int = 3
) -> dict[str, Any]:
    """Widgets for ``names`` (default: every field but the page's own) in a grid; returns
    ``{name: value}`` as the widgets hold them (validation happens in the config)."""
    infos = {i.name: i for i in config_cls.fields()}
    hidden = (*PAGE_FIELDS, *config_cls.unused_fields)
    wanted = [n for n in (names or infos) if n in infos and n not in hidden]
    cols = st.columns(columns)
    return {
        name: field_widget(config_cls.algo, infos[name], cols[k % columns])
        for k, name in enumerate(wanted)
    }


def check_seeds(n_seeds: Any, first_seed: Any) -> list[int]:
    """Seeds ``first, first+1, ...``; ValueError naming the field when out of range."""
    if not isinstance(n_seeds, int) or not 1 <= n_seeds <= 16:
        raise ValueError(f"seeds: {n_seeds!r} is out of range (in [1, 16])")
    if not isinstance(first_seed, int) or not 0 <= first_seed < 2**31 - 16:
        raise ValueError(f"first seed: {first_seed!r} is out of range (in [0, 2147483631])")
    return list(range(first_seed, first_seed + n_seeds))


def launch_group(
    registry: Any,
    algo: str,
    config: BaseConfig,
    seeds: Sequence[int],
    device: str,
    group: str,
) -> list[str]:
    """Launch one run per seed under one group label; returns the run ids.

    The config is validated before this is called, so a bad field starts nothing.
    """
    return [
        registry.launch(algo, config, seed=s, device=device, name=f"{group} s{s}", group=group)
        for s in seeds
    ]


def variant_label(algo: str, settings: dict[str, Any]) -> str:
    """``reinforce rtg+value`` style label of an algorithm and its variant fields."""
    parts = [str(settings[f]) for f in VARIANT_FIELDS.get(algo, ()) if f in settings]
    return f"{algo} {'+'.join(parts)}".strip() if parts else algo


# -- charts --------------------------------------------------------------------------------------
def downsample(
    x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Every k-th point (plus the last) so a trace has at most ``max_points`` points."""
    n = len(x)
    if n <= max_points:
        return x, y
    idx = np.unique(np.r_[np.linspace(0, n - 1, max_points - 1).astype(np.int64), n - 1])
    return x[idx], y[idx]


def rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def base_layout(title: str, x_title: str, y_title: str, log_y: bool, height: int) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 36, "b": 10},
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}, "type": "log" if log_y else "linear"}
        | ({"dtick": 1, "exponentformat": "power"} if log_y else {}),
        "legend": {"orientation": "h", "y": -0.25, "x": 0},
        "hovermode": "x unified",
        "uirevision": title,  # keep the user's zoom across live updates
    }


def line_figure(
    traces: Sequence[dict[str, Any]],
    *,
    title: str,
    x_title: str = "env steps",
    y_title: str = "",
    log_y: bool = False,
    height: int = CHART_HEIGHT,
    hline: float | None = None,
) -> go.Figure:
    """Lines from ``traces`` (dicts: x, y, name, color; optional width, opacity, showlegend)."""
    data = []
    for t in traces:
        x, y = downsample(np.asarray(t["x"], dtype=float), np.asarray(t["y"], dtype=float))
        if log_y:
            y = np.where(y > 0, y, np.nan)  # log axes cannot show <= 0
        data.append(
            {
                "type": "scatter",
                "x": x,
                "y": y,
                "name": t["name"],
                "mode": "lines",
                "line": {"color": t["color"], "width": t.get("width", 2)},
                "opacity": t.get("opacity", 1.0),
                "showlegend": t.get("showlegend", True),
                "legendgroup": t.get("legendgroup", t["name"]),
                "connectgaps": True,
            }
        )
    layout = base_layout(title, x_title, y_title, log_y, height)
    if hline is not None:  # in the layout dict: add_hline() deep-copies the whole figure
        layout["shapes"] = [
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": hline, "y1": hline,
             "line": {"dash": "dot", "color": "gray", "width": 1}}
        ]  # fmt: skip
        layout["annotations"] = [
            {"xref": "paper", "x": 1, "y": hline, "text": "solved", "showarrow": False,
             "xanchor": "right", "yanchor": "bottom", "font": {"color": "gray"}}
        ]  # fmt: skip
    # The traces are plain, well-formed dicts: skipping plotly's per-property validation
    # (as plotly.express does) halves the cost of a live rerun's ten charts.
    return go.Figure(data=data, layout=layout, _validate=False)


def band_figure(
    bands: Sequence[Any],
    *,
    title: str,
    x_title: str = "env steps",
    y_title: str = "",
    log_y: bool = False,
    height: int = 420,
    hline: float | None = None,
) -> go.Figure:
    """Mean line and shaded 95% band per group (:class:`pglab.compare.Band`)."""
    data = []
    for k, b in enumerate(bands):
        color = COLORS[k % len(COLORS)]
        x, mean = downsample(b.x, b.mean)
        _, low = downsample(b.x, b.low)
        _, high = downsample(b.x, b.high)
        if log_y:
            low = np.where(low > 0, low, np.nan)
        ok = np.isfinite(low) & np.isfinite(high)
        if ok.any():
            data.append(
                go.Scatter(
                    x=np.r_[x[ok], x[ok][::-1]],
                    y=np.r_[high[ok], low[ok][::-1]],
                    fill="toself",
                    fillcolor=rgba(color, 0.18),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=b.group,
                    name=f"{b.group} 95% CI",
                )
            )
        data.append(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines",
                name=f"{b.group} (n={int(b.n.max())})",
                line={"color": color, "width": 2},
                legendgroup=b.group,
            )
        )
    layout = base_layout(title, x_title, y_title, log_y, height)
    layout["legend"] = {"orientation": "v", "x": 1.01, "y": 1}
    layout["margin"]["r"] = 10
    fig = go.Figure(data=data, layout=layout)
    if hline is not None:
        fig.add_hline(y=hline, line_dash="dot", line_color="gray", annotation_text="threshold")
    return fig


def show_chart(fig: go.Figure, key: str) -> None:
    """Draw at the figure's fixed height under a stable key (no remount, no flicker)."""
    st.plotly_chart(
        fig, key=key, height=int(fig.layout.height or CHART_HEIGHT), config=PLOTLY_CONFIG
    )


def caption_for(name: str) -> str:
    return M.describe(name) or name


# -- live metrics --------------------------------------------------------------------------------
class _LiveBuffers:
    """Columnar copies of each run's metric rows, grown incrementally with a cursor.

    Shared across sessions (a run's curve is the same for every viewer); guarded by a lock
    because several sessions' fragments may pull at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[int, dict[str, list[float]], int]] = {}

    def frame(self, registry: Any, run_id: str) -> pd.DataFrame:
        with self._lock:
            cursor, cols, n = self._runs.get(run_id, (0, {}, 0))
            try:  # the registry's memory for its own runs, the store for older ones
                rows, cursor = registry.snapshot(run_id, cursor)
            except ValueError:  # deleted meanwhile
                rows = []
            for row in rows:
                for name in row.keys() - cols.keys():
                    cols[name] = [math.nan] * n
                for name, col in cols.items():
                    col.append(row.get(name, math.nan))
                n += 1
            self._runs[run_id] = (cursor, cols, n)
            return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in cols.items()})

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)


@st.cache_resource(show_spinner=False)
def _buffers_for(store_path: str) -> _LiveBuffers:
    return _LiveBuffers()


def live_frame(registry: Any, run_id: str) -> pd.DataFrame:
    """All metric rows of ``run_id`` so far (columns = metric names), read incrementally."""
    return _buffers_for(str(registry.store.path)).frame(registry, run_id)


# (title, metrics, log scale): the live panel's small multiples after the return chart.
LIVE_CHARTS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("Policy loss", ("loss/policy",), False),
    ("Value loss", ("loss/value",), False),
    ("Gradient variance (log)", ("diag/grad_var",), True),
    ("Gradient SNR (log)", ("diag/grad_snr",), True),
    ("Approx. KL", ("diag/approx_kl",), False),
    ("Clip fraction", ("diag/clip_fraction",), False),
    ("Entropy", ("policy/entropy",), False),
    ("Explained variance", ("diag/explained_variance",), False),
    ("Steps per second", ("time/sps",), False),
)


def fmt_eta(eta_s: float | None) -> str:
    if eta_s is None or not math.isfinite(eta_s):
        return "ETA -"
    if eta_s < 60:
        return f"ETA {eta_s:.0f} s"
    return f"ETA {eta_s / 60:.1f} min"


def _controls(registry: Any, rec: Any, frame: pd.DataFrame) -> None:
    """Progress bar with ETA, status, Pause/Resume and Stop for one run.

    ``ETA = (total_steps - env_steps) / SPS`` with SPS = env steps per training second so far
    (the same rule as ``Registry.progress``, from the rows already read: no extra query).
    """
    frac, steps = rec.fraction, rec.env_steps
    eta = ""
    if rec.status in ("running", "paused") and len(frame) and "time/wall_s" in frame.columns:
        wall = float(frame["time/wall_s"].iloc[-1])
        sps = float(frame["time/env_steps"].iloc[-1]) / wall if wall > 0 else 0.0
        eta = fmt_eta(max(0, rec.total_steps - steps) / sps if sps > 0 else None)
    ret = "-" if rec.final_return is None else f"{rec.final_return:.1f}"
    text = f"**{rec.name}** · {rec.status} · {steps:,}/{rec.total_steps:,} steps · return {ret}"
    bar, pause, stop = st.columns([8, 1, 1], vertical_alignment="bottom")
    bar.progress(min(1.0, max(0.0, float(frac))), text=f"{text} · {eta}" if eta else text)
    if rec.status in ("running", "queued"):
        pause.button("Pause", key=f"pause:{rec.id}", on_click=registry.pause, args=(rec.id,))
    elif rec.status == "paused":
        pause.button("Resume", key=f"resume:{rec.id}", on_click=registry.resume, args=(rec.id,))
    if rec.status in ACTIVE:
        stop.button("Stop", key=f"stop:{rec.id}", on_click=registry.stop, args=(rec.id,))
    if rec.status == "failed":
        st.error(f"{rec.name} failed: {rec.error or 'no reason recorded'}")
    elif rec.status == "interrupted":
        st.warning(f"{rec.name} was interrupted: {rec.error or ''}")


def render_live(registry: Any, run_ids: Sequence[str], key: str = "live") -> bool:
    """Draw progress, controls and the live charts of ``run_ids``; True if any is active."""
    records = [r for r in (safe_record(registry, i) for i in run_ids) if r is not None]
    if not records:
        st.info("No runs to show yet: choose settings above and press **Launch**.")
        return False
    frames = {r.id: live_frame(registry, r.id) for r in records}
    for rec in records:
        _controls(registry, rec, frames[rec.id])
    colors = {r.id: COLORS[k % len(COLORS)] for k, r in enumerate(records)}

    def traces(metric: str, **style: Any) -> list[dict[str, Any]]:
        out = []
        for r in records:
            f = frames[r.id]
            if metric in f.columns and "time/env_steps" in f.columns:
                ok = np.isfinite(f[metric].to_numpy())
                if ok.any():
                    out.append(
                        {
                            "x": f["time/env_steps"].to_numpy()[ok],
                            "y": f[metric].to_numpy()[ok],
                            "name": r.name,
                            "color": colors[r.id],
                            **style,
                        }
                    )
        return out

    from pglab.envs import env_info

    raw = traces("rollout/ep_return_mean", width=1, opacity=0.35, showlegend=False)
    smooth = traces("rollout/return_last20", width=2.5)
    threshold = env_info(records[0].env_id).reward_threshold
    fig = line_figure(
        raw + smooth,
        title="Episode return: raw (faint) and mean of the last 20 episodes",
        y_title="return",
        height=320,
        hline=threshold if len({r.env_id for r in records}) == 1 else None,
    )
    show_chart(fig, f"{key}:return")
    st.caption(caption_for("rollout/return_last20"))
    cols = st.columns(3)
    k = 0
    for title, names, log_y in LIVE_CHARTS:
        data = traces(names[0])
        if not data:
            continue  # a metric the algorithm does not report is absent, not zero
        with cols[k % 3]:
            for d in data:
                d["showlegend"] = False
            show_chart(line_figure(data, title=title, log_y=log_y), f"{key}:{names[0]}")
            st.caption(caption_for(names[0]))
        k += 1
    return any(r.status in ACTIVE for r in records)


def safe_record(registry: Any, run_id: str) -> Any:
    """The run's freshest record, or None if it was deleted."""
    try:
        return registry.record(run_id)
    except ValueError:
        return None


def runs_table(records: Iterable[Any]) -> pd.DataFrame:
    """Runs page / pickers: one row per run record."""
    now = time.time()
    rows = []
    for r in records:
        end = r.ended_at or (now if r.status in ACTIVE and r.started_at else None)
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "group": r.group or "",
                "status": r.status,
                "algo": r.algo,
                "env": r.env_id,
                "seed": r.seed,
                "steps": r.env_steps,
                "budget": r.total_steps,
                "final return": r.final_return,
                "time (s)": (end - r.started_at) if end and r.started_at else None,
                "created": pd.Timestamp(r.created_at, unit="s").strftime("%Y-%m-%d %H:%M"),
            }
        )
    return pd.DataFrame(rows)


def run_label(r: Any) -> str:
    return f"{r.name} · {r.status} · {r.id}"


def safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a ValueError becomes an on-screen error (never a traceback)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        st.error(str(exc))
        return None


# -- watch the agent -----------------------------------------------------------------------------
def _replay_state(rec: Any, state: dict[str, Any], seed: int) -> tuple[bytes, float, int]:
    from pglab.replay import actor_from_checkpoint, replay_gif

    actor = actor_from_checkpoint(rec.algo, rec.config, state)
    gif, rep = replay_gif(actor, rec.env_id, seed=seed)
    return gif, rep.ret, rep.length


@st.cache_data(show_spinner="Rolling out one episode...", max_entries=32)
def _replay(
    store_path: str, run_id: str, ended_at: float | None, seed: int
) -> tuple[bytes, float, int]:
    """GIF bytes, return and length of one episode of an ended run's checkpointed policy.

    ``ended_at`` is part of the cache key so a re-saved checkpoint is rolled out afresh.
    """
    store = _registry_for(store_path).store
    rec = store.get_run(run_id)
    state = store.load_checkpoint(run_id)
    if rec is None or state is None:
        raise ValueError(f"run: {run_id} has no saved policy (one is saved when it ends)")
    return _replay_state(rec, state, seed)


def watch_agent(registry: Any, run_ids: Sequence[str], key: str = "watch") -> None:
    """'Watch the agent': an animated greedy episode of a run's current or final policy."""
    from pglab.replay import renders_rgb

    records = [r for r in (safe_record(registry, i) for i in run_ids) if r is not None]
    ready = [r for r in records if r.status in ("running", "paused", "finished", "stopped")]
    if not ready:
        st.caption("Once a run is training you can watch its current policy here.")
        return
    c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
    by_id = {r.id: r for r in ready}
    run_id = c1.selectbox(
        "Run", list(by_id), format_func=lambda i: run_label(by_id[i]), key=f"{key}:run"
    )
    rec = by_id[run_id]
    seed = c2.number_input("Episode seed", value=0, step=1, key=f"{key}:seed")
    go_ = c3.button("Watch", key=f"{key}:go", icon=":material/play_arrow:")
    if not renders_rgb(rec.env_id):
        st.info(f"{rec.env_id} cannot draw itself as an image, so there is nothing to watch.")
        return
    live = rec.status in ("running", "paused")
    if go_ or (not live and st.session_state.get(f"{key}:shown") == (rec.id, seed)):
        try:
            if live:  # the policy as it is now, copied between two updates
                state = registry.policy_state(rec.id)
                if state is None:
                    raise ValueError(f"run: {rec.id} has no policy to show yet")
                with st.spinner("Rolling out one episode..."):
                    gif, ret, length = _replay_state(rec, state, int(seed))
            else:
                gif, ret, length = _replay(
                    str(registry.store.path), rec.id, rec.ended_at, int(seed)
                )
        except ValueError as exc:
            st.error(str(exc))
            return
        st.session_state[f"{key}:shown"] = (rec.id, seed)
        when = f"at {rec.env_steps:,} steps (still training)" if live else "final policy"
        st.image(
            gif, caption=f"{rec.name}, {when}: one greedy episode, return {ret:g} in {length} steps"
        )


# -- run frames for Compare ----------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def _stored_frame(store_path: str, run_id: str, ended_at: float | None) -> pd.DataFrame:
    """A finished run's metrics; ``ended_at`` in the key so a re-written run is re-read."""
    return _registry_for(store_path).store.metrics(run_id)


def run_frames(registry: Any, records: Sequence[Any]) -> dict[str, pd.DataFrame]:
    """Metrics per run id: cached for ended runs, read incrementally for active ones."""
    path = str(registry.store.path)
    return {
        r.id: live_frame(registry, r.id)
        if r.status in ACTIVE
        else _stored_frame(path, r.id, r.ended_at)
        for r in records
    }


def group_key(r: Any, by: str) -> str:
    """Group label of a run for Compare: its launch group, algorithm, or the run itself."""
    if by == "algorithm":
        return f"{r.algo} · {r.env_id}"
    if by == "each run":
        return r.name
    return r.group or r.name


# -- gradient lab --------------------------------------------------------------------------------
def gradlab_policy(
    store_path: str, env_id: str, run_id: str | None, p_right: float | None
) -> tuple[dict | None, dict | None]:
    """``(policy_config, policy_state)`` for :func:`pglab.gradlab.run_gradlab`.

    A run's checkpoint gives its MLP weights and shape; on the short corridor without a run,
    ``p_right`` = pi(right) sets the tabular policy ``theta = [0, logit p]`` (softmax).
    """
    if run_id is not None:
        store = _registry_for(store_path).store
        rec, state = store.get_run(run_id), store.load_checkpoint(run_id)
        if rec is None or state is None:
            raise ValueError(
                f"policy: run {run_id} has no saved policy (one is saved when it ends)"
            )
        cfg = {
            "kind": "mlp",
            **{
                k: rec.config[k]
                for k in ("hidden_size", "n_layers", "activation")
                if k in rec.config
            },
        }
        if "log_std_init" in rec.config and "log_std" in state["policy"]:
            cfg["log_std_init"] = rec.config["log_std_init"]
        return cfg, state["policy"]
    if p_right is not None:
        if not 0.0 < p_right < 1.0:
            raise ValueError(f"pi(right): {p_right} is out of range (in (0, 1))")
        return {"kind": "tabular", "theta": [[0.0, math.log(p_right / (1.0 - p_right))]]}, None
    return None, None


@st.cache_resource(show_spinner="Measuring the estimators on the same episodes...", max_entries=8)
def gradlab_run(
    store_path: str,
    env_id: str,
    run_id: str | None,
    p_right: float | None,
    episodes: int,
    batches: int,
    seed: int,
    estimators: tuple[str, ...],
    gae_lambda: float,
    n_step: int,
) -> Any:
    """:func:`pglab.gradlab.run_gradlab`, cached by its arguments (results are read-only)."""
    from pglab.gradlab import run_gradlab

    cfg, state = gradlab_policy(store_path, env_id, run_id, p_right)
    return run_gradlab(
        env_id,
        episodes=episodes,
        batches=batches,
        seed=seed,
        estimators=list(estimators),
        gae_lambda=gae_lambda,
        n_step=n_step,
        policy_config=cfg,
        policy_state=state,
    )


@st.cache_resource(show_spinner="Sweeping...", max_entries=8)
def gradlab_sweep(
    kind: str,
    store_path: str,
    env_id: str,
    run_id: str | None,
    p_right: float | None,
    episodes: int,
    batches: int,
    seed: int,
    estimators: tuple[str, ...],
) -> pd.DataFrame:
    """Variance against batch size (``kind="batch"``) or GAE lambda (``kind="lambda"``)."""
    from pglab.gradlab import sweep_batch_size, sweep_lambda

    cfg, state = gradlab_policy(store_path, env_id, run_id, p_right)
    common = {"policy_config": cfg, "policy_state": state}
    if kind == "batch":
        sizes = sorted({max(2, episodes // 4), max(2, episodes // 2), episodes, episodes * 2})
        return sweep_batch_size(env_id, sizes, list(estimators), batches, seed, **common)
    lambdas = [0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0]
    return sweep_lambda(env_id, lambdas, batches=batches, episodes=episodes, seed=seed, **common)


def estimator_bars(
    table: pd.DataFrame, value: str, lo: str, hi: str, title: str, log_y: bool
) -> go.Figure:
    """Bars of one statistic per estimator with asymmetric 95% error bars."""
    v = table[value].to_numpy(dtype=float)
    lows = table[lo].to_numpy(dtype=float)
    if log_y:  # a log axis cannot draw a bar end at <= 0: stop the bar just above zero
        lows = np.where(lows > 0, lows, v * 1e-3)
    fig = go.Figure(
        go.Bar(
            x=table["estimator"],
            y=v,
            marker_color=[COLORS[k % len(COLORS)] for k in range(len(v))],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": np.clip(table[hi].to_numpy(dtype=float) - v, 0, None),
                "arrayminus": np.clip(v - lows, 0, None),
            },
            hovertext=table.get("description"),
        ),
        layout=base_layout(title, "", "", log_y, 300),
    )
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def heatmap(frame: pd.DataFrame, title: str) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=frame.to_numpy(),
            x=list(frame.columns),
            y=list(frame.index),
            zmin=-1,
            zmax=1,
            colorscale="RdBu",
            texttemplate="%{z:.2f}",
        ),
        layout=base_layout(title, "", "", False, 360),
    )
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return fig


def sweep_figure(
    frame: pd.DataFrame, x: str, y: str, title: str, x_title: str, log_x: bool
) -> go.Figure:
    traces = [
        {"x": g[x].to_numpy(), "y": g[y].to_numpy(), "name": name, "color": COLORS[k % len(COLORS)]}
        for k, (name, g) in enumerate(frame.groupby("estimator", sort=False))
    ]
    fig = line_figure(traces, title=title, x_title=x_title, y_title=y, log_y=True, height=320)
    fig.update_traces(mode="lines+markers")
    if log_x:
        fig.update_xaxes(type="log")
    fig.update_layout(hovermode="closest", legend={"orientation": "v", "x": 1.01, "y": 1})
    return fig
