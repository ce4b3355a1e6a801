"""Optuna tuning of one model on one fold's training view: create or join the study, run trials, stop on budget.

Budget (see :class:`studies.presets.TrialBudget`): ``n_trials`` is the study's *total*, counted from storage,
so a second process with the same command and storage joins the study and together they stop at exactly N.
``tuning_seconds``: no trial starts once the summed trial durations, plus the mean duration of the trials so
far (the expected length of the next one), would pass it; so a study whose first trial took most of the
seconds stops there instead of overrunning by a whole further fit. The queued trial 0 may run to the per-fit
cap (``fit_seconds``); any other trial only to the tuning seconds left, and one cut there ends as PRUNED (tag
``cut_by_budget``): it was not evaluated to its own stopping rule, so it is never the selected trial. A budget
that keeps trial 0 apart (``trial0_apart``) charges only the later trials to the tuning seconds.
Trials that count: COMPLETE, PRUNED, and FAIL by a crash of the model (diverging loss, out of memory, ...).
Trials that do not count: those interrupted (Ctrl-C, kill), which are re-queued with the same parameters when
the study resumes, and "surplus" trials, which stop at once without fitting anything: one started by a racing
process after the total was reached, or a second copy of the defaults trial queued by a process that started
a new study at the same moment as another.

Interrupted trials are found and re-queued by :func:`studies.coordination.recover_interrupted` before a
process starts trials; no finished trial is lost or repeated. A resumed study searches as it would have left
alone: the retry of an interrupted trial keeps the rungs its original passed and is charged the seconds its
checkpoint holds (:meth:`_Objective._take_over`), successive halving does not count the interrupted original
beside its retry (:class:`_SuccessiveHalvingPruner`), and the sampler draws the configurations the study would
have drawn (:class:`PlaceSeededTPESampler`).

Trials see :class:`benchmarks.splits.TrainingData` only: no test data reaches this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from benchmarks.contract import CurvePoint, FitReport, Model, fit_model
from benchmarks.errors import BenchError, UsageError
from benchmarks.searchspace import ModelSearch, Space, check_space
from benchmarks.splits import TrainingData
from studies.coordination import (
    ATTR_CHECKPOINT_OF,
    ATTR_DEFAULTS,
    ATTR_FAILURE,
    ATTR_RETRY_OF,
    ATTR_SURPLUS,
    ATTR_WORKER,
    chain_head,
    current_worker,
    is_interrupted,
    other_workers_alive,
    recover_interrupted,
    register_worker,
    running_elsewhere,
)
from studies.outcomes import TrialOutcome, TrialRecorder, TuningResult
from studies.presets import Preset, TrialBudget
from studies.progress import ProgressLog, progress_bar
from studies.refit_reuse import fit_identity, jsonable, save_trial_fit
from studies.row_rungs import ATTR_ROW_RUNG, rung_of, summarize_rungs
from studies.row_rungs import promote as promote_trials
from studies.schema import RunKey
from studies.search_strategy import PlaceSeededTPESampler, make_pruner
from studies.spaces import default_trial_params, suggest
from studies.stores import first_line

log = logging.getLogger(__name__)

# Trial user attributes of this module (those about workers and interruptions: studies.coordination).
ATTR_MODEL_PARAMS = "model_params"  # the full parameter dict the model was built with (JSON)
ATTR_FIT_IDENTITY = "fit_identity"  # digest of (model parameters, seed, training rows) of a saved trial model
ATTR_MODEL_FILE = "model_file"  # where the trial's fitted model was saved (for refit reuse)
ATTR_CUT_BY_BUDGET = "cut_by_budget"  # the seconds a trial was cut at: the tuning seconds left, not the fit cap
ATTR_RESUMED_FROM_EPOCH = "resumed_from_epoch"  # the trial's fit continued from its checkpoint after this step
ATTR_RESUMED_SECONDS = "resumed_seconds"  # a retry: the seconds its fit had spent before the checkpoint it resumed
RUNG_ATTR_PREFIX = "completed_rung_"  # Optuna's successive halving: a trial's value at each rung it reached
STUDY_ATTR_CONFIG = "config"  # what the trials were run on; a rerun with different data is refused


# Exceptions that make a trial FAIL while the study goes on (the model contract, benchmarks.contract): numerical
# blow-ups (FloatingPointError), out of memory (MemoryError; torch's OutOfMemoryError is a RuntimeError) and
# configurations a library refuses (ValueError; XGBoostError is one, LightGBM's error is re-raised as one).
# Programming errors (TypeError, KeyError, ...) and usage errors still stop the run.
TRIAL_FAILURES: tuple[type[Exception], ...] = (ArithmeticError, MemoryError, RuntimeError, ValueError)


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


# ----------------------------------------------------------------------------------------------- study ---


def open_study(
    storage: Any,
    key: RunKey,
    *,
    search: ModelSearch,
    preset: Preset,
    config: Mapping[str, Any],
) -> optuna.Study:
    """Create the study, or load it when it exists (a resumed run or a joining process).

    TPE seeded with the study's seed and each trial's place (:class:`PlaceSeededTPESampler`); pruning on the
    intermediate validation MAE: successive halving where the
    preset gives the model's group multi-fidelity pruning (:class:`studies.presets.SuccessiveHalving`), else
    the median rule. A pruner is fixed when the study is created (Optuna does not store it): a study resumed
    under another preset keeps its name and data check, not its pruner. ``config``
    (data checksum, training-row cap, featuriser, ...) is stored on a new study and compared on a loaded
    one: trials run on other data must not be mixed in.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=key.study_name,
        direction="minimize",
        load_if_exists=True,
        sampler=PlaceSeededTPESampler(key.seed, n_startup_trials=preset.tpe_startup_trials),
        pruner=make_pruner(preset.pruning_for(key.model, key.train_size), preset, search),
    )
    wanted = json.loads(json.dumps(dict(config), sort_keys=True))
    stored = study.user_attrs.get(STUDY_ATTR_CONFIG)
    if stored is None:
        study.set_user_attr(STUDY_ATTR_CONFIG, wanted)
    elif stored != wanted:
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise UsageError(
            f"study {key.study_name} in this storage was run with other settings ({', '.join(changed)}: "
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


def finished_trials(study: optuna.Study, rung: int | None = None) -> list[FrozenTrial]:
    """The trials that count toward the budget, in trial-number order; with ``rung``, only those of that row
    rung (:mod:`studies.row_rungs`; every trial of a study without row rungs is of rung 0)."""
    trials = [t for t in study.get_trials(deepcopy=False) if counts_toward_budget(t)]
    return trials if rung is None else [t for t in trials if rung_of(t) == rung]


def spent_seconds(trials: list[FrozenTrial]) -> float:
    """Summed costs of ``trials`` (:func:`trial_seconds`): the study's tuning time."""
    return sum(trial_seconds(t) for t in trials)


def charged_seconds(trials: list[FrozenTrial], budget: TrialBudget) -> float:
    """The part of the trials' durations charged to ``budget.tuning_seconds``: all of it, or, where the budget
    keeps trial 0 apart, all but trial 0's (also a retry of it)."""
    return spent_seconds([t for t in trials if not _kept_apart(t, budget)])


def _kept_apart(trial: FrozenTrial, budget: TrialBudget) -> bool:
    return budget.trial0_apart and bool(trial.user_attrs.get(ATTR_DEFAULTS))


def expected_trial_seconds(trials: list[FrozenTrial], budget: TrialBudget) -> float:
    """What the next trial is expected to cost: the mean trial so far; in a multi-fidelity study, its first
    rung (``budget.expected_trial_steps`` steps at the median seconds per step of the trials so far), since
    most trials end there and one that goes on is cut at the tuning seconds left."""
    if budget.expected_trial_steps is not None:
        per_step = [trial_seconds(t) / max(t.intermediate_values) for t in trials
                    if t.intermediate_values and trial_seconds(t)]  # fmt: skip
        if per_step:
            return budget.expected_trial_steps * statistics.median(per_step)
    # Where trial 0 is kept apart, only the later trials say what the next one costs; before the first of them
    # nothing does, and it starts (it is cut at the seconds left in any case).
    searched = [t for t in trials if not _kept_apart(t, budget)]
    if not searched:
        return 0.0 if budget.trial0_apart else spent_seconds(trials) / len(trials)
    return spent_seconds(searched) / len(searched)


def trial_seconds(trial: FrozenTrial) -> float:
    """What a trial cost: its duration, plus, for a retry whose fit resumed a checkpoint, the seconds that fit had
    spent before it: what the trial would have cost had it never been interrupted (the epochs after the
    checkpoint, lost with the kill, are paid again by the retry's own duration)."""
    return _duration(trial) + float(trial.user_attrs.get(ATTR_RESUMED_SECONDS, 0.0))


def _duration(trial: FrozenTrial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def budget_reached(trials: list[FrozenTrial], budget: TrialBudget) -> bool:
    """Whether the counted ``trials`` exhaust the budget: N trials, or tuning seconds that the next trial
    (:func:`expected_trial_seconds`) would pass."""
    if len(trials) >= budget.n_trials:
        return True
    if budget.tuning_seconds is None or not trials:
        return False
    return charged_seconds(trials, budget) + expected_trial_seconds(trials, budget) > budget.tuning_seconds


# ---------------------------------------------------------------------------------------------- trials ---


@dataclass(frozen=True)
class TuningJob:
    """What one study tunes: the model and its space (after the preset's settings, fixed entries included), the
    training rows, the budget, the seed and device, trial 0 (the model's defaults updated with ``trial0``) and the
    full configurations queued after it, and where the best fitted trial and the trials' checkpoints are kept."""

    model_cls: type[Model]
    search: ModelSearch
    space: Space
    training: TrainingData
    budget: TrialBudget
    seed: int
    device: str
    trial0: Mapping[str, Any] | None = None
    extra_trials: Sequence[Mapping[str, Any]] = ()
    model_dir: Path | None = None
    checkpoint_dir: Path | None = None
    # The row rung this job's trials run on (:func:`tune_by_rows`): 0 for a study without row rungs. Trials of a
    # later rung repeat promoted configurations; they run their whole schedule, like trial 0.
    row_rung: int = 0


def tune_by_rows(
    study: optuna.Study,
    stages: Sequence[TuningJob],
    promote: int,
    *,
    recorder: TrialRecorder | None = None,
    progress: bool = True,
    description: str = "",
) -> TuningResult:
    """A study with row rungs (:class:`studies.presets.RowRungs`): ``stages[r]`` is the job of rung ``r`` (its
    training rows, space and budget; ``row_rung`` r), the last on every training row. Rung 0 is tuned as
    :func:`tune` tunes; the ``promote`` best configurations of each rung (:func:`studies.row_rungs.promotion_order`)
    are queued on the next and fitted there from scratch; the result is the best configuration of the last rung,
    with every rung's summary (:func:`studies.row_rungs.summarize_rungs`). Resumable like :func:`tune`: a rung whose
    budget is reached is not run again, and a promotion is queued once."""
    rows = [len(stage.training.y_train) for stage in stages]
    for rung, stage in enumerate(stages):
        if rung > 0:
            promoted = promote_trials(study, finished_trials(study, rung - 1), rung - 1, promote, rows[rung])
            budget = dataclasses.replace(stage.budget, n_trials=max(1, len(promoted)), tuning_seconds=None)
            stage = dataclasses.replace(stage, budget=budget)
        result = tune(study, stage, recorder=recorder, progress=progress,
                      description=f"{description} rows {rows[rung]:,} (rung {rung + 1} of {len(stages)})")  # fmt: skip
    return dataclasses.replace(result, rungs=summarize_rungs(finished_trials(study), rows))


def tune(
    study: optuna.Study,
    job: TuningJob,
    *,
    recorder: TrialRecorder | None = None,
    progress: bool = True,
    description: str = "",
) -> TuningResult:
    """Run trials until the study's budget is reached (counting every process's trials) and return the best.

    Each trial builds ``job.model_cls(params, seed=job.seed, device=job.device)``, fits it on the training rows
    with early stopping and pruning on the validation rows, and returns its best validation MAE. Trial 0 is the
    model's defaults updated with ``job.trial0``; ``job.extra_trials`` (full parameter dicts the space can
    represent) follow it. With ``job.model_dir``, the best trial so far of this process keeps its fitted model
    there, so that a refit that would repeat it exactly can reuse it (:func:`load_trial_fit`). With
    ``job.checkpoint_dir``, a model that can resume keeps each trial's training state there, so that a trial
    interrupted by a dead worker and queued again continues where it stopped (the file is named by the first
    trial of the retry chain, which only the worker that claimed the retry runs); the file is deleted once the
    trial is recorded.
    """
    budget = job.budget
    defaults = job.model_cls.default_params()
    check_space(job.space, defaults, model=job.model_cls.name)
    register_worker(study)
    numbers = recover_interrupted(study)
    if numbers and recorder is not None:
        recorder.interrupted(numbers)
    enqueue_defaults(study, job.space, {**defaults, **(job.trial0 or {})}, job.extra_trials)

    # Without a progress bar (stderr not a terminal), timed log lines instead.
    log_lines = None if progress else ProgressLog(description or study.study_name)
    objective = _Objective(study, job, recorder, log_lines)
    counted = finished_trials(study, job.row_rung)
    if not budget_reached(counted, budget):
        bar = progress_bar(budget, len(counted), description, progress)
        if log_lines is not None:
            log_lines.say(f"started: {budget.n_trials} trials budget, {len(counted)} done earlier")
        try:
            with log_lines or contextlib.nullcontext():
                study.optimize(
                    objective,
                    n_trials=None,  # the budget callback stops the study: N is a total across processes
                    catch=(*TRIAL_FAILURES, SurplusTrial),
                    callbacks=[_BudgetCallback(budget, bar, log_lines, job.row_rung)],
                    gc_after_trial=True,
                )
        finally:
            if bar is not None:
                bar.close()
    _wait_for_a_complete_trial(study, log_lines, job.row_rung)
    result = _result(study, job.row_rung)
    if log_lines is not None:
        log_lines.say(f"done: {result.n_trials} trials, best validation MAE {result.best_value:.4g}")
    return result


TRIAL_POLL_S = 5.0


def _wait_for_a_complete_trial(study: optuna.Study, log_lines: ProgressLog | None, rung: int = 0) -> None:
    """Wait while the study has no complete trial on ``rung`` yet but trials of live workers still run: a process
    whose own trials were pruned (or cut at the budget) leaves the selection to the trial 0 that another worker
    runs, instead of failing the study."""
    while not any(t.state == TrialState.COMPLETE for t in finished_trials(study, rung)):
        others_alive = other_workers_alive(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not any(running_elsewhere(t, others_alive) for t in running):
            return
        if log_lines is not None:
            log_lines.maybe(lambda: "no trial complete yet; waiting for the trials other workers run")
        time.sleep(TRIAL_POLL_S)


class _Objective:
    """One trial: sample, fit on training rows, report validation MAE per step, record, return the best."""

    def __init__(
        self, study: optuna.Study, job: TuningJob, recorder: TrialRecorder | None, log_lines: ProgressLog | None
    ) -> None:
        self.study, self.job, self.recorder, self.log_lines = study, job, recorder, log_lines
        self._saved: list[Path] = []  # this process's saved trial fits (only the best is kept)

    def _surplus_reason(self, trial: optuna.Trial) -> str | None:
        """Why this trial must not run, if it must not: "budget" when earlier trials (finished, or running in
        live processes) already make up the budget; "duplicate" for a second copy of the defaults trial (two
        processes that start a new study together both queue it; trial numbers are assigned atomically, so
        the lower number is the one that runs)."""
        earlier = [t for t in self.study.get_trials(deepcopy=False)
                   if t.number < trial.number and rung_of(t) == self.job.row_rung]  # fmt: skip
        if (
            trial.user_attrs.get(ATTR_DEFAULTS)
            and ATTR_RETRY_OF not in trial.user_attrs
            and any(t.user_attrs.get(ATTR_DEFAULTS) and ATTR_RETRY_OF not in t.user_attrs for t in earlier)
        ):
            return "duplicate"
        counted = [t for t in earlier if counts_toward_budget(t)]
        others_alive = other_workers_alive(self.study)
        running = [t for t in earlier if running_elsewhere(t, others_alive)]
        if len(counted) + len(running) >= self.job.budget.n_trials:
            return "budget"
        if (
            self.job.budget.tuning_seconds is not None
            and charged_seconds(counted, self.job.budget) >= self.job.budget.tuning_seconds
        ):
            return "budget"
        return None

    def _time_limit(self, is_defaults: bool) -> tuple[float | None, bool]:
        """This trial's fit time limit and whether it is the tuning seconds left (:meth:`TrialBudget.fit_limit`):
        the queued trial 0 reaches its own stopping rule under the per-fit cap; any other trial gets the tuning
        seconds left where fewer."""
        budget = self.job.budget
        charged = charged_seconds(finished_trials(self.study, self.job.row_rung), budget)
        return budget.fit_limit(None if is_defaults else charged)

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(ATTR_WORKER, current_worker())
        if ATTR_ROW_RUNG not in trial.user_attrs:
            trial.set_user_attr(ATTR_ROW_RUNG, self.job.row_rung)
        elif int(trial.user_attrs[ATTR_ROW_RUNG]) != self.job.row_rung:
            # A promotion queued by a worker that finished this rung: this one stops its rung too, and the
            # promotion is queued again for the next rung (Optuna hands out queued trials first, so it would take
            # it again at once).
            attrs = {k: v for k, v in trial.user_attrs.items() if k != ATTR_WORKER}
            self.study.enqueue_trial(trial.params, user_attrs=attrs)
            trial.set_user_attr(ATTR_SURPLUS, "rung")
            self.study.stop()
            raise SurplusTrial(f"trial {trial.number}: belongs to the next row rung; queued again")
        reason = self._surplus_reason(trial)
        if reason is not None:
            trial.set_user_attr(ATTR_SURPLUS, reason)
            if reason == "budget":
                self.study.stop()  # the other processes' running trials complete the budget
            raise SurplusTrial(f"trial {trial.number}: not run ({reason})")

        started = time.time()
        retry_of = trial.user_attrs.get(ATTR_RETRY_OF)
        # Trial 0 and the configurations promoted to a later row rung run their whole schedule, never pruned or cut.
        is_defaults = bool(trial.user_attrs.get(ATTR_DEFAULTS)) or self.job.row_rung > 0
        params = suggest(trial, self.job.space)
        model_params: dict[str, Any] = jsonable(params)  # replaced by the merged dict once the model is built
        seen: list[CurvePoint] = []

        def outcome(state: str, **kw: Any) -> TrialOutcome:
            return TrialOutcome(trial.number, state, model_params, started=started, finished=time.time(),
                                retry_of=retry_of, is_defaults=is_defaults, **kw)  # fmt: skip

        time_limit, cut_by_budget = self._time_limit(is_defaults)
        checkpoint = self._checkpoint_path(trial)
        if retry_of is not None:
            self._take_over(trial, int(retry_of), checkpoint)
        try:
            model = self.job.model_cls(params, seed=self.job.seed, device=self.job.device)
            model_params = jsonable(model.params)
            trial.set_user_attr(ATTR_MODEL_PARAMS, model_params)
            report = fit_model(
                model,
                self.job.training.X_train,
                self.job.training.y_train,
                self.job.training.X_val,
                self.job.training.y_val,
                on_step=self._step_callback(trial, seen, started, is_defaults, self._progress_rate(model)),
                time_limit_s=time_limit,
                checkpoint_path=checkpoint,
            )
            if "resumed_from_epoch" in report.extra:
                trial.set_user_attr(ATTR_RESUMED_FROM_EPOCH, int(report.extra["resumed_from_epoch"]))
            if not math.isfinite(report.best_val_mae):
                raise FloatingPointError(f"validation MAE is {report.best_val_mae}")
            if cut_by_budget and report.stopped == "time_limit":
                # Not evaluated to its own stopping rule, so it may not be selected (its refit would be a
                # different, longer fit): it ends as pruned at the tuning budget.
                trial.set_user_attr(ATTR_CUT_BY_BUDGET, round(time_limit or 0.0, 1))
                raise optuna.TrialPruned(f"cut at the tuning budget after {report.fit_seconds:.0f} s")
        except optuna.TrialPruned:
            last = seen[-1].val_mae if seen else None
            self._record(outcome("PRUNED", value=last, curve=seen))
            _drop(checkpoint)
            raise
        except TRIAL_FAILURES as exc:
            message = f"{type(exc).__name__}: {first_line(exc)}"
            trial.set_user_attr(ATTR_FAILURE, message)
            self._record(outcome("FAIL", value=None, curve=seen, failure=message))
            _drop(checkpoint)
            raise
        # Anything else (Ctrl-C, a kill) leaves the checkpoint for the retry of this trial.
        trial.set_user_attr("best_step", report.best_step)
        trial.set_user_attr("stopped", report.stopped)
        trial.set_user_attr("fit_seconds", report.fit_seconds)
        self._keep_if_best(trial, model, report, model_params)
        self._record(outcome("COMPLETE", value=report.best_val_mae, curve=report.curve, report=report))
        _drop(checkpoint)
        return float(report.best_val_mae)

    def _checkpoint_path(self, trial: optuna.Trial) -> Path | None:
        """Where this trial's fit keeps its state: named by the first trial of its retry chain, so a retry
        (which :func:`studies.coordination.requeue_interrupted` queues with that number) finds it."""
        if self.job.checkpoint_dir is None or not self.job.model_cls.resumable:
            return None
        first = trial.user_attrs.get(ATTR_CHECKPOINT_OF)
        if first is None:
            first = trial.number
            trial.set_user_attr(ATTR_CHECKPOINT_OF, first)
        return self.job.checkpoint_dir / f"trial-{int(first)}.pt"

    def _take_over(self, trial: optuna.Trial, retry_of: int, checkpoint: Path | None) -> None:
        """Give a retry what its interrupted original had, so that the study goes on as if that trial had never
        stopped: the rungs it passed (successive halving does not judge it there again; its fit reports the
        restored epochs first, the values the original recorded) and the seconds its fit had spent before the
        checkpoint it resumes (:func:`trial_seconds`)."""
        original = next(t for t in self.study.get_trials(deepcopy=False) if t.number == retry_of)
        for key, value in original.system_attrs.items():
            if key.startswith(RUNG_ATTR_PREFIX):
                trial.storage.set_trial_system_attr(trial._trial_id, key, value)  # Optuna has no public call
        seconds = _resumed_seconds(original, checkpoint)
        if seconds > 0:
            trial.set_user_attr(ATTR_RESUMED_SECONDS, round(seconds, 3))

    def _keep_if_best(self, trial: optuna.Trial, model: Model, report: FitReport, params: dict[str, Any]) -> None:
        """Save the fitted model of a trial that beats every completed trial so far (for refit reuse), and
        drop this process's earlier saves."""
        if self.job.model_dir is None:
            return
        values = [t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.number != trial.number and t.value is not None and rung_of(t) == self.job.row_rung]  # fmt: skip
        if values and not report.best_val_mae < min(values):
            return
        identity = fit_identity(params, self.job.seed, self.job.training)
        fit_path = save_trial_fit(self.job.model_dir, trial.number, model, report, identity)
        trial.set_user_attr(ATTR_FIT_IDENTITY, identity)
        trial.set_user_attr(ATTR_MODEL_FILE, str(fit_path))
        for old in self._saved:
            old.unlink(missing_ok=True)
            old.with_name(old.name.replace(".fit.pkl", ".model.pkl")).unlink(missing_ok=True)
        self._saved = [fit_path]

    def _progress_rate(self, model: Model) -> float | None:
        """The rate that scales a step into the pruner's progress (``ModelSearch.progress_param``), or None."""
        name = self.job.search.progress_param
        return None if name is None else float(model.params[name])

    def _step_callback(
        self, trial: optuna.Trial, seen: list[CurvePoint], started: float, is_defaults: bool, rate: float | None
    ) -> Callable[[int, float], None]:
        """Report every ``report_every``-th step to the pruner, or, with a progress ``rate``, each whole unit of
        rate x steps once, as that unit (:class:`benchmarks.searchspace.ModelSearch`). Trial 0 (the defaults or
        the converging regime) is never pruned, so every model reaches its own stopping rule once; it still asks
        the pruner, which records its rung values for the trials that follow."""
        every = max(1, self.job.search.report_every)
        reported = [0]  # the last progress unit reported

        def pruner_step(step: int) -> int | None:
            if rate is None:
                return step if step % every == 0 else None
            unit = int(rate * step)
            if unit <= reported[0]:
                return None
            reported[0] = unit
            return unit

        def on_step(step: int, val_mae: float) -> None:
            seen.append(
                CurvePoint(step=step, train_mae=math.nan, val_mae=float(val_mae), seconds=time.time() - started)
            )
            if self.log_lines is not None:
                self.log_lines.maybe(lambda: f"trial {trial.number} at step {step}, validation MAE {val_mae:.4g}")
            at = pruner_step(step) if math.isfinite(val_mae) else None
            if at is not None:
                trial.report(float(val_mae), at)
                if trial.should_prune() and not is_defaults:
                    raise optuna.TrialPruned(f"pruned at step {step} (validation MAE {val_mae:.5g})")

        return on_step

    def _record(self, outcome: TrialOutcome) -> None:
        if self.recorder is not None:
            self.recorder.record(outcome)


def _resumed_seconds(original: FrozenTrial, checkpoint: Path | None) -> float:
    """The seconds the fit of the interrupted ``original`` had spent when it last wrote ``checkpoint`` (0 without
    one: the retry's fit starts over): from the trial's start to that write, plus what its own fit had resumed
    (a checkpoint written before the trial started is the one it resumed, not one of its own)."""
    if checkpoint is None or not checkpoint.exists() or original.datetime_start is None:
        return 0.0
    own = checkpoint.stat().st_mtime - original.datetime_start.timestamp()
    return float(original.user_attrs.get(ATTR_RESUMED_SECONDS, 0.0)) + max(0.0, own)


def _drop(checkpoint: Path | None) -> None:
    """Delete a trial's checkpoint once the trial is recorded."""
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)


class _BudgetCallback:
    """Stops this process's loop once the study (all processes together) has used its budget."""

    def __init__(self, budget: TrialBudget, bar: Any, log_lines: ProgressLog | None = None, rung: int = 0) -> None:
        self.budget, self.bar, self.log_lines, self.rung = budget, bar, log_lines, rung

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        counted = finished_trials(study, self.rung)
        if self.log_lines is not None:
            values = [t.value for t in counted if t.state == TrialState.COMPLETE and t.value is not None]
            best = f", best validation MAE {min(values):.4g}" if values else ""
            self.log_lines.maybe(lambda: f"{len(counted)}/{self.budget.n_trials} trials{best}",
                                 force=len(counted) % self.log_lines.every_trials == 0)  # fmt: skip
        if self.bar is not None:
            self.bar.n = min(len(counted), self.budget.n_trials)
            complete_values = [t.value for t in counted if t.state == TrialState.COMPLETE and t.value is not None]
            if complete_values:
                self.bar.set_postfix_str(f"best val MAE {min(complete_values):.4g}", refresh=False)
            self.bar.refresh()
        if budget_reached(counted, self.budget):
            study.stop()


def _result(study: optuna.Study, rung: int = 0) -> TuningResult:
    """The best complete trial of ``rung`` (the last row rung: every training row), with the counts of every
    finished trial of the study."""
    counted = finished_trials(study)
    complete = [t for t in counted if t.state == TrialState.COMPLETE and t.value is not None and rung_of(t) == rung]
    if not complete:
        failures = [t.user_attrs[ATTR_FAILURE] for t in counted if ATTR_FAILURE in t.user_attrs]
        detail = f"; first failure: {failures[0]}" if failures else ""
        raise BenchError(f"study {study.study_name}: none of its {len(counted)} trials completed{detail}")
    best = min(complete, key=lambda t: (t.value, t.number))
    assert best.value is not None  # `complete` holds trials with a value only
    best_params = best.user_attrs.get(ATTR_MODEL_PARAMS)
    if best_params is None:  # a trial always records them before fitting; guard against foreign studies
        raise BenchError(f"study {study.study_name}: trial {best.number} has no recorded model parameters")
    return TuningResult(
        best_params=dict(best_params),
        best_value=float(best.value),
        best_trial_number=best.number,
        n_trials=len(counted),
        n_complete=sum(t.state == TrialState.COMPLETE for t in counted),
        tuning_seconds=spent_seconds(counted),
        history=[(t.number, t.state.name, t.value) for t in counted],
        best_fit_identity=best.user_attrs.get(ATTR_FIT_IDENTITY),
        best_model_file=best.user_attrs.get(ATTR_MODEL_FILE),
        n_pruned=sum(t.state == TrialState.PRUNED and ATTR_CUT_BY_BUDGET not in t.user_attrs for t in counted),
        n_cut_by_budget=sum(t.state == TrialState.PRUNED and ATTR_CUT_BY_BUDGET in t.user_attrs for t in counted),
        n_failed=sum(t.state == TrialState.FAIL for t in counted),
        resumed_trials=tuple(chain_head(t) for t in study.get_trials(deepcopy=False) if is_interrupted(t)),
    )
