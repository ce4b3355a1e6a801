"""Optuna tuning of one model on one fold's training view: create or join the study, run trials, stop on budget.

Budget (see :class:`studies.presets.TrialBudget`): ``n_trials`` is the study's *total*, counted from storage,
so a second process with the same command and storage joins the study and together they stop at exactly N.
``tuning_seconds``: no trial starts once the summed trial durations, plus the mean duration of the trials so
far (the expected length of the next one), would pass it; so a study whose first trial took most of the
seconds stops there instead of overrunning by a whole further fit.
Trials that count: COMPLETE, PRUNED, and FAIL by a crash of the model (diverging loss, out of memory, ...).
Trials that do not count: those interrupted (Ctrl-C, kill), which are re-queued with the same parameters when
the study resumes, and "surplus" trials, which stop at once without fitting anything: one started by a racing
process after the total was reached, or a second copy of the defaults trial queued by a process that started
a new study at the same moment as another.

Interrupted trials: a trial left RUNNING by a process that no longer exists (same host, checked by pid and
process start time) is marked FAIL and re-queued; no finished trial is lost or repeated.

Trials see :class:`benchmarks.splits.TrainingData` only: no test data reaches this module.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from benchmarks.atomic import atomic_write
from benchmarks.contract import CurvePoint, FitReport, Model
from benchmarks.errors import BenchError, UsageError
from benchmarks.splits import TrainingData
from studies.presets import Preset, TrialBudget
from studies.spaces import ModelSearch, Space, check_space, default_trial_params, suggest
from studies.workers import current_worker, is_alive

log = logging.getLogger(__name__)

# Trial user attributes this module writes.
ATTR_WORKER = "worker"  # who runs the trial (studies.workers)
ATTR_FAILURE = "failure"  # set when the model crashed: "<ExceptionType>: message"; such a FAIL counts
ATTR_SURPLUS = "surplus"  # why a trial was not run: "budget" (taken by other processes) or "duplicate" (defaults)
ATTR_INTERRUPTED = "interrupted"  # found RUNNING with its local process dead; does not count, re-queued
ATTR_RETRY_OF = "retry_of"  # number of the interrupted trial this one re-runs
ATTR_MODEL_PARAMS = "model_params"  # the full parameter dict the model was built with (JSON)
ATTR_DEFAULTS = "defaults"  # set on the enqueued trial 0: the model's defaults (under the preset's caps)
ATTR_FIT_IDENTITY = "fit_identity"  # digest of (model parameters, seed, training rows) of a saved trial model
ATTR_MODEL_FILE = "model_file"  # where the trial's fitted model was saved (for refit reuse)
STUDY_ATTR_CONFIG = "config"  # what the trials were run on; a rerun with different data is refused

STUDY_ATTR_WORKER_PREFIX = "worker:"  # one study attribute per process that has worked on the study
# A RUNNING trial whose process was killed between creating it and recording its worker has no owner. It is
# taken as dead at once when no other process that worked on the study is alive, else after this long.
STALE_OWNERLESS_SECONDS = 60.0

HEARTBEAT_ENV = "IRNET_BENCH_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10
HEARTBEAT_GRACE = 3  # missed heartbeats before a running trial is taken as dead


def _trial_failures() -> tuple[type[BaseException], ...]:
    """Exceptions that make a trial FAIL while the study goes on.

    Numerical blow-ups (FloatingPointError), out-of-memory (MemoryError; torch's OutOfMemoryError is a
    RuntimeError), and library errors on a bad configuration (ValueError, XGBoostError, LightGBMError).
    Programming errors (TypeError, KeyError, ...) and usage errors still stop the run.
    """
    failures: list[type[BaseException]] = [ArithmeticError, MemoryError, RuntimeError, ValueError]
    try:
        from lightgbm.basic import LightGBMError

        failures.append(LightGBMError)
    except ImportError:  # lightgbm is a dependency, but tuning other models must not need it
        pass
    return tuple(failures)


TRIAL_FAILURES = _trial_failures()


class SurplusTrial(Exception):
    """Raised inside a trial that started after the study's budget was reached by another process."""


class _OneLineTrialFailures(logging.Filter):
    """Optuna logs a failed trial with its whole traceback, then once more as "failed with value None".
    Keep one line per failure (the trial's MLflow run carries the message); a surplus trial is no failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if SurplusTrial.__name__ in message or "failed with value None" in message:
            return False
        record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("optuna.study._optimize").addFilter(_OneLineTrialFailures())


# --------------------------------------------------------------------------------------------- storage ---


def heartbeat_seconds() -> int:
    """How often a running trial records that its worker is alive ($IRNET_BENCH_HEARTBEAT_S, default 10)."""
    try:
        return max(1, int(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)))
    except ValueError:
        raise UsageError(f"${HEARTBEAT_ENV} must be a whole number of seconds") from None


def make_storage(url: str) -> RDBStorage:
    """An Optuna RDB storage for ``url`` with trial heartbeats; a clear UsageError (exit 2) when it cannot be
    reached.

    Heartbeats are how workers on other machines find a trial whose worker died (SIGKILL, power loss): after
    ``HEARTBEAT_GRACE`` missed beats the trial is failed and queued again with the same parameters.
    """
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes may share one sqlite file; wait for a lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 120}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
        engine_kwargs["pool_pre_ping"] = True  # a server restart between trials is not an error
    beat = heartbeat_seconds()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=beat,
                grace_period=beat * HEARTBEAT_GRACE,
                heartbeat_stale_trial_callback=requeue_interrupted,
            )
    except Exception as exc:  # SQLAlchemy raises many types (OperationalError, ArgumentError, ImportError...)
        raise UsageError(f"cannot open Optuna storage {redact_url(url)}: {type(exc).__name__}: {first_line(exc)}") from None


def redact_url(url: str) -> str:
    """A URL without its password, for error messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


# ----------------------------------------------------------------------------------------------- study ---


@dataclass(frozen=True)
class StudyKey:
    """Identifies one study: one model tuned on one fold for one seed under one preset."""

    task: str
    model: str
    fold: int
    seed: int
    preset: str
    train_size: int | None = None  # training rows of the study (a scaling study has one study per size)

    @property
    def name(self) -> str:
        size = "" if self.train_size is None else f"/n{self.train_size}"
        return f"{self.task}/{self.model}/fold{self.fold}/seed{self.seed}/{self.preset}{size}"


def open_study(
    storage: RDBStorage | str,
    key: StudyKey,
    *,
    search: ModelSearch,
    preset: Preset,
    config: Mapping[str, Any],
) -> optuna.Study:
    """Create the study, or load it when it exists (a resumed run or a joining process).

    TPE seeded with the study's seed; median pruning on the intermediate validation MAE. ``config``
    (data checksum, training-row cap, featuriser, ...) is stored on a new study and compared on a loaded
    one: trials run on other data must not be mixed in.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=key.name,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=key.seed, n_startup_trials=preset.tpe_startup_trials),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=preset.pruner_startup_trials, n_warmup_steps=search.warmup_steps
        ),
    )
    wanted = json.loads(json.dumps(dict(config), sort_keys=True))
    stored = study.user_attrs.get(STUDY_ATTR_CONFIG)
    if stored is None:
        study.set_user_attr(STUDY_ATTR_CONFIG, wanted)
    elif stored != wanted:
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise UsageError(
            f"study {key.name} in this storage was run with other settings ({', '.join(changed)}: "
            f"{[stored.get(k) for k in changed]} there, {[wanted.get(k) for k in changed]} now); "
            "use the same settings to resume, or another --out/--storage"
        )
    return study


def enqueue_defaults(
    study: optuna.Study, space: Space, defaults: Mapping[str, Any], extra: Sequence[Mapping[str, Any]] = ()
) -> bool:
    """Queue ``defaults`` as trial 0, then each configuration of ``extra`` (full parameter dicts) that the
    space can represent, only in a study that has no trial yet (so a resumed or joined study never queues
    them twice). Returns whether it queued them."""
    if study.get_trials(deepcopy=False):
        return False
    study.enqueue_trial(default_trial_params(space, defaults), user_attrs={ATTR_DEFAULTS: True}, skip_if_exists=True)
    for params in extra:
        try:
            raw = default_trial_params(space, params)
        except ValueError:  # the preset's space leaves it out (e.g. batch 32 in `quick`)
            continue
        study.enqueue_trial(raw, skip_if_exists=True)
    return True


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Whether a trial is one of the study's N: complete, pruned, or crashed by the model."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and ATTR_FAILURE in trial.user_attrs


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count toward the budget, in trial-number order."""
    return [t for t in study.get_trials(deepcopy=False) if counts_toward_budget(t)]


def spent_seconds(trials: list[FrozenTrial]) -> float:
    """Summed durations of ``trials`` (the tuning time a budget in seconds is measured in)."""
    total = 0.0
    for t in trials:
        if t.datetime_start is not None and t.datetime_complete is not None:
            total += (t.datetime_complete - t.datetime_start).total_seconds()
    return total


def budget_reached(trials: list[FrozenTrial], budget: TrialBudget) -> bool:
    """Whether the counted ``trials`` exhaust the budget: N trials, or tuning seconds that the next trial,
    expected to last as long as the mean trial so far, would pass."""
    if len(trials) >= budget.n_trials:
        return True
    if budget.tuning_seconds is None or not trials:
        return False
    spent = spent_seconds(trials)
    return spent + spent / len(trials) > budget.tuning_seconds


def register_worker(study: optuna.Study) -> None:
    """Record that this process works on ``study`` (before it starts any trial), so that others can tell
    whether a RUNNING trial without a recorded owner may still belong to a live process."""
    study.set_user_attr(STUDY_ATTR_WORKER_PREFIX + current_worker(), time.time())


def _other_workers_alive(study: optuna.Study) -> bool:
    me = current_worker()
    workers = [k.removeprefix(STUDY_ATTR_WORKER_PREFIX) for k in study.user_attrs if k.startswith(STUDY_ATTR_WORKER_PREFIX)]
    return any(w != me and is_alive(w) for w in workers)


def _running_elsewhere(trial: FrozenTrial, others_alive: bool) -> bool:
    """A RUNNING trial whose process still exists (or may: another host, or an owner not yet recorded while
    another process that works on the study is alive)."""
    if trial.state != TrialState.RUNNING:
        return False
    owner = trial.user_attrs.get(ATTR_WORKER)
    if owner is None:
        started = trial.datetime_start or datetime.now()
        return others_alive and datetime.now() - started < timedelta(seconds=STALE_OWNERLESS_SECONDS)
    return is_alive(owner)


def requeue_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue an interrupted trial again with the parameters it had drawn, once.

    Optuna calls this for a trial whose heartbeat went stale (its worker died, on any machine);
    :func:`recover_interrupted` calls it for trials found dead by process id or cut short by Ctrl-C.
    """
    trials = study.get_trials(deepcopy=False)
    if any(t.user_attrs.get(ATTR_RETRY_OF) == trial.number for t in trials):
        return
    attrs: dict[str, Any] = {ATTR_RETRY_OF: trial.number}
    if trial.user_attrs.get(ATTR_DEFAULTS):
        attrs[ATTR_DEFAULTS] = True
    study.enqueue_trial(trial.params, user_attrs=attrs)
    log.info("%s: trial %d was interrupted; queued again", study.study_name, trial.number)


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by dead processes as FAIL, and re-queue every interrupted trial once.

    Dead means: a stale heartbeat (any machine), or a process that no longer exists (this machine).
    Returns the numbers of the trials found interrupted (for the tracker to mark their runs).
    """
    from optuna.storages import fail_stale_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fail_stale_trials is marked experimental
        fail_stale_trials(study)  # calls requeue_interrupted for each trial it fails
    trials = study.get_trials(deepcopy=False)
    others_alive = _other_workers_alive(study)
    interrupted: list[FrozenTrial] = []
    for t in trials:
        if t.state == TrialState.RUNNING and not _running_elsewhere(t, others_alive):
            study._storage.set_trial_user_attr(t._trial_id, ATTR_INTERRUPTED, True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            interrupted.append(t)
        elif t.state == TrialState.FAIL and not counts_toward_budget(t) and not t.user_attrs.get(ATTR_SURPLUS):
            interrupted.append(t)  # Ctrl-C (Optuna marks the trial FAIL) or a stale heartbeat
    for t in interrupted:
        requeue_interrupted(study, t)
    return [t.number for t in interrupted]


# ---------------------------------------------------------------------------------------------- trials ---


@dataclass
class TrialOutcome:
    """What one trial did, for the tracker: state, parameters, validation curve, no test data."""

    number: int
    state: str  # "COMPLETE", "PRUNED" or "FAIL"
    params: dict[str, Any]  # the full model parameters
    value: float | None  # best validation MAE (COMPLETE), last reported (PRUNED), None (FAIL)
    curve: list[CurvePoint]  # from the fit report; for a pruned trial, the steps seen (train_mae NaN)
    started: float  # unix time
    finished: float
    report: FitReport | None = None
    failure: str | None = None
    retry_of: int | None = None
    is_defaults: bool = False


class TrialRecorder(Protocol):
    """Where trials are recorded besides Optuna (MLflow: :class:`studies.tracking.MlflowTrialRecorder`)."""

    def record(self, outcome: TrialOutcome) -> None: ...

    def interrupted(self, numbers: list[int]) -> None: ...


@dataclass
class TuningResult:
    """The outcome of a study: the best configuration and what the budget bought."""

    best_params: dict[str, Any]
    best_value: float
    best_trial_number: int
    n_trials: int  # trials that counted (complete, pruned, crashed)
    n_complete: int
    tuning_seconds: float  # summed trial durations
    history: list[tuple[int, str, float | None]] = field(default_factory=list)  # (number, state, value)
    best_fit_identity: str | None = None  # set when the best trial's fitted model was saved
    best_model_file: str | None = None


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as plain JSON values (numpy scalars to Python)."""
    return json.loads(json.dumps(dict(params), default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def fit_identity(params: Mapping[str, Any], seed: int, training: TrainingData) -> str:
    """A digest of what decides a fit: the full model parameters, the seed, and the training and validation
    rows (ids, features, targets). Two fits with one identity are the same computation."""
    digest = hashlib.sha256(json.dumps(jsonable(params), sort_keys=True).encode())
    digest.update(f"|seed={int(seed)}|".encode())
    for ids in (training.train_ids, training.val_ids):
        digest.update("\n".join(map(str, ids)).encode() + b"|")
    for array in (training.X_train, training.y_train, training.X_val, training.y_val):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


def save_trial_fit(folder: Path, number: int, model: Model, report: FitReport, identity: str) -> Path:
    """Save a trial's fitted model and its report (atomically; the report file, written last, names the
    model file and the fit identity). Returns the report file."""
    model_path = model.save(folder / f"trial-{number}.model.pkl")
    fit_path = folder / f"trial-{number}.fit.pkl"
    with atomic_write(fit_path, "wb") as handle:
        pickle.dump({"identity": identity, "model_file": model_path.name, "report": report}, handle)
    return fit_path


def load_trial_fit(fit_path: str | Path, identity: str, *, device: str = "cpu") -> tuple[Model, FitReport] | None:
    """The saved model and report of a trial whose fit has ``identity``; None when the file is missing (e.g.
    the trial ran on another machine) or was made by a different fit."""
    fit_path = Path(fit_path)
    try:
        with open(fit_path, "rb") as handle:
            saved = pickle.load(handle)
        if saved.get("identity") != identity:
            return None
        return Model.load(fit_path.parent / saved["model_file"], device=device), saved["report"]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, AttributeError, ImportError):
        log.warning("could not reuse the trial model %s; refitting", fit_path, exc_info=True)
        return None


def tune(
    study: optuna.Study,
    *,
    model_cls: type[Model],
    search: ModelSearch,
    space: Space,
    training: TrainingData,
    budget: TrialBudget,
    seed: int,
    device: str,
    recorder: TrialRecorder | None = None,
    progress: bool = True,
    description: str = "",
    trial0: Mapping[str, Any] | None = None,
    extra_trials: Sequence[Mapping[str, Any]] = (),
    model_dir: Path | None = None,
) -> TuningResult:
    """Run trials until the study's budget is reached (counting every process's trials) and return the best.

    ``space`` is the search after preset overrides (fixed entries included). Each trial builds
    ``model_cls(params, seed=seed, device=device)``, fits it on the training rows with early stopping and
    pruning on the validation rows, and returns its best validation MAE. Trial 0 is the model's defaults
    updated with ``trial0``; ``extra_trials`` (full parameter dicts the space can represent) follow it.
    With ``model_dir``, the best trial so far of this process keeps its fitted model there, so that a refit
    that would repeat it exactly can reuse it (:func:`load_trial_fit`).
    """
    defaults = model_cls.default_params()
    check_space(space, defaults, model=model_cls.name)
    register_worker(study)
    numbers = recover_interrupted(study)
    if numbers and recorder is not None:
        recorder.interrupted(numbers)
    enqueue_defaults(study, space, {**defaults, **(trial0 or {})}, extra_trials)

    # Without a progress bar (stderr not a terminal), timed log lines instead.
    heartbeat = None if progress else ProgressLog(description or study.study_name)
    objective = _Objective(study, model_cls, search, space, training, budget, seed, device, recorder, model_dir,
                           heartbeat=heartbeat)  # fmt: skip
    counted = finished_trials(study)
    if not budget_reached(counted, budget):
        bar = _progress_bar(budget, len(counted), description, progress)
        if heartbeat is not None:
            heartbeat.say(f"started: {budget.n_trials} trials budget, {len(counted)} done earlier")
        try:
            with heartbeat or contextlib.nullcontext():
                study.optimize(
                    objective,
                    n_trials=None,  # the budget callback stops the study: N is a total across processes
                    catch=TRIAL_FAILURES + (SurplusTrial,),
                    callbacks=[_BudgetCallback(budget, bar, heartbeat)],
                    gc_after_trial=True,
                )
        finally:
            if bar is not None:
                bar.close()
    result = _result(study)
    if heartbeat is not None:
        heartbeat.say(f"done: {result.n_trials} trials, best validation MAE {result.best_value:.4g}")
    return result


class ProgressLog:
    """Timed progress lines for logs (stderr not a terminal), so a long stage is never minutes of silence.

    :meth:`say` logs a line now; :meth:`maybe` logs one if ``interval_s`` passed since the last (or when
    forced). Used as a context manager, a daemon thread also says "still running" after ``interval_s`` of
    silence, which covers a single trial or refit longer than that.
    """

    def __init__(self, description: str, interval_s: float = 30.0, every_trials: int = 5) -> None:
        self.description, self.interval_s, self.every_trials = description, interval_s, every_trials
        self.started = self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def say(self, message: str) -> None:
        log.info("%s: %s (%.0f s)", self.description, message, time.monotonic() - self.started)
        self.last = time.monotonic()

    def maybe(self, message: Callable[[], str], *, force: bool = False) -> None:
        if force or time.monotonic() - self.last >= self.interval_s:
            self.say(message())

    def _tick(self) -> None:
        while not self._stop.wait(max(0.01, self.interval_s - (time.monotonic() - self.last))):
            self.maybe(lambda: "still running")

    def __enter__(self) -> "ProgressLog":
        self._thread = threading.Thread(target=self._tick, name="progress-log", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class _Objective:
    """One trial: sample, fit on training rows, report validation MAE per step, record, return the best."""

    def __init__(
        self,
        study: optuna.Study,
        model_cls: type[Model],
        search: ModelSearch,
        space: Space,
        training: TrainingData,
        budget: TrialBudget,
        seed: int,
        device: str,
        recorder: TrialRecorder | None,
        model_dir: Path | None = None,
        *,
        heartbeat: ProgressLog | None = None,
    ) -> None:
        self.study, self.model_cls, self.search, self.space = study, model_cls, search, space
        self.training, self.budget, self.seed, self.device, self.recorder = training, budget, seed, device, recorder
        self.model_dir = model_dir
        self.heartbeat = heartbeat
        self._saved: list[Path] = []  # this process's saved trial fits (only the best is kept)

    def _surplus_reason(self, trial: optuna.Trial) -> str | None:
        """Why this trial must not run, if it must not: "budget" when earlier trials (finished, or running in
        live processes) already make up the budget; "duplicate" for a second copy of the defaults trial (two
        processes that start a new study together both queue it; trial numbers are assigned atomically, so
        the lower number is the one that runs)."""
        earlier = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        if trial.user_attrs.get(ATTR_DEFAULTS) and ATTR_RETRY_OF not in trial.user_attrs:
            if any(t.user_attrs.get(ATTR_DEFAULTS) and ATTR_RETRY_OF not in t.user_attrs for t in earlier):
                return "duplicate"
        counted = [t for t in earlier if counts_toward_budget(t)]
        others_alive = _other_workers_alive(self.study)
        running = [t for t in earlier if _running_elsewhere(t, others_alive)]
        if len(counted) + len(running) >= self.budget.n_trials:
            return "budget"
        if self.budget.tuning_seconds is not None and spent_seconds(counted) >= self.budget.tuning_seconds:
            return "budget"
        return None

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(ATTR_WORKER, current_worker())
        reason = self._surplus_reason(trial)
        if reason is not None:
            trial.set_user_attr(ATTR_SURPLUS, reason)
            if reason == "budget":
                self.study.stop()  # the other processes' running trials complete the budget
            raise SurplusTrial(f"trial {trial.number}: not run ({reason})")

        started = time.time()
        retry_of = trial.user_attrs.get(ATTR_RETRY_OF)
        is_defaults = bool(trial.user_attrs.get(ATTR_DEFAULTS))
        params = suggest(trial, self.space)
        model_params: dict[str, Any] = jsonable(params)  # replaced by the merged dict once the model is built
        seen: list[CurvePoint] = []

        def outcome(state: str, **kw: Any) -> TrialOutcome:
            return TrialOutcome(trial.number, state, model_params, started=started, finished=time.time(),
                                retry_of=retry_of, is_defaults=is_defaults, **kw)  # fmt: skip

        try:
            model = self.model_cls(params, seed=self.seed, device=self.device)
            model_params = jsonable(model.params)
            trial.set_user_attr(ATTR_MODEL_PARAMS, model_params)
            report = model.fit(
                self.training.X_train,
                self.training.y_train,
                self.training.X_val,
                self.training.y_val,
                on_step=self._step_callback(trial, seen, started),
                time_limit_s=self.budget.fit_seconds,
            )
            if not math.isfinite(report.best_val_mae):
                raise FloatingPointError(f"validation MAE is {report.best_val_mae}")
        except optuna.TrialPruned:
            last = seen[-1].val_mae if seen else None
            self._record(outcome("PRUNED", value=last, curve=seen))
            raise
        except TRIAL_FAILURES as exc:
            message = f"{type(exc).__name__}: {first_line(exc)}"
            trial.set_user_attr(ATTR_FAILURE, message)
            self._record(outcome("FAIL", value=None, curve=seen, failure=message))
            raise
        trial.set_user_attr("best_step", report.best_step)
        trial.set_user_attr("stopped", report.stopped)
        trial.set_user_attr("fit_seconds", report.fit_seconds)
        self._keep_if_best(trial, model, report, model_params)
        self._record(outcome("COMPLETE", value=report.best_val_mae, curve=report.curve, report=report))
        return float(report.best_val_mae)

    def _keep_if_best(self, trial: optuna.Trial, model: Model, report: FitReport, params: dict[str, Any]) -> None:
        """Save the fitted model of a trial that beats every completed trial so far (for refit reuse), and
        drop this process's earlier saves."""
        if self.model_dir is None:
            return
        values = [t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.number != trial.number and t.value is not None]  # fmt: skip
        if values and not report.best_val_mae < min(values):
            return
        identity = fit_identity(params, self.seed, self.training)
        fit_path = save_trial_fit(self.model_dir, trial.number, model, report, identity)
        trial.set_user_attr(ATTR_FIT_IDENTITY, identity)
        trial.set_user_attr(ATTR_MODEL_FILE, str(fit_path))
        for old in self._saved:
            old.unlink(missing_ok=True)
            old.with_name(old.name.replace(".fit.pkl", ".model.pkl")).unlink(missing_ok=True)
        self._saved = [fit_path]

    def _step_callback(self, trial: optuna.Trial, seen: list[CurvePoint], started: float) -> Callable[[int, float], None]:
        every = max(1, self.search.report_every)

        def on_step(step: int, val_mae: float) -> None:
            seen.append(CurvePoint(step=step, train_mae=math.nan, val_mae=float(val_mae), seconds=time.time() - started))
            if self.heartbeat is not None:
                self.heartbeat.maybe(lambda: f"trial {trial.number} at step {step}, validation MAE {val_mae:.4g}")
            if step % every == 0 and math.isfinite(val_mae):
                trial.report(float(val_mae), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step} (validation MAE {val_mae:.5g})")

        return on_step

    def _record(self, outcome: TrialOutcome) -> None:
        if self.recorder is not None:
            self.recorder.record(outcome)


class _BudgetCallback:
    """Stops this process's loop once the study (all processes together) has used its budget."""

    def __init__(self, budget: TrialBudget, bar: Any, heartbeat: ProgressLog | None = None) -> None:
        self.budget, self.bar, self.heartbeat = budget, bar, heartbeat

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        counted = finished_trials(study)
        if self.heartbeat is not None:
            values = [t.value for t in counted if t.state == TrialState.COMPLETE and t.value is not None]
            best = f", best validation MAE {min(values):.4g}" if values else ""
            self.heartbeat.maybe(lambda: f"{len(counted)}/{self.budget.n_trials} trials{best}",
                                 force=len(counted) % self.heartbeat.every_trials == 0)  # fmt: skip
        if self.bar is not None:
            self.bar.n = min(len(counted), self.budget.n_trials)
            best = [t.value for t in counted if t.state == TrialState.COMPLETE and t.value is not None]
            if best:
                self.bar.set_postfix_str(f"best val MAE {min(best):.4g}", refresh=False)
            self.bar.refresh()
        if budget_reached(counted, self.budget):
            study.stop()


def _progress_bar(budget: TrialBudget, done: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=budget.n_trials, initial=done, desc=description or "trials", unit="trial", leave=False)


def _result(study: optuna.Study) -> TuningResult:
    counted = finished_trials(study)
    complete = [t for t in counted if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        failures = [t.user_attrs[ATTR_FAILURE] for t in counted if ATTR_FAILURE in t.user_attrs]
        detail = f"; first failure: {failures[0]}" if failures else ""
        raise BenchError(f"study {study.study_name}: none of its {len(counted)} trials completed{detail}")
    best = min(complete, key=lambda t: (t.value, t.number))
    best_params = best.user_attrs.get(ATTR_MODEL_PARAMS)
    if best_params is None:  # a trial always records them before fitting; guard against foreign studies
        raise BenchError(f"study {study.study_name}: trial {best.number} has no recorded model parameters")
    return TuningResult(
        best_params=dict(best_params),
        best_value=float(best.value),
        best_trial_number=best.number,
        n_trials=len(counted),
        n_complete=len(complete),
        tuning_seconds=spent_seconds(counted),
        history=[(t.number, t.state.name, t.value) for t in counted],
        best_fit_identity=best.user_attrs.get(ATTR_FIT_IDENTITY),
        best_model_file=best.user_attrs.get(ATTR_MODEL_FILE),
    )
