"""Long-lived objects and small helpers every page uses: the run registry (``st.cache_resource``),
the store, device and algorithm lists, presets, and error-safe calls."""

from __future__ import annotations

from typing import Any

import streamlit as st

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
        runpy.run_path(str(Path(__file__).resolve().parents[2] / "app.py"), run_name="__main__")
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


def sidebar_status() -> None:
    """The sidebar's live count of training runs, in a fragment that refreshes every second
    while anything is active (call it inside ``with st.sidebar:``)."""
    try:
        registry = get_registry()
        n_active = len(registry.active_ids())
    except (ImportError, ValueError) as exc:  # the engine or store is unavailable
        st.caption(f"Run engine unavailable: {exc}")
        return

    @st.fragment(run_every=1.0 if n_active else None)
    def live_count() -> None:
        ids = registry.active_ids()
        statuses = [registry.status(i) for i in ids]
        if not ids:
            st.caption("No run is training")
            if n_active:
                st.rerun()  # a full rerun switches this timer off
            return
        parts = [
            f"{statuses.count(s)} {s}" for s in ("running", "paused", "queued") if s in statuses
        ]
        st.caption(f"{len(ids)} run(s) active in this lab: {', '.join(parts)}")

    live_count()
