"""What the Sweeps page draws, from a sweep record (:meth:`pglab.sweep.Sweep.record` or a
``sweeps/<id>.json`` file): the ranked table, the parallel-coordinates plot, "promote".

No Streamlit here: every table and figure can be produced from Python.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from pglab.store import Store

EXAMPLE_SPEC = """{
  "algo": "ppo",
  "env_id": "CartPole-v1",
  "settings": {"total_steps": 20000},
  "grid": {"learning_rate": [3e-4, 1e-3], "gae_lambda": [0.8, 0.95]},
  "seeds": 2,
  "objective": "auc"
}"""

OBJECTIVE_TITLES = {
    "final_iqm": "final return (IQM)",
    "auc": "mean return over the budget (IQM)",
    "steps_to_threshold": "steps to threshold (IQM)",
}


def records(store: Store, live: dict[str, Any]) -> list[dict[str, Any]]:
    """Every sweep of ``store``, newest first; those running in this process (``live``: id ->
    :class:`~pglab.sweep.Sweep`) from memory, fresher than their files."""
    from pglab.sweep.runner import list_records

    out = {r["launch"]: r for r in list_records(store)}
    for sweep_id, sweep in live.items():
        out[sweep_id] = sweep.record()
    return sorted(out.values(), key=lambda r: r.get("created_at", 0), reverse=True)


def record_label(record: dict[str, Any]) -> str:
    name = record.get("name") or f"{record['algo']} on {record['env_id']}"
    done = sum(1 for t in record["trials"] if t["status"] not in ("queued", "running", "paused"))
    total = (record.get("spec") or {}).get("trials") or len(record["trials"]) or "?"
    return f"{record['launch']} · {name} · {record['status']} · {done}/{total} trials"


def _ranked(record: dict[str, Any]) -> list[dict[str, Any]]:
    sign = -1.0 if record["direction"] == "minimize" else 1.0
    scored = [t for t in record["trials"] if t["objective"] is not None]
    rest = [t for t in record["trials"] if t["objective"] is None]
    return sorted(scored, key=lambda t: -sign * t["objective"]) + rest


def swept_fields(record: dict[str, Any]) -> list[str]:
    spec = record.get("spec") or {}
    return list(spec.get("grid") or spec.get("search") or {})


def trials_frame(record: dict[str, Any]) -> pd.DataFrame:
    """One row per trial, best first: rank, the swept values, objective, 95% CI, seeds scored."""
    progress = {p["number"]: p for p in record.get("progress", [])}
    fields = swept_fields(record)
    rows = []
    for rank, t in enumerate(_ranked(record), start=1):
        ci = t.get("ci") or [None, None]
        rows.append(
            {
                "rank": rank if t["objective"] is not None else None,
                "trial": t["number"],
                **{f: t["point"].get(f) for f in fields},
                "objective": t["objective"],
                "ci_low": ci[0],
                "ci_high": ci[1],
                "n": t["n"],
                "seeds": len(t["run_ids"]),
                "status": t["status"],
                "progress": progress.get(t["number"], {}).get("fraction"),
                "launch": t["launch"],
            }
        )
    return pd.DataFrame(rows)


def parallel_coordinates(record: dict[str, Any]) -> go.Figure:
    """One line per scored trial across its swept values and the objective (colour)."""
    spec = record.get("spec") or {}
    search = spec.get("search") or {}
    trials = [t for t in record["trials"] if t["objective"] is not None]
    dims = []
    for name in swept_fields(record):
        values = [t["point"].get(name) for t in trials]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and (search.get(name) or {}).get("log") and all(v > 0 for v in values):
            dims.append({"label": f"log10 {name}", "values": [math.log10(v) for v in values]})
        elif numeric:
            dims.append({"label": name, "values": values})
        else:  # categories (and booleans) as evenly spaced ticks
            cats = sorted({str(v) for v in values})
            dims.append(
                {
                    "label": name,
                    "values": [cats.index(str(v)) for v in values],
                    "tickvals": list(range(len(cats))),
                    "ticktext": cats,
                }
            )
    title = OBJECTIVE_TITLES.get(record["objective"], record["objective"])
    objective = [t["objective"] for t in trials]
    dims.append({"label": title, "values": objective})
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": objective,
                "colorscale": "Viridis",
                "reversescale": record["direction"] == "minimize",
                "showscale": True,
            },
            dimensions=dims,
        )
    )
    fig.update_layout(height=340, margin={"l": 60, "r": 40, "t": 50, "b": 20}, uirevision="sweep")
    return fig


def promote(
    store: Store, record: dict[str, Any], number: int, name: str, *, replace: bool = False
) -> dict[str, Any]:
    """Save trial ``number``'s settings as the user preset ``name`` (Train lists it)."""
    trial = next((t for t in record["trials"] if t["number"] == number), None)
    if trial is None:
        raise ValueError(f"trial: {number!r} is not a trial of sweep {record['launch']}")
    ci = trial.get("ci")
    ci_text = f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
    value = trial["objective"]
    score = f"{value:.4g}{ci_text}" if value is not None else "not scored"
    description = (
        f"Trial {number} of sweep {record['launch']} ({trial['label']}): "
        f"{record['objective']} {score}, n={trial['n']} seeds."
    )
    store.save_preset(
        name,
        record["algo"],
        record["env_id"],
        trial["settings"],
        description=description,
        source=f"sweep {record['launch']}, trial {number} (launch {trial['launch']})",
        replace=replace,
    )
    return {"name": name, "algo": record["algo"], "env_id": record["env_id"]}
