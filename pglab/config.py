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
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Self

# Limits on user-given JSON and strings (a config is ~1 kB, flat, and its strings are short).
MAX_JSON_BYTES = 1_000_000
MAX_JSON_DEPTH = 32
MAX_STR_LEN = 256  # longest string a config field accepts (env ids, choices)
_SHOWN_CHARS = 60  # longest value echoed back in an error message


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


def short_repr(value: Any, limit: int = _SHOWN_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so a 50 MB string or a 400-digit
    number is never echoed whole in an error message."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**limit:
        return f"an integer of {len(str(abs(value)))} digits"  # str() of a huge int is slow
    text = repr(value)
    if len(text) > limit:
        return text[:limit] + f"... ({len(text)} characters)"
    return text


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )


_KIND = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _allowed(info: FieldInfo) -> str:
    """What the field accepts, in words: ``true or false``, ``in [1, 256]``, ``a string``."""
    if info.type is bool:
        return "true or false"
    spec = info.spec
    if spec.choices is None and spec.low is None and spec.high is None:
        return f"a {_KIND.get(info.type, info.type.__name__)}"
    return spec.describe()


def coerce(info: FieldInfo, value: Any) -> Any:
    """Turn a user-given value (often a string from the CLI or a JSON number) into the field's type.

    Raises ``ValueError`` naming the field and the allowed values for anything else: the
    wrong JSON type, a string longer than :data:`MAX_STR_LEN`, a number beyond float range.
    """
    # The strings "none"/"null" mean None except for a str field, where "none" can be a choice.
    is_null_word = isinstance(value, str) and value.strip().lower() in {"none", "null"}
    if value is None or (is_null_word and info.type is not str):
        if info.optional:
            return None
        raise ValueError(f"{info.name}: a value is required ({_allowed(info)})")
    tp = info.type
    if isinstance(value, str) and len(value) > MAX_STR_LEN:
        raise ValueError(
            f"{info.name}: {short_repr(value)} is too long (at most {MAX_STR_LEN} characters; "
            f"{_allowed(info)})"
        )
    if isinstance(value, _HugeNumber):
        raise ValueError(
            f"{info.name}: {value!r} is beyond the range of a number ({_allowed(info)})"
        )
    if not isinstance(value, str | int | float | bool):
        raise ValueError(
            f"{info.name}: expected {'an' if tp is int else 'a'} {_KIND.get(tp, tp.__name__)} "
            f"({_allowed(info)}), got {_type_name(value)}"
        )
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
            if isinstance(value, int):
                return _check_magnitude(info, value)
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return _check_magnitude(info, int(f))
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                _check_magnitude(info, value)
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise ValueError
            return value.strip()
    except OverflowError:
        raise ValueError(
            f"{info.name}: {short_repr(value)} is beyond the range of a number ({_allowed(info)})"
        ) from None
    except (TypeError, ValueError) as exc:
        if str(exc).startswith(f"{info.name}:"):
            raise
        raise ValueError(
            f"{info.name}: {short_repr(value)} is not a valid {tp.__name__} ({_allowed(info)})"
        ) from None
    return value


def _check_magnitude(info: FieldInfo, value: int) -> int:
    """Refuse integers beyond float range (a 400-digit number) before any float() of them."""
    if abs(value) > 2**63:
        raise ValueError(
            f"{info.name}: {short_repr(value)} is beyond the range of a number ({_allowed(info)})"
        )
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
        "start of every update (costs a little time; A2C's small batches: every k-th update, "
        "at least every 200 env steps).",
        equation="Var = tr Cov(g_i) / m,  SNR = |mean g|^2 / Var",
    )
    rollout: str = param(
        "auto",
        "How rollouts are stepped: 'auto' runs CartPole-v1 on CPU (categorical MLP, no obs "
        "normalisation) as one compiled loop of env and policy (pglab.fastrollout), anything "
        "else through the Python env loop; 'python' always the Python loop (the reference).",
        choices=("auto", "python"),
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
            raise ValueError(f"{info.name}: {short_repr(value)} is not allowed ({spec.describe()})")
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
        shown = name if isinstance(name, str) and len(name) <= _SHOWN_CHARS else short_repr(name)
        raise ValueError(f"{shown}: not a setting of {cls.algo} (known: {known})")

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


# -- user JSON ---------------------------------------------------------------------------------
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings (a cheap pre-scan, no recursion)."""
    depth = best = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            best = max(best, depth)
        else:
            depth -= 1
    return best


class _HugeNumber(float):
    """What an integer literal of more digits than any field allows parses to (inf, with the
    digit count kept for the message), so the field it was given for names itself."""

    digits = 0

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"


def _parse_int(literal: str) -> int | float:
    if len(literal) <= 40:
        return int(literal)
    out = _HugeNumber("inf")
    out.digits = len(literal.lstrip("-"))
    return out


def _no_duplicates(what: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(
                    f"{short_repr(key)}: given twice in the {what}; keep one (JSON keys must be "
                    "unique, else the last silently wins)"
                )
            out[key] = value
        return out

    return hook


def parse_json(text: str | bytes, what: str = "config JSON") -> Any:
    """Parse user-given JSON under limits, raising one-line ``ValueError``s.

    Refused: more than :data:`MAX_JSON_BYTES`, nesting deeper than :data:`MAX_JSON_DEPTH`
    (checked before the parser recurses), duplicate keys in an object, invalid UTF-8 or JSON.
    ``NaN``/``Infinity`` and numbers like ``1e400`` parse (to nan/inf) and are refused by the
    field they are given for, which names itself.
    """
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_JSON_BYTES:
            raise ValueError(
                f"{what}: {len(text):,} bytes is too large (at most {MAX_JSON_BYTES:,}); "
                "a config is about 1 kB"
            )
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what}: not UTF-8 text (byte {exc.start})") from None
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected JSON text, got {type(text).__name__}")
    if len(text) > MAX_JSON_BYTES:
        raise ValueError(
            f"{what}: {len(text):,} characters is too large (at most {MAX_JSON_BYTES:,}); "
            "a config is about 1 kB"
        )
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"{what}: nested {depth} levels deep (at most {MAX_JSON_DEPTH}); a config is one flat "
            'object like {"algo": "ppo", "env_id": "CartPole-v1"}'
        )
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates(what), parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:  # the pre-scan should have caught it; never let it escape
        raise ValueError(f"{what}: nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # duplicate keys; an integer of more than 4300 digits
        msg = str(exc).splitlines()[0]
        if "given twice" in msg:
            raise ValueError(msg) from None
        raise ValueError(f"{what}: {msg}") from None


def parse_config_data(text: str | bytes, what: str = "config JSON") -> tuple[str, dict[str, Any]]:
    """``{"algo": ..., <field>: <value>, ...}`` text -> ``(algo, settings)``, not yet validated
    against the algorithm's fields (see :func:`pglab.store.parse_config_json` for that)."""
    data = parse_json(text, what)
    if not isinstance(data, dict):
        raise ValueError(
            f'{what}: expected a JSON object like {{"algo": "ppo", ...}}, got {_type_name(data)}'
        )
    data = dict(data)
    if "algo" not in data:
        raise ValueError(f'algo: missing from the {what} (e.g. "algo": "ppo")')
    algo = data.pop("algo")
    if not isinstance(algo, str):
        raise ValueError(
            f'algo: expected a string naming the algorithm (e.g. "ppo"), got '
            f"{_type_name(algo)} {short_repr(algo)}"
        )
    if len(algo) > MAX_STR_LEN:
        raise ValueError(f"algo: {short_repr(algo)} is not an algorithm name")
    return algo, data


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``["lr=0.01", "gamma=0.9"]`` -> dict. Values stay strings; :func:`coerce` types them."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set: expected name=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out
