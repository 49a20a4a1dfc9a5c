"""Running a sweep: trials of N seeds on an executor, scored, searched and recorded.

    spec = load_spec("sweep.json")
    sweep = Sweep(spec, executor="ray")          # or "local" (run processes; the default)
    result = sweep.run()                          # blocks; sweep.start() runs it in a thread
    sweep.pause(); sweep.resume(); sweep.stop()   # the whole sweep, from any thread

Ids: the sweep has its own id (``S`` + 8 hex digits, the ``launch`` of the ``--json`` line);
each trial is a launch in the run store (:func:`pglab.store.new_launch_id`) whose runs are its
seeds, grouped ``sweep <id> · <trial settings>`` so the Compare page draws a trial as one band.

Grid and many-seed sweeps submit every run at once (the executor's ``max_concurrent`` caps how
many train). A search asks Optuna (TPE sampler, median pruner) for a trial whenever a trial's
worth of slots is free; the study lives in SQLite beside the run store
(``<store dir>/optuna.sqlite``, study name = the sweep id) so ``optuna-dashboard
sqlite:///<store dir>/optuna.sqlite`` can open it. The pruner sees the trial's objective on
its seeds' curves cut at each tenth of the budget, aggregated over the seeds before it is
reported, once every seed has passed that step.

A record of the sweep (spec, trials, objectives, status) is written as JSON to
``<store dir>/sweeps/<id>.json`` whenever a trial changes, for the lab's Sweeps page.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pglab.store import TERMINAL_STATUSES, Store, new_launch_id, process_alive, process_marker
from pglab.sweep.objective import Score, curve, intermediate, trial_score
from pglab.sweep.spec import SweepSpec, trial_label

POLL_S = 0.25
CHECKPOINTS = 10  # the pruner's intermediate steps: each tenth of the budget
STOP_TIMEOUT_S = 15.0
TRIAL_STATUSES = ("queued", "running", "paused", "finished", "partial", "pruned", "stopped")
TRIAL_STATUSES += ("failed", "interrupted")


def sweeps_dir(store: Store) -> Path:
    return store.path.parent / "sweeps"


def optuna_storage(store: Store) -> str:
    return f"sqlite:///{store.path.parent / 'optuna.sqlite'}"


@dataclass
class Trial:
    number: int
    point: dict[str, Any]  # the swept values
    settings: dict[str, Any]  # the full settings of its runs
    launch: str
    run_ids: list[str] = field(default_factory=list)
    status: str = "queued"
    score: Score | None = None
    error: str | None = None
    pruned_at: int | None = None
    optuna: Any = None  # the optuna.Trial of a search
    rows: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    reported: int = 0  # checkpoints reported to the pruner so far

    @property
    def label(self) -> str:
        return trial_label(self.point)

    def to_json(self) -> dict[str, Any]:
        score = self.score
        return {
            "number": self.number,
            "launch": self.launch,
            "label": self.label,
            "point": self.point,
            "settings": {k: v for k, v in self.settings.items() if k != "env_id"},
            "run_ids": list(self.run_ids),
            "objective": score.value if score else None,
            "ci": list(score.ci) if score and score.ci else None,
            "n": score.n if score else 0,
            "per_run": score.per_run if score else {},
            "status": self.status,
            "error": self.error,
            "pruned_at": self.pruned_at,
        }


class Sweep:
    """One sweep of ``spec`` on an executor (``local`` or ``ray``), recorded in ``store``."""

    def __init__(
        self,
        spec: SweepSpec,
        store: Store | None = None,
        executor: str = "local",
        address: str | None = None,
        **executor_options: Any,
    ):
        from pglab.sweep.executors import EXECUTORS

        if executor not in EXECUTORS:
            raise ValueError(
                f"executor: {executor!r} is not allowed (one of {', '.join(EXECUTORS)})"
            )
        if address is not None:
            if executor != "ray":
                raise ValueError("address: only used with --executor ray")
            from pglab.sweep.ray_executor import check_address

            address = check_address(address)
        if spec.search:
            try:
                import optuna  # noqa: F401
            except ModuleNotFoundError:
                raise ValueError(
                    "search: optuna is not installed; pip install 'pglab[sweep]' (optuna==5.0.0)"
                ) from None
        self.spec = spec
        self.store = store if store is not None else Store()
        self.executor_kind = executor
        self.address = address
        self._executor_options = executor_options
        self.id = "S" + secrets.token_hex(4)
        self.trials: list[Trial] = []
        self.status = "created"
        self.error: str | None = None
        self.created_at = time.time()
        self.startup_s: float | None = None  # the executor's start-up (Ray: runtime + actor)
        self.executor: Any = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._study: Any = None
        self.record_path = sweeps_dir(self.store) / f"{self.id}.json"

    # -- control (any thread) --------------------------------------------------------------------
    def start(self) -> None:
        """Run the sweep in a background thread (the lab's page); :meth:`join` waits for it."""
        self._thread = threading.Thread(target=self._run_safely, name=f"pglab-sweep-{self.id}")
        self._thread.daemon = True
        self._thread.start()

    def _run_safely(self) -> None:
        with contextlib.suppress(Exception):  # recorded on self.status / self.error
            self.run()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def pause(self) -> None:
        """Pause every run of the sweep (between updates) and start no new trial."""
        with self._lock:
            if self.status != "running":
                return
            self._paused.set()
            self.status = "paused"
            self._each_active_run(lambda ex, rid: ex.pause(rid))
        self._write_record()

    def resume(self) -> None:
        with self._lock:
            if self.status != "paused":
                return
            self._paused.clear()
            self.status = "running"
            self._each_active_run(lambda ex, rid: ex.resume(rid))
        self._write_record()

    def stop(self) -> None:
        """Stop the whole sweep: every run ends ``stopped`` within seconds; returns at once."""
        self._stop.set()
        self._paused.clear()

    @property
    def active(self) -> bool:
        return self.status in ("created", "starting", "running", "paused")

    def _each_active_run(self, fn: Any) -> None:
        ex = self.executor
        if ex is None:
            return
        for trial in self.trials:
            for run_id in trial.run_ids:
                with contextlib.suppress(ValueError):
                    if ex.status(run_id) not in TERMINAL_STATUSES:
                        fn(ex, run_id)

    # -- the loop --------------------------------------------------------------------------------
    def run(self, on_trial: Any = None) -> dict[str, Any]:
        """Run to the end (or :meth:`stop`); returns :meth:`result`. ``on_trial(trial)`` is
        called each time a trial ends."""
        from pglab.sweep.executors import make_executor

        spec = self.spec
        self.status = "starting"
        self._write_record()
        t0 = time.perf_counter()
        try:
            self.executor = make_executor(
                self.executor_kind,
                self.store,
                address=self.address,
                max_concurrent=spec.max_concurrent,
                **self._executor_options,
            )
        except BaseException as exc:
            self.status, self.error = "failed", str(exc)
            self._write_record()
            raise
        self.startup_s = getattr(self.executor, "startup_s", time.perf_counter() - t0)
        with self._lock:
            self.status = "paused" if self._paused.is_set() else "running"
        self._write_record()
        try:
            if spec.search:
                self._run_search(on_trial)
            else:
                for point in spec.grid_points():
                    self._launch_trial(point)
                self._write_record()
                self._watch(on_trial, lambda: False)
        except KeyboardInterrupt:  # Ctrl-C in the CLI: a stop, recorded like any other
            self._stop.set()
        except BaseException as exc:
            self._stop.set()
            self.error = f"{type(exc).__name__}: {exc}"
            self._finish_stop()
            self.status = "failed"
            self._write_record()
            self.executor.close()
            raise
        self._finish_stop()
        self.status = "stopped" if self._stop.is_set() else "finished"
        self.executor.close()
        self._write_record()
        return self.result()

    def _launch_trial(self, point: dict[str, Any], optuna_trial: Any = None) -> Trial:
        from pglab.algos import make_config

        spec = self.spec
        settings = spec.run_settings(point)
        trial = Trial(len(self.trials), point, settings, new_launch_id(), optuna=optuna_trial)
        with self._lock:
            self.trials.append(trial)
        try:
            config = make_config(spec.algo, settings)
        except ValueError as exc:  # a sampled point a cross-field check rejects
            trial.status, trial.error = "failed", str(exc)
            return trial
        group = f"sweep {self.id} · {trial.label}"
        for seed in spec.seeds:
            run_id = self.executor.submit(
                spec.algo,
                config,
                seed,
                spec.device,
                name=f"sweep-{self.id}-t{trial.number}-s{seed}",
                group=group,
                launch=trial.launch,
            )
            trial.run_ids.append(run_id)
            trial.rows[run_id] = []
            if self._paused.is_set():
                self.executor.pause(run_id)
        trial.status = "paused" if self._paused.is_set() else "running"
        return trial

    def _open(self) -> list[Trial]:
        return [t for t in self.trials if t.status in ("queued", "running", "paused")]

    def _watch(self, on_trial: Any, want_more: Any) -> None:
        """Poll the open trials until they have all ended and ``want_more()`` is false."""
        while True:
            if self._stop.is_set():
                return
            for trial in self._open():
                self._update(trial, on_trial)
            if want_more():
                continue
            if not self._open():
                return
            time.sleep(POLL_S)

    def _update(self, trial: Trial, on_trial: Any) -> None:
        ex = self.executor
        statuses = []
        for run_id in trial.run_ids:
            rows, _ = ex.rows(run_id, len(trial.rows[run_id]))
            trial.rows[run_id].extend(rows)
            statuses.append(ex.status(run_id))
        if trial.optuna is not None and self.spec.prune:
            self._report(trial)
            if trial.status == "pruned":
                return
        if all(s in TERMINAL_STATUSES for s in statuses):
            self._close_trial(trial, statuses)
            if on_trial is not None:
                on_trial(trial)
            self._write_record()
        elif trial.status in ("running", "paused"):
            trial.status = "paused" if self._paused.is_set() else "running"

    def _curves(self, trial: Trial, run_ids: list[str]) -> dict[str, Any]:
        return {rid: curve(trial.rows[rid]) for rid in run_ids}

    def _close_trial(self, trial: Trial, statuses: list[str]) -> None:
        spec = self.spec
        finished = [rid for rid, s in zip(trial.run_ids, statuses) if s == "finished"]
        trial.score = trial_score(
            self._curves(trial, finished), spec.objective, spec.budget, spec.threshold
        )
        if len(finished) == len(statuses):
            trial.status = "finished"
        elif finished:
            trial.status = "partial"
        else:
            trial.status = next(
                (s for s in ("failed", "interrupted", "stopped") if s in statuses), "failed"
            )
        bad = [s for s in statuses if s != "finished"]
        if bad and trial.error is None:
            trial.error = f"{len(bad)} of {len(statuses)} runs ended {', '.join(sorted(set(bad)))}"
        if trial.optuna is not None:
            self._tell(trial)

    # -- search ----------------------------------------------------------------------------------
    def _run_search(self, on_trial: Any) -> None:
        import optuna

        spec = self.spec
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the library never prints
        self._study = optuna.create_study(
            storage=optuna_storage(self.store),
            study_name=self.id,
            direction=spec.direction,
            sampler=optuna.samplers.TPESampler(seed=0),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        )
        self._study.set_user_attr("pglab_spec", spec.to_json())
        in_flight = max(1, self.executor.max_concurrent // len(spec.seeds))

        def want_more() -> bool:
            if self._paused.is_set() or len(self.trials) >= spec.trials:
                return False
            if len(self._open()) >= in_flight:
                return False
            ot = self._study.ask()
            point = {}
            for dim in spec.search or ():
                if dim.kind == "categorical":
                    point[dim.name] = ot.suggest_categorical(dim.name, list(dim.choices or ()))
                elif dim.kind == "int":
                    point[dim.name] = ot.suggest_int(
                        dim.name, int(dim.low), int(dim.high), log=dim.log
                    )
                else:
                    point[dim.name] = ot.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
            ot.set_user_attr("launch", "")
            trial = self._launch_trial(point, ot)
            ot.set_user_attr("launch", trial.launch)
            ot.set_user_attr("run_ids", trial.run_ids)
            if trial.status == "failed":
                self._tell(trial)
                if on_trial is not None:
                    on_trial(trial)
            self._write_record()
            return True

        self._watch(on_trial, want_more)

    def _report(self, trial: Trial) -> None:
        """Report the seeds' objective at each tenth of the budget all of them have passed."""
        spec = self.spec
        curves = list(self._curves(trial, trial.run_ids).values())
        reached = min(
            (int(rows[-1].get("time/env_steps", 0)) if rows else 0) for rows in trial.rows.values()
        )
        while trial.reported < CHECKPOINTS - 1:
            step = (trial.reported + 1) * spec.budget // CHECKPOINTS
            if reached < step:
                return
            trial.reported += 1
            value = intermediate(curves, spec.objective, step, spec.threshold)
            if value is None or not math.isfinite(value):
                continue
            trial.optuna.report(value, step)
            if trial.optuna.should_prune():
                trial.status, trial.pruned_at = "pruned", step
                for run_id in trial.run_ids:
                    self.executor.stop(run_id)
                self._study.tell(trial.optuna, state=_optuna_state("PRUNED"))
                self._write_record()
                return

    def _tell(self, trial: Trial) -> None:
        value = trial.score.value if trial.score else None
        if value is None:
            self._study.tell(trial.optuna, state=_optuna_state("FAIL"))
        else:
            self._study.tell(trial.optuna, value)

    # -- stopping ----------------------------------------------------------------------------------
    def _finish_stop(self) -> None:
        """After a stop: stop every run, wait for them to end, close the open trials."""
        if not self._stop.is_set():
            return
        self._each_active_run(lambda ex, rid: ex.stop(rid))
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            pending = [
                rid
                for t in self.trials
                for rid in t.run_ids
                if self.executor.status(rid) not in TERMINAL_STATUSES
            ]
            if not pending:
                break
            time.sleep(0.1)
        for trial in self.trials:
            if trial.status == "pruned":
                continue
            for run_id in trial.run_ids:
                rows, _ = self.executor.rows(run_id, len(trial.rows[run_id]))
                trial.rows[run_id].extend(rows)
            if trial.status in ("queued", "running", "paused"):
                statuses = [self.executor.status(rid) for rid in trial.run_ids]
                self._close_trial(trial, statuses)
                if trial.status != "finished":
                    trial.status = "stopped"

    # -- results -----------------------------------------------------------------------------------
    def best(self) -> Trial | None:
        scored = [t for t in self.trials if t.score is not None and t.score.value is not None]
        if not scored:
            return None
        sign = -1.0 if self.spec.direction == "minimize" else 1.0
        return max(scored, key=lambda t: sign * t.score.value)  # type: ignore[union-attr]

    def progress(self) -> list[dict[str, Any]]:
        """Per trial: status, runs ended, mean fraction of the budget done, latest return."""
        out = []
        for trial in list(self.trials):
            fractions, returns = [], []
            for rows in list(trial.rows.values()):  # the sweep's thread may add to it
                last = rows[-1] if rows else {}
                fractions.append(min(1.0, last.get("time/env_steps", 0) / self.spec.budget))
                ret = last.get("rollout/return_last20")
                if ret is not None and math.isfinite(ret):
                    returns.append(ret)
            out.append(
                {
                    "number": trial.number,
                    "label": trial.label,
                    "status": trial.status,
                    "fraction": sum(fractions) / len(fractions) if fractions else 0.0,
                    "return_now": sum(returns) / len(returns) if returns else None,
                }
            )
        return out

    def result(self) -> dict[str, Any]:
        """The ``--json`` object: ``launch`` (the sweep id), ``trials`` and ``best``."""
        best = self.best()
        return {
            "launch": self.id,
            "name": self.spec.name,
            "status": self.status,
            "error": self.error,
            "executor": self.executor_kind,
            "address": self.address,
            "algo": self.spec.algo,
            "env_id": self.spec.env_id,
            "objective": self.spec.objective,
            "direction": self.spec.direction,
            "seeds": list(self.spec.seeds),
            "budget": self.spec.budget,
            "startup_s": self.startup_s,
            "optuna_storage": optuna_storage(self.store) if self.spec.search else None,
            "trials": [t.to_json() for t in list(self.trials)],
            "best": best.to_json() if best is not None else None,
        }

    def record(self) -> dict[str, Any]:
        """:meth:`result` with the spec, the live progress and the driver's identity: what
        ``<store dir>/sweeps/<id>.json`` holds and the Sweeps page draws."""
        return {
            **self.result(),
            "spec": self.spec.to_json(),
            "created_at": self.created_at,
            "pid": os.getpid(),
            "proc_start": process_marker(),
            "progress": self.progress(),
        }

    def _write_record(self) -> None:
        record = self.record()
        path = self.record_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps(record, default=str))
        os.replace(tmp, path)


def _optuna_state(name: str) -> Any:
    import optuna

    return getattr(optuna.trial.TrialState, name)


def list_records(store: Store) -> list[dict[str, Any]]:
    """Sweep records of this store, newest first; a record whose driver died reads
    ``interrupted`` (its runs are marked so by the store)."""
    out = []
    folder = sweeps_dir(store)
    if not folder.is_dir():
        return out
    for path in folder.glob("S*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("status") in ("created", "starting", "running", "paused") and not (
            process_alive(record.get("pid"), record.get("proc_start"), None)
        ):
            record["status"] = "interrupted"
        out.append(record)
    out.sort(key=lambda r: r.get("created_at", 0), reverse=True)
    return out
