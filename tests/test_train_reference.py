"""The Train page draws a preset's reference band behind a run of that preset."""

from __future__ import annotations

from types import SimpleNamespace

from pglab.presets import PRESETS
from pglab.reference import available
from pglab.ui.live import _reference_traces


def _record(algo: str, config: dict) -> SimpleNamespace:
    return SimpleNamespace(id="r1", algo=algo, config=config, name="run")


def test_a_preset_run_gets_its_band_once_and_a_custom_run_none():
    name = "ppo-cartpole-zoo"
    assert name in available()
    preset = PRESETS[name]
    config = {**preset.settings, "env_id": preset.env_id, "total_steps": 1_000_000}
    traces = _reference_traces([_record(preset.algo, config), _record(preset.algo, config)])
    assert len(traces) == 2  # one band (p10-p90 fill + median) for the two runs of one preset
    assert traces[0].fill == "toself" and name in traces[0].name
    custom = {**config, "learning_rate": 0.123}
    assert _reference_traces([_record(preset.algo, custom)]) == []
