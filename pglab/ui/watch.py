"""Watch the agent: replay a run's current policy in its environment as an animation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from pglab.ui.common import _registry_for
from pglab.ui.live import run_label, safe_record


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
