"""Streamlit helpers of the RLHF Lab page: live panel (controls and charts of every run), the
reward-vs-KL chart with the exact frontier, the win-rate table and sample completions.

Numbers come from :mod:`pglab.rlhf`: the live rows are the trainer's metrics (exact ones under
``exact/``, TRL's names for the estimates); the frontier and completions are enumerations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from pglab.rlhf.metrics import caption as rlhf_caption
from pglab.ui.charts import line_figure, show_chart
from pglab.ui.common import ACTIVE, COLORS
from pglab.ui.live import live_frame, safe_record

# (title, metric, log scale) of the live small multiples, in reading order
RLHF_CHARTS: tuple[tuple[str, str, bool], ...] = (
    ("Gold reward E_pi[r*] (exact)", "exact/gold_reward", False),
    ("Proxy reward E_pi[r] (exact)", "exact/proxy_reward", False),
    ("Win rate vs pi_SFT (exact)", "exact/win_rate", False),
    ("KL(pi || pi_SFT) (exact)", "exact/kl_to_sft", False),
    ("KL(pi || pi*) (exact, log)", "exact/kl_to_optimum", True),
    ("objective/kl (estimate)", "objective/kl", False),
    ("PPO/GRPO clip fraction", "policy/clipfrac", False),
    ("PPO/GRPO ratio pi/pi_old", "val/ratio", False),
    ("DPO reward margins", "rewards/margins", False),
    ("DPO reward accuracy", "rewards/accuracies", False),
)


@st.cache_data(show_spinner="Building the world and the reward model ...", max_entries=32)
def world_preview(config_json: str, seed: int) -> dict[str, Any]:
    """Reward-model report, the SFT baseline and the exact frontiers for a config and seed."""
    from pglab.rlhf.config import RLHFConfig
    from pglab.rlhf.trainer import RLHFTrainer

    data = json.loads(config_json)
    data.pop("algo", None)  # BaseConfig.to_json() names the algorithm
    cfg = RLHFConfig.from_dict(data)
    from pglab.rlhf.world import one_thread

    with one_thread():
        trainer = RLHFTrainer(cfg.replace(method="rloo", k=max(cfg.k, 2)), seed=seed)
        return {"rm": trainer.rm_report, "sft": trainer.initial, "frontier": trainer.frontier()}


def _controls(registry: Any, rec: Any, row: dict[str, float] | None) -> None:
    """Progress, status, the last exact numbers, Pause/Resume and Stop for one run."""
    text = f"**{rec.name}** · {rec.status} · {rec.env_steps:,}/{rec.total_steps:,} samples"
    if row:
        text += (
            f" · gold {row.get('exact/gold_reward', math.nan):.2f}"
            f" · KL to pi* {row.get('exact/kl_to_optimum', math.nan):.3f}"
        )
    bar, pause, stop = st.columns([8, 1, 1], vertical_alignment="bottom")
    bar.progress(min(1.0, max(0.0, float(rec.fraction))), text=text)
    if rec.status in ("running", "queued"):
        pause.button("Pause", key=f"rlhf:pause:{rec.id}", on_click=registry.pause, args=(rec.id,))
    elif rec.status == "paused":
        pause.button(
            "Resume", key=f"rlhf:resume:{rec.id}", on_click=registry.resume, args=(rec.id,)
        )
    if rec.status in ACTIVE:
        stop.button("Stop", key=f"rlhf:stop:{rec.id}", on_click=registry.stop, args=(rec.id,))
    if rec.status == "failed":
        st.error(f"{rec.name} failed: {rec.error or 'no reason recorded'}")


def _frames(registry: Any, run_ids: Sequence[str]) -> tuple[list[Any], dict[str, pd.DataFrame]]:
    records = [r for r in (safe_record(registry, i) for i in run_ids) if r is not None]
    records = [r for r in records if r.algo == "rlhf"]
    return records, {r.id: live_frame(registry, r.id) for r in records}


def render_rlhf_live(registry: Any, run_ids: Sequence[str], frontier: dict | None) -> bool:
    """Controls, live charts and the reward-vs-KL chart of ``run_ids``; True if any is active."""
    records, frames = _frames(registry, run_ids)
    if not records:
        st.info("No RLHF runs to show yet: choose settings above and press **Launch**.")
        return False
    for rec in records:
        f = frames[rec.id]
        _controls(registry, rec, f.iloc[-1].to_dict() if len(f) else None)
    colors = {r.id: COLORS[k % len(COLORS)] for k, r in enumerate(records)}

    def traces(metric: str, x: str = "time/env_steps", **style: Any) -> list[dict[str, Any]]:
        out = []
        for r in records:
            f = frames[r.id]
            if metric in f.columns and x in f.columns:
                ok = np.isfinite(f[metric].to_numpy())
                if ok.any():
                    out.append({"x": f[x].to_numpy()[ok], "y": f[metric].to_numpy()[ok],
                                "name": r.name, "color": colors[r.id], **style})  # fmt: skip
        return out

    kl_chart(traces, frontier)
    cols = st.columns(3)
    k = 0
    for title, name, log_y in RLHF_CHARTS:
        data = traces(name)
        if not data:
            continue  # a metric no shown run reports is absent, not zero
        with cols[k % 3]:
            for d in data:
                d["showlegend"] = False
            fig = line_figure(data, title=title, x_title="samples", log_y=log_y)
            show_chart(fig, f"rlhf:{name}")
            st.caption(rlhf_caption(name))
        k += 1
    return any(r.status in ACTIVE for r in records)


def kl_chart(traces: Any, frontier: dict | None) -> None:
    """Gold reward against the exact KL to pi_SFT: every run's path, the exact frontier of
    pi*_beta for r* (the best any policy can do at that KL) and the path of pi*_beta for the
    first run's learned reward (where a perfect optimiser of the proxy goes)."""
    data = traces("exact/gold_reward", x="exact/kl_to_sft", width=2)
    if frontier is not None:
        g, p = frontier["gold"], frontier["proxy"]
        data.append({"x": g["kl"], "y": g["gold"], "name": "frontier: pi*_beta of r*",
                     "color": "#444444", "width": 3})  # fmt: skip
        if p["reward"] != g["reward"]:
            data.append({"x": p["kl"], "y": p["gold"], "name": "pi*_beta of the reward model",
                         "color": "#999999", "width": 2})  # fmt: skip
    fig = line_figure(data, title="Gold reward vs KL(pi || pi_SFT): run paths and the exact frontier",
                      x_title="KL(pi || pi_SFT) (nats)", y_title="E[r*]", height=380)  # fmt: skip
    fig.update_layout(hovermode="closest")
    show_chart(fig, "rlhf:reward_vs_kl")
    st.caption(
        "Each run's path moves right as the policy leaves pi_SFT. The black frontier is exact "
        "(pi* ∝ pi_SFT exp(r*/beta) over beta); with a learned reward, gold rises, peaks and "
        "falls while the proxy keeps rising: over-optimisation (Gao et al. 2022)."
    )


def win_rate_frame(registry: Any, run_ids: Sequence[str]) -> pd.DataFrame:
    """The win-rate table of the latest row of each run (methods x seeds, bootstrap CI)."""
    from pglab.rlhf.report import win_rate_table

    records, frames = _frames(registry, run_ids)
    runs = []
    for r in records:
        f = frames[r.id]
        if not len(f) or "exact/win_rate" not in f.columns:
            continue
        last = f.iloc[-1]
        method = r.config.get("method", "?") + (
            " (gold)" if r.config.get("reward") == "gold" else ""
        )
        runs.append({"method": method, "seed": r.seed, "win_rate": last["exact/win_rate"],
                     "gold_reward": last["exact/gold_reward"], "kl_to_sft": last["exact/kl_to_sft"],
                     "kl_to_optimum": last["exact/kl_to_optimum"]})  # fmt: skip
    rows = win_rate_table(runs)
    out = []
    for row in rows:
        ci = (
            ""
            if row["ci_low"] is None or np.isnan(row["ci_low"])
            else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        )
        out.append({"method": row["method"], "win rate": round(100 * row["win_rate"], 1),
                    "95% CI (%)": ci and f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]",
                    "n seeds": row["n"], "gold reward": row.get("gold_reward"),
                    "KL to SFT": row.get("kl_to_sft"), "KL to pi*": row.get("kl_to_optimum")})  # fmt: skip
    return pd.DataFrame(out)


def completions_view(registry: Any, run_ids: Sequence[str]) -> None:
    """Pick a run and a prompt: the most likely responses before (pi_SFT) and after
    (pi_theta), each with its probability under pi_SFT, pi_theta and pi*, and r*, r."""
    from pglab.rlhf.config import RLHFConfig
    from pglab.rlhf.report import completions
    from pglab.rlhf.trainer import policy_tables

    records, _ = _frames(registry, run_ids)
    if not records:
        st.info("Launch a run to see its completions.")
        return
    c1, c2, c3 = st.columns([3, 1, 1])
    rec = c1.selectbox("Run", records, format_func=lambda r: r.name, key="rlhf:comp_run")
    cfg = RLHFConfig.from_dict(rec.config)
    prompt = c2.selectbox("Prompt", list(range(cfg.n_prompts)), key="rlhf:comp_prompt",
                          format_func=lambda p: f"prompt {p}")  # fmt: skip
    n = c3.number_input("Responses", 3, 20, 6, key="rlhf:comp_n")
    state = registry.policy_state(rec.id)
    if state is None:
        st.info("This run has no weights yet (it has not started).")
        return
    from pglab.rlhf.world import one_thread

    with one_thread():
        t = policy_tables(cfg, state)
    before, after = st.columns(2)
    for col, by, title in ((before, "pi_SFT", "Before: most likely under pi_SFT"),
                           (after, "pi_theta", "After: most likely under pi_theta")):  # fmt: skip
        rows = completions(t["world"], prompt, t["logps"], t["gold"], t["reward"], by, int(n))
        frame = pd.DataFrame(rows)
        for k in ("pi_SFT", "pi_theta", "pi*"):  # 3 significant digits: 2e-05 is not 0.000
            frame[k] = [f"{p:.3g}" for p in frame[k]]
        col.markdown(f"**{title}**")
        col.dataframe(frame, hide_index=True, key=f"rlhf:comp:{by}",
                      column_config={"reward r": st.column_config.NumberColumn(format="%.3f")})  # fmt: skip


def launch_methods(
    registry: Any, settings: dict[str, Any], methods: Sequence[str], n_seeds: Any
) -> list[str]:
    """One run per method and seed, all under one launch id; every config is validated
    before the first run starts (a bad field starts nothing)."""
    from pglab.rlhf.config import RLHFConfig
    from pglab.store import new_launch_id
    from pglab.ui.widgets import check_seeds

    if not methods:
        raise ValueError("methods: pick at least one (reinforce, rloo, ppo, grpo, dpo)")
    seeds = check_seeds(n_seeds, 0)
    configs = {m: RLHFConfig.from_dict({**settings, "method": m}) for m in methods}
    launch = new_launch_id()
    ids = []
    for m, cfg in configs.items():
        group = f"rlhf {m} · {cfg.reward} reward · beta {cfg.beta:g} · {cfg.n_pairs} pairs"
        for s in seeds:
            ids.append(registry.launch("rlhf", cfg, seed=s, name=f"{m} s{s}", group=group,
                                       launch=launch))  # fmt: skip
    return ids


def latest_rlhf(registry: Any) -> list[str]:
    """The runs of the newest RLHF launch in the store (page, CLI or another session), oldest
    first: what the page shows when this session has launched nothing yet."""
    runs = [r for r in registry.store.list_runs() if r.algo == "rlhf"]  # newest first
    if not runs:
        return []
    newest = runs[0].launch
    if newest is None:
        return [runs[0].id]
    return [r.id for r in reversed(runs) if r.launch == newest]


def any_active(registry: Any, run_ids: Sequence[str]) -> bool:
    return any((r := safe_record(registry, i)) is not None and r.status in ACTIVE for i in run_ids)
