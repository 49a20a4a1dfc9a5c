"""Typed, validated configuration shared by the CLI, the UI widgets and the run store.

Each hyperparameter is declared once with :func:`param`: default, allowed range or choices,
and a one-line help text. The CLI's ``--set name=value``, the Train page's widgets and the
``algos --json`` listing all read the same :class:`Spec`.

Validation happens at the boundary (``__post_init__``) and raises ``ValueError`` naming the
field, the value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class Spec:
    """What a field accepts. ``low``/``high`` are inclusive; ``choices`` lists allowed values."""

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False  # the UI uses a log-scale input (learning rates)
    equation: str | None = None  # what the knob changes, shown in the UI's help

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is not None and self.high is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f">= {self.low:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        return "any value"


def param(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[Any, ...] | None = None,
    log: bool = False,
    equation: str | None = None,
) -> Any:
    """Declare a config field with its default, allowed values and help text."""
    spec = Spec(help=help, low=low, high=high, choices=choices, log=log, equation=equation)
    return dataclasses.field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: type
    default: Any
    spec: Spec
    optional: bool  # None is allowed (e.g. ``target_kl: float | None``)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.__name__,
            "default": self.default,
            "optional": self.optional,
            "help": self.spec.help,
            "low": self.spec.low,
            "high": self.spec.high,
            "choices": list(self.spec.choices) if self.spec.choices is not None else None,
            "log": self.spec.log,
            "equation": self.spec.equation,
        }


def _base_type(tp: Any) -> tuple[type, bool]:
    """``float | None`` -> (float, True); ``int`` -> (int, False)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def coerce(info: FieldInfo, value: Any) -> Any:
    """Turn a user-given value (often a string from the CLI or a JSON number) into the field's type."""
    # The strings "none"/"null" mean None except for a str field, where "none" can be a choice.
    is_null_word = isinstance(value, str) and value.strip().lower() in {"none", "null"}
    if value is None or (is_null_word and info.type is not str):
        if info.optional:
            return None
        raise ValueError(f"{info.name}: a value is required ({info.spec.describe()})")
    tp = info.type
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in {"true", "1", "yes", "on"}:
                    return True
                if low in {"false", "0", "no", "off"}:
                    return False
                raise ValueError
            if isinstance(value, bool | int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise ValueError
            return value.strip()
    except (TypeError, ValueError):
        raise ValueError(
            f"{info.name}: {value!r} is not a valid {tp.__name__} ({info.spec.describe()})"
        ) from None
    return value


@dataclass(frozen=True)
class BaseConfig:
    """Settings shared by every algorithm. Subclasses add their own fields with :func:`param`."""

    algo: ClassVar[str] = "base"
    # Shared fields this algorithm ignores (kept for a uniform config; hidden from the UI).
    unused_fields: ClassVar[tuple[str, ...]] = ()

    env_id: str = param("CartPole-v1", "Gymnasium environment id (one the lab knows).")
    total_steps: int = param(
        100_000,
        "Environment steps to train for, summed over all parallel envs.",
        low=1,
        high=50_000_000,
    )
    learning_rate: float = param(
        3e-4,
        "Adam step size for the policy (and critic).",
        low=1e-6,
        high=1.0,
        log=True,
        equation="theta <- theta + lr * Adam(g)",
    )
    gamma: float = param(
        0.99,
        "Discount factor: how much a reward one step later is worth.",
        low=0.0,
        high=1.0,
        equation="G_t = sum_k gamma^k r_{t+k}",
    )
    hidden_size: int = param(
        64, "Units in each hidden layer of the policy and value MLPs.", low=1, high=1024
    )
    n_layers: int = param(2, "Hidden layers in the policy and value MLPs.", low=0, high=4)
    activation: str = param("tanh", "Hidden-layer nonlinearity.", choices=("tanh", "relu"))
    grad_diagnostics: bool = param(
        True,
        "Measure the policy-gradient variance and SNR from per-episode gradient samples at the "
        "start of every update (costs a little time).",
        equation="Var = tr Cov(g_i) / m,  SNR = |mean g|^2 / Var",
    )

    def __post_init__(self) -> None:
        for info in self.fields():
            value = getattr(self, info.name)
            object.__setattr__(self, info.name, coerce(info, value))
            self._check(info, getattr(self, info.name))
        self.validate()

    @staticmethod
    def _check(info: FieldInfo, value: Any) -> None:
        spec = info.spec
        if value is None:
            return
        if spec.choices is not None and value not in spec.choices:
            raise ValueError(f"{info.name}: {value!r} is not allowed ({spec.describe()})")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(
                    f"{info.name}: {value!r} must be a finite number ({spec.describe()})"
                )
            if (spec.low is not None and value < spec.low) or (
                spec.high is not None and value > spec.high
            ):
                raise ValueError(f"{info.name}: {value!r} is out of range ({spec.describe()})")

    def validate(self) -> None:
        """Cross-field checks; subclasses extend. Raise ``ValueError`` naming the field."""
        from pglab.envs import check_env_id  # local: envs imports gymnasium

        check_env_id(self.env_id)

    # -- introspection -------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> list[FieldInfo]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            tp, optional = _base_type(hints[f.name])
            out.append(FieldInfo(f.name, tp, f.default, f.metadata["spec"], optional))
        return out

    @classmethod
    def field(cls, name: str) -> FieldInfo:
        for info in cls.fields():
            if info.name == name:
                return info
        known = ", ".join(i.name for i in cls.fields())
        raise ValueError(f"{name}: not a setting of {cls.algo} (known: {known})")

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a plain dict (JSON, CLI, widgets); unknown keys are an error."""
        kwargs = {}
        for key, value in data.items():
            info = cls.field(key)
            kwargs[key] = coerce(info, value)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Self:
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps({"algo": self.algo, **self.to_dict()}, indent=2)


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``["lr=0.01", "gamma=0.9"]`` -> dict. Values stay strings; :func:`coerce` types them."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set: expected name=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out
