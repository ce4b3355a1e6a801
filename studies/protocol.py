"""The benchmark protocol: for each fold, seed and model, tune on validation, refit, score the test part once.

For every (model, fold, seed):

1. skip it if its parent run is done; otherwise claim (create or resume) the parent run;
2. tune the model's search space with Optuna on the fold's training rows, early stopping and pruning on the
   validation rows carved from them (the fixed validation part for OQMD), under the preset's budget;
3. refit the best configuration with the seed on the same training rows (early stopping on validation);
4. predict the fold's test part once, score it (MAE, RMSE, R², max error), and log everything; mark done.

Test rows reach step 4 only: trials receive :class:`benchmarks.splits.TrainingData`, never the test view.
Everything goes to MLflow (:mod:`studies.tracking`); the results are read back from there by
:mod:`reports.collect`, so a rerun that skips finished work still reports it. Who does which step when several
workers share the stores is decided in :mod:`studies.coordination`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contract import Model, fit_model
from benchmarks.errors import BenchError, UsageError
from benchmarks.searchspace import Spec, check_space, fixed, merge_space
from benchmarks.splits import TestData, TrainingData
from studies import schema
from studies.coordination import (
    FinalHeartbeat,
    check_parent_config,
    claim_final_step,
    claim_parent_run,
    close_if_done,
    is_key_done,
    mark_parent_interrupted,
    open_storage,
    storage_lock,
    wait_for_refits,
)
from studies.outcomes import TuningResult
from studies.plan import RunPlan
from studies.presets import Preset, TrialBudget
from studies.progress import ProgressLog
from studies.refit_reuse import fit_identity, load_trial_fit
from studies.registry import model_info
from studies.schema import RunKey
from studies.stores import first_line, make_client
from studies.tracking import (
    FinalRecord,
    MlflowTrialRecorder,
    code_version,
    ensure_experiment,
    find_parent_runs,
    log_dataset_input,
    log_final,
    machine_tags,
    mark_parent_failed,
    package_tags,
)
from studies.tuning import TRIAL_FAILURES, TuningJob, open_study, tune, tune_by_rows

log = logging.getLogger(__name__)


DEFAULTS_TRIAL_FITS = 4.0  # queue the defaults after a converging trial 0 only where tuning has room for this many fits
# What fails one model's run without stopping the others (every trial crashed, the refit diverged).
RUN_FAILURES: tuple[type[Exception], ...] = (BenchError, *TRIAL_FAILURES)


def first_trials(plan: RunPlan, key: RunKey, budget: TrialBudget) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Trial 0's parameters (over the model's defaults) and the configurations queued after it.

    Under a preset with ``trial0 = "converging"``, a model that declares a converging regime (the networks)
    starts with it, so that trial 0 early-stops within the budget on the machine it runs on; its defaults (for
    the networks the paper's regime) follow as trial 1 where the space holds them and tuning has room.
    """
    info = model_info(key.model)
    if info.converging_regime is None or plan.preset.trial0 != "converging":
        return {}, []
    room = budget.tuning_seconds is None or budget.tuning_seconds >= DEFAULTS_TRIAL_FITS * plan.expected_fit_seconds(
        key
    )
    return info.converging_regime(int(key.train_size or 0)), [info.model_class.default_params()] if room else []


def resolved_space(model: str, preset: Preset, threads: int, n_train: int | None = None) -> dict[str, Spec]:
    """The model's declared space, narrowed and capped by the preset, with its thread parameter fixed and, where
    the preset's epoch budget sets it by rows, its step cap for ``n_train`` training rows."""
    info = model_info(model)
    space = merge_space(info.search.space, preset.settings_for(info))
    cap, cap_param = preset.step_cap_for(model, n_train), info.param("step_cap")
    if cap is not None and cap_param is not None:
        space[cap_param] = fixed(cap)
    thread_param = info.param("threads")
    if thread_param is not None:
        space[thread_param] = fixed(threads)
    try:
        check_space(space, info.model_class.default_params(), model=model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return space


def check_plan(plan: RunPlan) -> None:
    """Checks that need the stores: every existing parent run of the plan matches its settings.

    Raises UsageError before any tuning starts.
    """
    client = make_client(plan.tracking_uri)
    experiment = client.get_experiment_by_name(plan.task_name)
    if experiment is not None:
        for cap, key in plan.jobs():
            for run in find_parent_runs(client, experiment.experiment_id, key):
                check_parent_config(run, plan.config(cap), key)
    for model in plan.models:
        plan.preset.check_model(model)
        resolved_space(model, plan.preset, plan.threads)


@dataclass
class JobOutcome:
    """What happened to one (model, fold, seed, training size)."""

    key: RunKey
    state: str  # "done" (this process finished it), "skipped" (done before), "elsewhere", "failed"
    message: str = ""


@dataclass
class RunOutcome:
    """What happened to each job of a run (the results themselves are read back from MLflow by reports.collect)."""

    jobs: list[JobOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[JobOutcome]:
        return [j for j in self.jobs if j.state == "failed"]


def run_benchmark(plan: RunPlan) -> RunOutcome:
    """Run every (model, fold, seed, size) of ``plan`` that is not done yet; wait for refits other workers took."""
    client = make_client(plan.tracking_uri)
    experiment_id = ensure_experiment(client, plan.task_name, plan.out_dir, plan.tracking_uri)
    storage = open_storage(plan.storage_url)
    env_tags = {
        schema.TAG_CODE_VERSION: code_version(),
        schema.TAG_COMPOSITION_ONLY: str(bool(plan.task.spec.composition_only)).lower(),
        schema.TAG_DEVICE: plan.device,
        **package_tags(),
        **machine_tags(),
    }
    if plan.command:
        env_tags[schema.TAG_COMMAND] = plan.command
    outcome = RunOutcome()
    jobs = plan.jobs()
    caps = {key: cap for cap, key in jobs}
    bar = _bar(len(jobs), plan.progress)

    def run_fold_jobs(cap: int | None, fold: int, keys: list[RunKey], progress: bool) -> Iterator[JobOutcome]:
        """Each key's outcome as soon as it is done (the fold's data is loaded once)."""
        training, test = _fold_data(plan, fold, cap, progress)
        tags = {**env_tags, **plan.fold_tags.get(fold, {})}
        for key in keys:
            yield run_job(plan, key, training, test, client=client, experiment_id=experiment_id, storage=storage,
                          env_tags=tags, cap=cap)  # fmt: skip

    try:
        groups = list(dict.fromkeys((cap, key.fold) for cap, key in jobs))  # (cap, fold) in job order
        for cap, fold in groups:
            group_keys = [k for c, k in jobs if (c, k.fold) == (cap, fold)]
            pending = [k for k in group_keys if not close_if_done(client, experiment_id, k)]
            for key in group_keys:
                if key not in pending:
                    for folder in (
                        trial_model_dir(plan, key),
                        checkpoint_dir(plan, key),
                    ):  # left by a kill after "done"
                        shutil.rmtree(folder, ignore_errors=True)
                    outcome.jobs.append(JobOutcome(key, "skipped", "done in an earlier run"))
                    _advance(bar, f"{key.run_name}: done earlier")
            if not pending:
                continue
            for job in run_fold_jobs(cap, fold, pending, plan.progress):
                outcome.jobs.append(job)
                _advance(bar, f"{job.key.run_name}: {job.message or job.state}")

        elsewhere = {job.key: i for i, job in enumerate(outcome.jobs) if job.state == "elsewhere"}

        def take_over(key: RunKey) -> bool:
            job = next(run_fold_jobs(caps[key], key.fold, [key], False))
            outcome.jobs[elsewhere[key]] = job
            return job.state != "elsewhere"

        wait_for_refits(client, experiment_id, list(elsewhere), take_over)
        for key, i in elsewhere.items():
            if outcome.jobs[i].state == "elsewhere":
                outcome.jobs[i] = JobOutcome(key, "done", "scored by another worker")
    finally:
        if bar is not None:
            bar.close()
    return outcome


def done_keys(plan: RunPlan) -> set[RunKey]:
    """The jobs of ``plan`` that MLflow records as done (by any worker, in any run)."""
    client = make_client(plan.tracking_uri)
    experiment_id = ensure_experiment(client, plan.task_name, plan.out_dir, plan.tracking_uri)
    return {key for key in plan.keys() if is_key_done(client, experiment_id, key)}  # noqa: SIM118 (a RunPlan)


def jobs_outcome(plan: RunPlan) -> RunOutcome:
    """Each job of ``plan`` as done or not, read from MLflow (after worker processes did the work)."""
    done = done_keys(plan)
    return RunOutcome([JobOutcome(key, "done") if key in done
                       else JobOutcome(key, "failed", "not finished by any worker")
                       for key in plan.keys()])  # fmt: skip # noqa: SIM118 (a RunPlan, not a dict)


def expected_time_line(plan: RunPlan) -> str:
    """What the jobs not done yet are expected to take, per model, by the budget rule (one line, said at the
    start so a long run's user knows before waiting)."""
    keys, done = plan.keys(), done_keys(plan)
    pending = [key for key in keys if key not in done]
    if not pending:
        return f"all {len(keys)} jobs are done; reporting them"
    per_model: dict[str, float] = {}
    for key in pending:
        per_model[key.model] = per_model.get(key.model, 0.0) + plan.expected_seconds(key)
    parts = ", ".join(f"{model} {_duration(seconds)}" for model, seconds in per_model.items())
    return (f"{len(pending)} of {len(keys)} jobs to run, expected by the budget rule ({plan.device}, "
            f"{plan.threads} thread(s)): {parts}; {_duration(sum(per_model.values()))} in all")  # fmt: skip


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "<1 min"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _fold_data(plan: RunPlan, fold: int, cap: int | None, progress: bool) -> tuple[TrainingData, TestData]:
    from benchmarks.loader import task_fold

    return task_fold(plan.task, fold, featurizer=plan.featurizer, val_seed=plan.val_seed, max_train_rows=cap,
                     cache_dir=plan.cache_dir, progress=progress)  # fmt: skip


def trial_model_dir(plan: RunPlan, key: RunKey) -> Path:
    """Where a study keeps its best trial's fitted model until the parent run holds the final one."""
    return plan.out_dir / "trial_models" / key.study_name


def checkpoint_dir(plan: RunPlan, key: RunKey) -> Path:
    """Where a study's network fits (trials and the refit) keep their training state until they are recorded,
    so that a rerun after a kill resumes them (:func:`irnet.training.train_network`)."""
    return plan.out_dir / "checkpoints" / key.study_name


def row_rung_stages(plan: RunPlan, key: RunKey, job: TuningJob, rows: list[int]) -> list[TuningJob]:
    """The jobs of a study with row rungs (:func:`studies.tuning.tune_by_rows`): on each rung's nested subsample of
    the training rows (every validation row), with that many rows' epoch budget; the lower rungs under the
    group's budget for their rows, the last (every row) with the per-fit cap of ``job``, no tuning seconds."""
    stages = []
    for rung, n_rows in enumerate(rows):
        last = rung == len(rows) - 1
        training = job.training if last else job.training.with_training_rows(n_rows, seed=key.seed)
        budget = (dataclasses.replace(job.budget, tuning_seconds=None) if last
                  else plan.preset.lower_rung_budget(key.model, n_rows, plan.device, plan.threads))  # fmt: skip
        space = resolved_space(key.model, plan.preset, plan.threads, n_rows)
        stages.append(dataclasses.replace(job, training=training, budget=budget, row_rung=rung, space=space))
    return stages


def run_job(
    plan: RunPlan,
    key: RunKey,
    training: TrainingData,
    test: TestData,
    *,
    client: Any,
    experiment_id: str,
    storage: Any,
    env_tags: dict[str, str],
    cap: int | None = None,
) -> JobOutcome:
    """The protocol for one key: claim, tune, refit, score once, record. ``cap`` is the training-row cap that
    gave ``training``."""
    tags = {**env_tags, schema.TAG_STUDY_NAME: key.study_name}
    config = plan.config(cap)
    budget = plan.budget(key)
    # 1. Claim: look-then-write under a lock in the shared storage, so that concurrent workers never create two
    # parent runs for one key.
    with storage_lock(plan.storage_url, f"parent:{key.study_name}"):
        run_id, state = claim_parent_run(client, experiment_id, key, tags, config)
    if state == "done":
        return JobOutcome(key, "skipped", "done in an earlier run")
    model_dir = trial_model_dir(plan, key)
    info = model_info(key.model)
    try:
        log_dataset_input(client, run_id, plan.task, key.fold, len(training.y_train), len(training.y_val),
                          len(test.y))  # fmt: skip
        # 2. Tune on the training rows, early stopping and pruning on the validation rows.
        study = open_study(storage, key, search=info.search, preset=plan.preset, config=config)
        recorder = MlflowTrialRecorder(
            client, experiment_id, run_id, {**key.tags(), schema.TAG_STUDY_NAME: key.study_name}
        )
        trial0, extra_trials = first_trials(plan, key, budget)
        job = TuningJob(model_cls=info.model_class, search=info.search,
                        space=resolved_space(key.model, plan.preset, plan.threads, key.train_size), training=training,
                        budget=budget,
                        seed=key.seed, device=plan.device, trial0=trial0, extra_trials=extra_trials,
                        model_dir=model_dir, checkpoint_dir=checkpoint_dir(plan, key))  # fmt: skip
        description = f"tune {key.model} fold {key.fold} seed {key.seed} n={key.train_size}"
        rung_rows = plan.preset.rung_rows(key.model, len(training.y_train))
        if len(rung_rows) > 1:
            tuning = tune_by_rows(study, row_rung_stages(plan, key, job, rung_rows),
                                  plan.preset.row_rungs[info.group].promote, recorder=recorder,
                                  progress=plan.progress, description=description)  # fmt: skip
        else:
            tuning = tune(study, job, recorder=recorder, progress=plan.progress, description=description)
        # 3-4. Refit and score the test part once: exactly one worker takes it.
        with storage_lock(plan.storage_url, f"final:{key.study_name}"):
            claimed = claim_final_step(client, run_id)
        if not claimed:
            return JobOutcome(key, "elsewhere", "refit and test scoring taken by another worker")
        with FinalHeartbeat(client, run_id):
            # A log, not a terminal: timed lines while the refit runs.
            log_lines = None if plan.progress else ProgressLog(f"{key.task} {key.run_name} refit")
            with log_lines or contextlib.nullcontext():
                if log_lines is not None:
                    log_lines.say("refitting the best configuration, then scoring on the test part")
                record = refit_and_score(info.model_class, tuning, training, test, plan, key, budget,
                                         log_lines=log_lines)  # fmt: skip
            log_final(client, run_id, key, record)
        for folder in (model_dir, checkpoint_dir(plan, key)):  # the parent run holds the model now
            shutil.rmtree(folder, ignore_errors=True)
    except KeyboardInterrupt:
        mark_parent_interrupted(client, run_id)
        raise
    except RUN_FAILURES as exc:
        # One model failing (every trial crashed, the refit diverged) must not lose the other models' runs.
        message = f"{type(exc).__name__}: {first_line(exc)}"
        log.error("%s %s: %s", key.task, key.run_name, message)
        mark_parent_failed(client, run_id, message)
        return JobOutcome(key, "failed", message)
    mae = record.test_metrics["mae"]
    refit = "best trial's model kept" if record.refit_reused else f"{record.train_seconds:.0f} s refit"
    cut = ", cut short by the time cap" if record.report.stopped == schema.REFIT_STOPPED_TIME_LIMIT else ""
    return JobOutcome(
        key,
        "done",
        f"test MAE {mae:.4g} ({tuning.n_trials} trials, {tuning.tuning_seconds:.0f} s tuning, {refit}{cut})",
    )


def reusable_trial_fit(
    tuning: TuningResult, training: TrainingData, plan: RunPlan, key: RunKey
) -> tuple[Model, Any] | None:
    """The best trial's saved model and report when the refit would repeat that trial exactly (same full
    parameters, seed and rows, checked by :func:`studies.refit_reuse.fit_identity`); None otherwise (no saved
    model, e.g. the trial ran on another machine, or a different fit)."""
    if not tuning.best_model_file or not tuning.best_fit_identity:
        return None
    full_params = model_info(key.model).model_class(dict(tuning.best_params), seed=key.seed).params
    if fit_identity(full_params, key.seed, training) != tuning.best_fit_identity:
        return None
    return load_trial_fit(tuning.best_model_file, tuning.best_fit_identity, device=plan.device)


def refit_and_score(
    model_cls: type[Model],
    tuning: TuningResult,
    training: TrainingData,
    test: TestData,
    plan: RunPlan,
    key: RunKey,
    budget: TrialBudget | None = None,
    log_lines: ProgressLog | None = None,
) -> FinalRecord:
    """Refit the best configuration with the run's seed (early stopping on validation), or keep the best
    trial's model where the refit would repeat it exactly; then predict the test part once and score it.
    Where the preset raises the group's step cap for the refit (:meth:`Preset.refit_configuration`), a best
    trial that stopped at its step cap is refitted under the raised cap (and a time limit raised in proportion);
    one that stopped early is kept, since a higher cap would not change it. With ``log_lines``, the refit's
    steps are logged at its interval. The model's predictions on the validation rows are recorded beside the
    test predictions (post-hoc ensembles are selected on them, never on test rows)."""
    budget = budget or plan.budget(key)
    refit_started = time.time()
    params, cap_factor = plan.preset.refit_configuration(key.model, tuning.best_params)
    reused = reusable_trial_fit(tuning, training, plan, key)
    if reused is not None and cap_factor > 1.0 and reused[1].stopped == schema.REFIT_STOPPED_MAX_STEPS:
        log.info("%s %s: the best trial stopped at its step cap; refitting it under the %.0fx higher refit cap",
                 key.task, key.run_name, cap_factor)  # fmt: skip
        reused = None
    if reused is not None:
        model, report = reused
        train_seconds = float(report.fit_seconds)  # what the kept model cost (spent inside tuning)
    else:
        model = model_cls(params, seed=key.seed, device=plan.device)
        time_limit = budget.fit_limit(None)[0]
        start = time.perf_counter()
        # A refit killed part-way resumes from this checkpoint on rerun (only the worker holding the refit
        # claim runs it); one of another configuration is ignored by its identity check.
        on_step = (
            None
            if log_lines is None
            else (lambda step, val_mae: log_lines.maybe(lambda: f"refit at step {step}, validation MAE {val_mae:.4g}"))
        )
        report = fit_model(model, training.X_train, training.y_train, training.X_val, training.y_val,
                           on_step=on_step, time_limit_s=None if time_limit is None else time_limit * cap_factor,
                           checkpoint_path=checkpoint_dir(plan, key) / "refit.pt")  # fmt: skip
        train_seconds = time.perf_counter() - start
    if not math.isfinite(report.best_val_mae):
        raise FloatingPointError(f"the refit's validation MAE is {report.best_val_mae}")
    # The refit's validation predictions, recorded for post-hoc ensembles (reports.ensembles weighs models on them).
    y_val_pred = np.asarray(model.predict(training.X_val), dtype=np.float64)
    start = time.perf_counter()
    y_pred = np.asarray(model.predict(test.X), dtype=np.float64)
    inference_seconds = time.perf_counter() - start
    test_metrics = test.score(y_pred)  # the one look at the test part for this (model, fold, seed)
    return FinalRecord(
        params=dict(model.params),
        report=report,
        test_metrics=test_metrics,
        test_ids=test.ids,
        y_true=test.y,
        y_pred=y_pred,
        model=model,
        tuning=tuning,
        train_seconds=train_seconds,
        inference_seconds=inference_seconds,
        n_train=len(training.y_train),
        n_val=len(training.y_val),
        n_test=len(test.y),
        unit=str(plan.task.spec.unit),
        extra_params={
            schema.PARAM_BUDGET_TRIALS: budget.n_trials,
            schema.PARAM_BUDGET_TUNING_SECONDS: budget.tuning_seconds,
            schema.PARAM_BUDGET_FIT_SECONDS: budget.fit_seconds,
        },
        refit_started=refit_started,
        refit_reused=reused is not None,
        featurizer=plan.featurizer,
        example_formulas=formulas_of(plan.task, test.ids[:EXAMPLE_ROWS]),
        val_ids=training.val_ids,
        y_val=training.y_val,
        y_val_pred=y_val_pred,
    )


EXAMPLE_ROWS = 3  # test formulas in a logged model's input example


def formulas_of(task: Any, ids: np.ndarray) -> tuple[str, ...]:
    """The formulas of the task's rows with ``ids``."""
    import pandas as pd

    rows = pd.Index(task.ids).get_indexer(ids)
    return tuple(str(f) for f in task.formulas[rows[rows >= 0]])


# ---------------------------------------------------------------------------------------------- output ---


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="runs", unit="run")


def _advance(bar: Any, message: str) -> None:
    if bar is None:
        log.info(message)
        return
    bar.write(message)
    bar.update(1)
