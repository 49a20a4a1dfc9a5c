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

    return Registry(Store(store_path), isolation="process")


def get_registry() -> Any:
    """The run registry of the current store (``$PGLAB_STORE``), shared by all sessions."""
    from pglab.store import default_store_path

    return _registry_for(str(default_store_path()))


def get_store() -> Any:
    return get_registry().store


def registry_or_stop() -> Any:
    """The registry, or one ``st.error`` naming what to change and ``st.stop()``.

    Covers an engine that cannot be imported, a store that cannot be opened (damaged, not a
    pglab store, read-only, newer schema: :class:`~pglab.store.Store` says how to recover), a
    store that fails on its first read, and a store file deleted under the running lab (the
    cached registry is dropped, so the next rerun opens a fresh store).
    """
    try:
        registry = get_registry()
    except ImportError as exc:
        st.info(f"The run engine is not available yet ({exc}).")
        st.stop()
    except ValueError as exc:  # the store's own one-line explanation
        st.error(str(exc))
        st.stop()
    except Exception as exc:  # anything else is still one line, never a redacted traceback
        st.error(f"The run store cannot be used: {store_error(exc)}")
        st.stop()
    try:
        registry.store.check_present()
        registry.store.list_runs()
    except Exception as exc:
        _registry_for.clear()
        st.error(
            f"{store_error(exc)} Reload the page to open a fresh store at "
            f"{registry.store.path} (runs still training in the old one end 'failed')."
        )
        st.stop()
    return registry


def store_error(exc: BaseException) -> str:
    """One line for a store that failed while in use."""
    import sqlite3

    from pglab.store import StoreGoneError, is_disk_full, recovery_hint

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, StoreGoneError):
        return f"The {text}."
    if is_disk_full(exc):
        return f"The disk holding the run store is full ({text}); free some space."
    if isinstance(exc, sqlite3.DatabaseError):
        from pglab.store import default_store_path

        path = default_store_path()
        return f"The run store {path} is damaged ({text}). {recovery_hint(path)}"
    return f"{type(exc).__name__}: {text}."


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


# -- Host header check for plain HTTP -----------------------------------------------------------
_HOST_CHECK: dict[str, bool] = {"installed": False}


class _HostCheck:
    """ASGI wrapper: plain HTTP requests whose Host is not in ``server.allowedHosts`` get 403.

    Streamlit checks the Host of its websocket only; this applies the same allow-list
    (Streamlit's own ``is_host_allowed``) to every HTTP request, so a DNS-rebinding page
    cannot read even the static or health endpoints under a foreign name.
    """

    def __init__(self, inner: Any):
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            from streamlit.web.server.starlette.starlette_websocket import is_host_allowed

            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not is_host_allowed(host):
                body = b"Forbidden: this Host is not in server.allowedHosts\n"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.inner(scope, receive, send)


def install_host_check() -> bool:
    """Put :class:`_HostCheck` in front of the running Streamlit server's Starlette app.

    Streamlit 1.67 serves through Starlette/uvicorn and offers no hook to add middleware to
    ``streamlit run``; so on the app script's first run in a process (``app.py`` calls this)
    the server's Starlette app is found and its built middleware stack wrapped; every later
    request, on any connection, passes the check. Until that first run (the first browser
    session) Streamlit alone answers, and it serves only its static page and health check
    then, which hold no run data. No-op without a server (AppTest) and on later calls.
    Returns whether the check is in place.
    """
    if _HOST_CHECK["installed"]:
        return True
    import gc

    try:
        from starlette.applications import Starlette
    except ImportError:
        return False
    # type(), not isinstance(): no attribute lookups on lazy modules among the objects
    apps = [o for o in gc.get_objects() if issubclass(type(o), Starlette)]
    for app in apps:
        stack = app.middleware_stack or app.build_middleware_stack()
        if not isinstance(stack, _HostCheck):
            app.middleware_stack = _HostCheck(stack)
    _HOST_CHECK["installed"] = bool(apps)
    return bool(apps)


# Progress bars glide to each new value over 0.5 s. A live page moves four of them every 3 s,
# and each glide is 30 frames the browser composites: on 2 cores without a GPU that doubled
# the browser's CPU per refresh (61 -> 31 ms a rerun of four bars, and the compositor's
# frames fell tenfold). Without the glide they step, as TensorBoard's counters do.
STEADY_CSS = "<style>[data-testid=stProgress] * {transition: none !important;}</style>"


def steady_progress() -> None:
    """Progress bars that step to each new value instead of gliding (:data:`STEADY_CSS`)."""
    st.html(STEADY_CSS)


NO_RUNS = "No run is training"
SIDEBAR_SHOWN = "sidebar:shown"


def active_summary(registry: Any) -> str:
    """``3 run(s) active in this lab: 2 running, 1 queued`` (or :data:`NO_RUNS`)."""
    statuses = [registry.status(i) for i in registry.active_ids()]
    if not statuses:
        return NO_RUNS
    parts = [f"{statuses.count(s)} {s}" for s in ("running", "paused", "queued") if s in statuses]
    return f"{len(statuses)} run(s) active in this lab: {', '.join(parts)}"


def sidebar_stale(registry: Any) -> bool:
    """True when the sidebar's count (drawn by the last full rerun) no longer holds."""
    return active_summary(registry) != st.session_state.get(SIDEBAR_SHOWN)


def sidebar_status(refresh: bool = True) -> None:
    """The sidebar's live count of training runs (call it inside ``with st.sidebar:``), in a
    fragment that refreshes every 3 s while anything is active. ``refresh=False``: drawn
    by full reruns only, for a page whose own timed fragment asks for one when
    :func:`sidebar_stale` (the Train page: one timer a page, not two; each tick costs the
    browser CPU the runs need)."""
    try:
        registry = get_registry()
        n_active = len(registry.active_ids())
    except Exception as exc:  # the engine or store is unavailable: pages say why, in full
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        st.caption(f"Run engine unavailable: {first}")
        return

    @st.fragment(run_every=3.0 if n_active and refresh else None)
    def live_count() -> None:
        text = st.session_state[SIDEBAR_SHOWN] = active_summary(registry)
        st.caption(text)
        if n_active and text == NO_RUNS:
            st.rerun()  # a full rerun switches this timer off

    live_count()
