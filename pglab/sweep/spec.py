"""The sweep spec: one JSON object, validated field by field before anything starts.

    {"algo": "ppo", "env_id": "CartPole-v1", "settings": {"total_steps": 20000},
     "grid": {"learning_rate": [3e-4, 1e-3], "gae_lambda": [0.8, 0.95]},
     "seeds": 2, "objective": "auc"}

Fields (everything but ``algo`` is optional):

- ``algo``, ``env_id``: the algorithm and gymnasium env (``env_id`` may also sit in settings).
- ``settings``: base config fields shared by every trial (validated by the algorithm's config).
- ``grid``: ``{field: [values...]}``; the trials are the cartesian product, in spec order.
- ``search``: ``{field: {"low", "high", "log"}}`` (numeric fields) or ``{field: {"choices":
  [...]}}``, with ``trials`` (how many Optuna trials). ``grid`` and ``search`` exclude each
  other; with neither, the sweep is one trial: a many-seed study of ``settings``.
- ``seeds``: seeds per trial, an int N (seeds 0..N-1) or a list of distinct seeds.
- ``budget``: env steps per run (the config's ``total_steps``; overrides ``settings``).
- ``objective``: ``final_iqm`` (IQM over seeds of each run's final ``rollout/return_last20``),
  ``auc`` (IQM of each run's mean return over its budget) or ``steps_to_threshold`` (IQM of the
  env steps at which ``rollout/return_last20`` first reaches ``threshold``; a run that never
  does counts as its budget). See :mod:`pglab.sweep.objective`.
- ``max_concurrent``: runs training at once (default: the executor's cores).
- ``prune``: Optuna's median pruner on or off for a search (default on).
- ``name``: a label for the lab's Sweeps page.

Every trial's config is built and validated here (a grid: each point; a search: each corner of
the box, since a config's cross-field checks can reject a corner), so a bad spec raises
``ValueError`` naming the field and starts nothing.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBJECTIVES = ("final_iqm", "auc", "steps_to_threshold")
MAX_TRIALS = 1000
MAX_SEEDS = 1000
MAX_CORNERS = 1024  # a search over more than 10 fields checks each field's ends alone
_FIELDS = (
    "algo",
    "env_id",
    "settings",
    "grid",
    "search",
    "trials",
    "seeds",
    "budget",
    "objective",
    "threshold",
    "max_concurrent",
    "prune",
    "name",
    "device",
)
_RESERVED = ("env_id", "total_steps")  # set by the spec's own fields, never swept


@dataclass(frozen=True)
class SearchDim:
    """One searched field: a numeric range (``log``: sampled log-uniformly) or choices."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": list(self.choices or ())}
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class SweepSpec:
    algo: str
    env_id: str
    settings: dict[str, Any] = field(hash=False)  # validated base settings, env_id included
    seeds: tuple[int, ...]
    budget: int  # env steps per run
    objective: str
    grid: dict[str, tuple[Any, ...]] | None = field(default=None, hash=False)
    search: tuple[SearchDim, ...] | None = None
    trials: int = 1  # grid: the product's size; search: Optuna trials; neither: 1
    threshold: float | None = None
    max_concurrent: int | None = None
    prune: bool = True
    name: str | None = None
    device: str = "cpu"

    @property
    def kind(self) -> str:
        return "search" if self.search else "grid" if self.grid else "seeds"

    @property
    def direction(self) -> str:
        """Optuna's direction: fewer steps to the threshold is better, else more return."""
        return "minimize" if self.objective == "steps_to_threshold" else "maximize"

    @property
    def swept(self) -> list[str]:
        """The fields that vary between trials, in spec order."""
        if self.search:
            return [d.name for d in self.search]
        return list(self.grid or {})

    def grid_points(self) -> list[dict[str, Any]]:
        """The grid's trials as ``{field: value}`` (``[{}]`` for a many-seed study)."""
        if not self.grid:
            return [{}]
        names = list(self.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.grid.values())]

    def run_settings(self, point: dict[str, Any]) -> dict[str, Any]:
        """A trial's full settings: base settings, the trial's point, the budget."""
        return {**self.settings, **point, "total_steps": self.budget}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "algo": self.algo,
            "env_id": self.env_id,
            "settings": {k: v for k, v in self.settings.items() if k != "env_id"},
            "seeds": list(self.seeds),
            "budget": self.budget,
            "objective": self.objective,
            "max_concurrent": self.max_concurrent,
            "device": self.device,
        }
        if self.grid:
            out["grid"] = {k: list(v) for k, v in self.grid.items()}
        if self.search:
            out["search"] = {d.name: d.to_json() for d in self.search}
            out["trials"] = self.trials
            out["prune"] = self.prune
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.name:
            out["name"] = self.name
        return out


# -- parsing ----------------------------------------------------------------------------------
def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file; ``ValueError`` names the field at fault."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"spec: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return parse_spec_text(text)


def parse_spec_text(text: str) -> SweepSpec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"spec: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    return parse_spec(data)


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"{name}: {value!r} is not allowed (an integer in [{low}, {high}])")
    if not low <= int(value) <= high:
        raise ValueError(f"{name}: {value!r} is not allowed (an integer in [{low}, {high}])")
    return int(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not allowed (a finite number)")
    return float(value)


def parse_spec(data: Any) -> SweepSpec:
    """Validate a spec (a dict, as parsed from JSON) into a :class:`SweepSpec`."""
    from pglab.algos import ALGO_NAMES, get_trainer_class
    from pglab.algos.base import resolve_device

    if not isinstance(data, dict):
        raise ValueError('spec: expected a JSON object like {"algo": "ppo", ...}')
    unknown = [k for k in data if k not in _FIELDS]
    if unknown:
        raise ValueError(f"{unknown[0]}: not a spec field (known: {', '.join(_FIELDS)})")
    algo = data.get("algo")
    if algo not in ALGO_NAMES:
        raise ValueError(f"algo: {algo!r} is not allowed (one of {', '.join(ALGO_NAMES)})")
    cfg_cls = get_trainer_class(algo).Config

    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError('settings: expected an object of config fields, e.g. {"gamma": 0.99}')
    settings = dict(settings)
    env_id = data.get("env_id", settings.get("env_id", cfg_cls.field("env_id").default))
    if "env_id" in data and "env_id" in settings and settings["env_id"] != data["env_id"]:
        raise ValueError(f"settings.env_id: {settings['env_id']!r} differs from env_id {env_id!r}")
    if not isinstance(env_id, str):
        raise ValueError(f"env_id: {env_id!r} is not allowed (a gymnasium env id)")
    settings["env_id"] = env_id

    if "budget" in data:
        budget = _int("budget", data["budget"], 1, 50_000_000)
    else:
        budget = int(settings.get("total_steps", cfg_cls.field("total_steps").default))
    try:
        base = cfg_cls.from_dict({**settings, "total_steps": budget})
    except ValueError as exc:
        msg = str(exc)
        if msg.startswith("total_steps:") and "budget" in data:
            msg = "budget:" + msg.removeprefix("total_steps:")
        raise ValueError(msg if msg.startswith("env_id:") else f"settings.{msg}") from None
    settings = {k: getattr(base, k) for k in settings if k != "total_steps"}

    seeds_raw = data.get("seeds", 1)
    if isinstance(seeds_raw, list):
        if not seeds_raw:
            raise ValueError("seeds: the list is empty (give an int N or a list of seeds)")
        seeds = tuple(_int("seeds", s, 0, 2**31 - 1) for s in seeds_raw)
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                f"seeds: {seeds_raw!r} repeats a seed (a trial never counts one twice)"
            )
    else:
        seeds = tuple(range(_int("seeds", seeds_raw, 1, MAX_SEEDS)))

    objective = data.get("objective", "final_iqm")
    if objective not in OBJECTIVES:
        raise ValueError(
            f"objective: {objective!r} is not allowed (one of {', '.join(OBJECTIVES)})"
        )
    threshold = None
    if objective == "steps_to_threshold":
        if "threshold" not in data:
            raise ValueError("threshold: required by objective steps_to_threshold (a return)")
        threshold = _number("threshold", data["threshold"])
    elif "threshold" in data:
        raise ValueError(f"threshold: only used by objective steps_to_threshold, not {objective}")

    max_concurrent = data.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = _int("max_concurrent", max_concurrent, 1, 4096)
    prune = data.get("prune", True)
    if not isinstance(prune, bool):
        raise ValueError(f"prune: {prune!r} is not allowed (true or false)")
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name.strip()) <= 80):
        raise ValueError(f"name: {name!r} is not allowed (a string of 1 to 80 characters)")
    device = data.get("device", "cpu")
    if not isinstance(device, str):
        raise ValueError(f"device: {device!r} is not allowed (cpu, cuda or auto)")
    resolve_device(device)

    if "grid" in data and "search" in data:
        raise ValueError("grid: give either grid or search (with trials), not both")
    common = {
        "algo": algo,
        "env_id": env_id,
        "settings": settings,
        "seeds": seeds,
        "budget": budget,
        "objective": objective,
        "threshold": threshold,
        "max_concurrent": max_concurrent,
        "prune": prune,
        "name": name.strip() if name else None,
        "device": device,
    }
    if "search" in data:
        if "trials" not in data:
            raise ValueError("trials: required with search (how many Optuna trials, e.g. 20)")
        trials = _int("trials", data["trials"], 1, MAX_TRIALS)
        dims = _parse_search(cfg_cls, data["search"])
        spec = SweepSpec(**common, search=dims, trials=trials)
        for point in _corners(dims):
            _check_point(cfg_cls, spec, point, "search")
        return spec
    if "trials" in data:
        raise ValueError("trials: only used with search (a grid's trials are its points)")
    grid = _parse_grid(cfg_cls, data.get("grid"))
    n = math.prod(len(v) for v in grid.values()) if grid else 1
    if n > MAX_TRIALS:
        raise ValueError(f"grid: {n} points is too many (at most {MAX_TRIALS} trials)")
    spec = SweepSpec(**common, grid=grid or None, trials=n)
    for point in spec.grid_points():
        _check_point(cfg_cls, spec, point, "grid")
    return spec


def _swept_field(cfg_cls: Any, where: str, name: Any) -> Any:
    if not isinstance(name, str):
        raise ValueError(f"{where}: field names must be strings, got {name!r}")
    if name in _RESERVED:
        raise ValueError(
            f"{where}.{name}: not sweepable here (env_id and the budget are spec fields)"
        )
    try:
        return cfg_cls.field(name)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def _parse_grid(cfg_cls: Any, grid: Any) -> dict[str, tuple[Any, ...]]:
    from pglab.config import coerce

    if grid is None:
        return {}
    if not isinstance(grid, dict) or not grid:
        raise ValueError('grid: expected {"field": [values...], ...} with at least one field')
    out: dict[str, tuple[Any, ...]] = {}
    for name, values in grid.items():
        info = _swept_field(cfg_cls, "grid", name)
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid.{name}: expected a non-empty list of values")
        try:
            coerced = tuple(coerce(info, v) for v in values)
        except ValueError as exc:
            raise ValueError(f"grid.{exc}") from None
        if len(set(map(repr, coerced))) != len(coerced):
            raise ValueError(f"grid.{name}: {values!r} repeats a value")
        out[name] = coerced
    return out


def _parse_search(cfg_cls: Any, search: Any) -> tuple[SearchDim, ...]:
    from pglab.config import coerce

    if not isinstance(search, dict) or not search:
        raise ValueError('search: expected {"field": {"low": ..., "high": ..., "log": ...}, ...}')
    dims = []
    for name, rng in search.items():
        info = _swept_field(cfg_cls, "search", name)
        where = f"search.{name}"
        if not isinstance(rng, dict):
            raise ValueError(
                f'{where}: expected {{"low": ..., "high": ...}} or {{"choices": [...]}}'
            )
        extra = [k for k in rng if k not in ("low", "high", "log", "choices")]
        if extra:
            raise ValueError(f"{where}.{extra[0]}: not allowed (low, high, log or choices)")
        if "choices" in rng:
            if set(rng) != {"choices"}:
                raise ValueError(f"{where}: choices cannot be combined with low/high/log")
            choices = rng["choices"]
            if not isinstance(choices, list) or len(choices) < 2:
                raise ValueError(f"{where}.choices: expected a list of at least two values")
            try:
                values = tuple(coerce(info, v) for v in choices)
            except ValueError as exc:
                raise ValueError(f"search.{exc}") from None
            dims.append(SearchDim(name, "categorical", choices=values))
            continue
        if info.type not in (int, float):
            raise ValueError(f"{where}: {info.type.__name__} field; give {{'choices': [...]}}")
        if "low" not in rng or "high" not in rng:
            raise ValueError(f"{where}: needs both low and high")
        low, high = _number(f"{where}.low", rng["low"]), _number(f"{where}.high", rng["high"])
        if info.type is int:
            low = _int(f"{where}.low", rng["low"], -(2**31), 2**31)
            high = _int(f"{where}.high", rng["high"], -(2**31), 2**31)
        if not low < high:
            raise ValueError(f"{where}: low {low:g} must be below high {high:g}")
        log = rng.get("log", False)
        if not isinstance(log, bool):
            raise ValueError(f"{where}.log: {log!r} is not allowed (true or false)")
        if log and low <= 0:
            raise ValueError(f"{where}.low: {low:g} is not allowed with log (must be > 0)")
        for end, value in (("low", low), ("high", high)):
            spec = info.spec
            if (spec.low is not None and value < spec.low) or (
                spec.high is not None and value > spec.high
            ):
                raise ValueError(f"{where}.{end}: {value:g} is not allowed ({spec.describe()})")
        dims.append(SearchDim(name, info.type.__name__, low, high, log))
    return tuple(dims)


def _corners(dims: tuple[SearchDim, ...]) -> list[dict[str, Any]]:
    """Points that bound the search box: every corner, or each field's ends if too many."""
    ends = [list(d.choices or ()) if d.kind == "categorical" else [d.low, d.high] for d in dims]
    if math.prod(len(e) for e in ends) <= MAX_CORNERS:
        return [
            {d.name: _typed(d, v) for d, v in zip(dims, combo)}
            for combo in itertools.product(*ends)
        ]
    return [{d.name: _typed(d, v)} for d, e in zip(dims, ends) for v in e]


def _typed(dim: SearchDim, value: Any) -> Any:
    return int(value) if dim.kind == "int" else value


def _check_point(cfg_cls: Any, spec: SweepSpec, point: dict[str, Any], where: str) -> None:
    try:
        cfg_cls.from_dict(spec.run_settings(point))
    except ValueError as exc:
        msg = str(exc)
        field_name = msg.split(":", 1)[0]
        if field_name in point:  # a swept value out of range, or clashing with the base
            raise ValueError(f"{where}.{msg}") from None
        shown = ", ".join(f"{k}={v}" for k, v in point.items()) or "the base settings"
        raise ValueError(f"{where}: the trial {shown} is invalid: {msg}") from None


def trial_label(point: dict[str, Any]) -> str:
    """``learning_rate=0.001, gae_lambda=0.8`` (``base settings`` for a many-seed study)."""
    if not point:
        return "base settings"
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
    )
