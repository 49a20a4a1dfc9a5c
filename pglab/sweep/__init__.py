"""Sweeps and many-seed studies: a spec of trials x seeds, run on threads or on Ray.

    from pglab.sweep import Sweep, load_spec
    result = Sweep(load_spec("sweep.json"), executor="ray").run()

- :mod:`pglab.sweep.spec`: the JSON spec and its field-by-field validation.
- :mod:`pglab.sweep.objective`: per-run scores, IQM over seeds, bootstrap CIs.
- :mod:`pglab.sweep.executors`: ``local`` (the engine's threads) and ``ray`` executors.
- :mod:`pglab.sweep.runner`: the sweep loop, Optuna search, records for the lab's page.
- :mod:`pglab.sweep.view`: tables and figures the Sweeps page draws.

Nothing here imports Streamlit; Ray and Optuna are imported only when a sweep needs them.
"""

from pglab.sweep.runner import Sweep, list_records
from pglab.sweep.spec import OBJECTIVES, SweepSpec, load_spec, parse_spec, parse_spec_text

__all__ = [
    "OBJECTIVES",
    "Sweep",
    "SweepSpec",
    "list_records",
    "load_spec",
    "parse_spec",
    "parse_spec_text",
]
