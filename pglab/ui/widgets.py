"""Hyperparameter widgets generated from a config class's ``fields()`` specs (defaults, allowed
range, help text with the equation), seed checks and group launches."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import streamlit as st

from pglab.config import BaseConfig, FieldInfo
from pglab.labels import choice_label, field_label
from pglab.ui.common import PAGE_FIELDS, VARIANT_FIELDS, presets_for


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
    """Help text of a widget: what it does, the equation it changes, what it accepts, and
    the config field's name (as the CLI's ``--set`` and the exports spell it)."""
    parts = [info.spec.help]
    if info.spec.equation:
        parts.append(f"`{info.spec.equation}`")
    allowed = info.spec.describe() + (" or empty (off)" if info.optional else "")
    parts.append(f"Allowed: {allowed}. Default: `{info.default}`. Field: `{info.name}`.")
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
    label = field_label(algo, info.name)
    if spec.log and info.type is float:
        # Step sizes span decades (3e-4, 1e-2): a text field typed as "3e-4" keeps every
        # digit, where a number input's float formatting can round a small value to 0.
        value = st.session_state[key]
        if not isinstance(value, str):
            st.session_state[key] = "" if value is None else f"{value:g}"
        return container.text_input(label, key=key, help=helptext)
    if spec.choices is not None:
        return container.selectbox(
            label,
            list(spec.choices),
            key=key,
            help=helptext,
            format_func=lambda v: choice_label(info.name, v),
        )
    if info.type is bool:
        return container.checkbox(label, key=key, help=helptext)
    if info.type is int:
        return container.number_input(label, step=1, key=key, help=helptext)
    if info.type is float:
        default = info.default if isinstance(info.default, float) else 0.0
        return container.number_input(
            label,
            step=_float_step(default),
            format="%g",
            key=key,
            help=helptext,
            placeholder="empty = off" if info.optional else None,
        )
    return container.text_input(label, key=key, help=helptext)


def widget_settings(config_cls: type[BaseConfig]) -> dict[str, Any]:
    """The settings the widgets hold now (defaults where a widget was never drawn)."""
    algo = config_cls.algo
    return {
        i.name: st.session_state.get(hp_key(algo, i.name), i.default) for i in config_cls.fields()
    }


def config_widgets(
    config_cls: type[BaseConfig],
    names: Iterable[str] | None = None,
    columns: int = 3,
    inactive: Iterable[str] = (),
) -> dict[str, Any]:
    """Widgets for ``names`` (default: every field but the page's own) in a grid; returns
    ``{name: value}`` as the widgets hold them (validation happens in the config).
    ``inactive`` fields (no effect for the chosen variant, see
    :func:`pglab.labels.inactive_fields`) are not drawn and keep their defaults."""
    infos = {i.name: i for i in config_cls.fields()}
    hidden = (*PAGE_FIELDS, *config_cls.unused_fields, *inactive)
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

    The config is validated before this is called, so a bad field starts nothing. All the
    runs share one launch id, so Compare can select the launch as a whole.
    """
    from pglab.store import new_launch_id

    launch = new_launch_id()
    return [
        registry.launch(
            algo, config, seed=s, device=device, name=f"{group} s{s}", group=group, launch=launch
        )
        for s in seeds
    ]


def variant_label(algo: str, settings: dict[str, Any]) -> str:
    """``reinforce rtg+value`` style label of an algorithm and its variant fields."""
    parts = [str(settings[f]) for f in VARIANT_FIELDS.get(algo, ()) if f in settings]
    return f"{algo} {'+'.join(parts)}".strip() if parts else algo
