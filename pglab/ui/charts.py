"""Chart helpers: plotly ``go.Scatter`` figures of fixed height, at most :data:`MAX_POINTS`
points a trace, drawn under a stable key; seed bands; metric captions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from pglab import metrics as M
from pglab.reduce import envelope
from pglab.ui.common import CHART_HEIGHT, COLORS, MAX_POINTS, PLOTLY_CONFIG


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


def plain_text(name: Any) -> str:
    """A run or group name as plotly should show it: literally.

    Plotly renders trace names (legend, hover) as a subset of HTML, so a run named
    ``<b>x</b>`` or ``<a href=...>`` would be drawn bold or as a link; escaping ``&``, ``<``
    and ``>`` as entities makes it show the characters themselves.
    """
    return str(name).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# Margins of a live chart, fixed (px): room for 6-character tick labels and the axis titles.
FIXED_MARGIN = {"l": 56, "r": 10, "t": 36, "b": 44}


def base_layout(
    title: str,
    x_title: str,
    y_title: str,
    log_y: bool,
    height: int,
    uirevision: str | None = None,
    fixed_margins: bool = False,
) -> dict[str, Any]:
    """The layout every chart shares. ``fixed_margins``: :data:`FIXED_MARGIN` instead of
    plotly's automargin, which measures the tick labels and draws the chart again to fit
    them: a fifth of a live chart's redraw in Chromium (0.68 -> 0.56 CPU s for ten)."""
    return {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "height": height,
        "margin": FIXED_MARGIN if fixed_margins else {"l": 10, "r": 10, "t": 36, "b": 10},
        "xaxis": {"title": {"text": x_title}, "automargin": not fixed_margins},
        "yaxis": {
            "title": {"text": y_title},
            "type": "log" if log_y else "linear",
            "automargin": not fixed_margins,
        }
        | ({"dtick": 1, "exponentformat": "power"} if log_y else {}),
        "legend": {"orientation": "h", "y": -0.25, "x": 0},
        "hovermode": "x unified",
        "uirevision": uirevision or title,  # keep the user's zoom across live updates
    }


def line_spec(
    traces: Sequence[dict[str, Any]],
    *,
    title: str,
    x_title: str = "env steps",
    y_title: str = "",
    log_y: bool = False,
    height: int = CHART_HEIGHT,
    hline: float | None = None,
    uirevision: str | None = None,
    fixed_margins: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(data, layout) of :func:`line_figure`, as plain dicts: lines from ``traces`` (dicts:
    x, y, name, color; optional width, opacity, showlegend, legendgroup), at most
    :data:`MAX_POINTS` points each (min/max envelope beyond that; the live panel reduces
    to far fewer first), as float32 (half the bytes of float64). ``fixed_margins``:
    :func:`base_layout`."""
    data = []
    for t in traces:
        x, y = np.asarray(t["x"], dtype=float), np.asarray(t["y"], dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = envelope(x[ok], y[ok], MAX_POINTS)
        x, y = x.astype(np.float32), y.astype(np.float32)
        if log_y:
            y = np.where(y > 0, y, np.float32(np.nan))  # log axes cannot show <= 0
        data.append(
            {
                "type": "scatter",
                "x": x,
                "y": y,
                "name": plain_text(t["name"]),
                "mode": "lines",
                "line": {"color": t["color"], "width": t.get("width", 2)},
                "opacity": t.get("opacity", 1.0),
                "showlegend": t.get("showlegend", True),
                "legendgroup": t.get("legendgroup", t["name"]),
                "connectgaps": True,
            }
        )
    layout = base_layout(title, x_title, y_title, log_y, height, uirevision, fixed_margins)
    if hline is not None:  # in the layout dict: add_hline() deep-copies the whole figure
        layout["shapes"] = [
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": hline, "y1": hline,
             "line": {"dash": "dot", "color": "gray", "width": 1}}
        ]  # fmt: skip
        layout["annotations"] = [
            {"xref": "paper", "x": 1, "y": hline, "text": "solved", "showarrow": False,
             "xanchor": "right", "yanchor": "bottom", "font": {"color": "gray"}}
        ]  # fmt: skip
    return data, layout


def line_figure(traces: Sequence[dict[str, Any]], **kwargs: Any) -> go.Figure:
    """The figure of :func:`line_spec`'s lines (same arguments)."""
    data, layout = line_spec(traces, **kwargs)
    # The traces are plain, well-formed dicts: skipping plotly's per-property validation
    # (as plotly.express does) halves the cost of building ten charts.
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
    behind: Sequence[Any] = (),
) -> go.Figure:
    """Line and shaded 95% band per group (:class:`pglab.compare.Curve`); ``behind``: traces
    drawn first, under everything (reference bands, :func:`reference_traces`).

    The legend gives each group's seed count; where it changes along x ("n varies") the
    hover shows n at each point.
    """
    data = list(behind)
    for k, b in enumerate(bands):
        color = COLORS[k % len(COLORS)]
        x, mean = downsample(b.x, b.mean)
        _, low = downsample(b.x, b.low)
        _, high = downsample(b.x, b.high)
        _, n = downsample(b.x, np.asarray(b.n, dtype=float))
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
                    name=plain_text(f"{b.group} 95% CI"),
                )
            )
        lo_n, hi_n = int(np.min(b.n)), int(np.max(b.n))
        seeds = f"n={hi_n}" if lo_n == hi_n else f"n varies {lo_n}-{hi_n}"
        data.append(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines",
                name=plain_text(f"{b.group} ({seeds})"),
                line={"color": color, "width": 2},
                legendgroup=b.group,
                customdata=n,
                hovertemplate="%{y:.4g} (n=%{customdata:.0f})",
            )
        )
    layout = base_layout(title, x_title, y_title, log_y, height)
    layout["legend"] = {"orientation": "h", "y": -0.2, "x": 0}
    fig = go.Figure(data=data, layout=layout)
    if hline is not None:
        fig.add_hline(y=hline, line_dash="dot", line_color="gray", annotation_text="threshold")
    return fig


def reference_traces(band: Any, color: str = "#7f7f7f") -> list[go.Scatter]:
    """Faint traces of a preset's reference band (:func:`pglab.reference.reference_band`):
    the p10-p90 range of its multi-seed study, shaded, and the median dashed. Put them
    first in a figure's data (or ``band_figure(behind=...)``) so runs draw on top."""
    x = np.asarray(band.env_steps, dtype=float)
    return [
        go.Scatter(
            x=np.r_[x, x[::-1]],
            y=np.r_[band.p90, band.p10[::-1]],
            fill="toself",
            fillcolor=rgba(color, 0.12),
            line={"width": 0},
            hoverinfo="skip",
            name=band.label,
            legendgroup=f"ref:{band.preset}",
            showlegend=True,
        ),
        go.Scatter(
            x=x,
            y=band.median,
            mode="lines",
            line={"color": rgba(color, 0.6), "width": 1, "dash": "dash"},
            name=f"{band.preset} reference median",
            legendgroup=f"ref:{band.preset}",
            showlegend=False,
            hovertemplate="reference median %{y:.4g}",
        ),
    ]


def show_chart(fig: go.Figure, key: str) -> None:
    """Draw at the figure's fixed height under a stable key (no remount, no flicker)."""
    st.plotly_chart(
        fig, key=key, height=int(fig.layout.height or CHART_HEIGHT), config=PLOTLY_CONFIG
    )


def caption_for(name: str) -> str:
    return M.describe(name) or name
