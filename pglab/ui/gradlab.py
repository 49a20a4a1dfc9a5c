"""Gradient Lab helpers: the policy picker, the estimator study, sweeps and their charts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pglab.ui.charts import base_layout, line_figure
from pglab.ui.common import COLORS, _registry_for


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
    value: str = "auto",
) -> Any:
    """:func:`pglab.gradlab.run_gradlab`, cached by its arguments (results are read-only).
    ``value``: the critic of the advantage estimators (auto, exact or fitted)."""
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
        value=value,
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
    value: str = "auto",
) -> pd.DataFrame:
    """Variance against batch size (``kind="batch"``) or GAE lambda (``kind="lambda"``)."""
    from pglab.gradlab import sweep_batch_size, sweep_lambda

    cfg, state = gradlab_policy(store_path, env_id, run_id, p_right)
    common = {"policy_config": cfg, "policy_state": state, "value": value}
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


def bias_bars(table: pd.DataFrame) -> go.Figure:
    """Signed relative bias along the reference gradient, (E g - g).g / |g|^2, per estimator,
    with its 95% CI; a dotted line at 0 (unbiased) and, where an estimator's exact bias is
    known in closed form (batch-mean baselines at gamma = 1), its value as a marker."""
    fig = estimator_bars(
        table,
        "bias_along",
        "along_lo",
        "along_hi",
        "Signed bias along g: (E ĝ − g)·g / |g|²",
        False,
    )
    fig.add_hline(y=0.0, line_dash="dot", line_color="grey")
    return fig


def sweep_figure(
    frame: pd.DataFrame,
    x: str,
    y: str,
    title: str,
    x_title: str,
    log_x: bool,
    log_y: bool = True,
    inverse_reference: bool = False,
) -> go.Figure:
    """One line per estimator of ``y`` against ``x``; ``inverse_reference`` adds, for each
    estimator, the dotted line c/x through its first point (the 1/m law of independent
    episodes)."""
    traces = []
    for k, (name, g) in enumerate(frame.groupby("estimator", sort=False)):
        color = COLORS[k % len(COLORS)]
        xs, ys = g[x].to_numpy(dtype=float), g[y].to_numpy(dtype=float)
        traces.append({"x": xs, "y": ys, "name": name, "color": color})
        if inverse_reference and len(xs) and math.isfinite(ys[0]):
            traces.append(
                {
                    "x": xs,
                    "y": ys[0] * xs[0] / xs,
                    "name": f"{name}: 1/m",
                    "color": color,
                    "opacity": 0.45,
                    "showlegend": k == 0,
                }
            )
    fig = line_figure(traces, title=title, x_title=x_title, y_title=y, log_y=log_y, height=320)
    fig.update_traces(mode="lines+markers")
    if inverse_reference:
        for tr in fig.data:
            if tr.name and tr.name.endswith(": 1/m"):
                tr.update(mode="lines", line={"dash": "dot"})
    if log_x:
        fig.update_xaxes(type="log")
    fig.update_layout(hovermode="closest", legend={"orientation": "v", "x": 1.01, "y": 1})
    return fig
