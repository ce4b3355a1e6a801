"""The benchmark protocol: for each fold, seed and model, tune on validation, refit, score the test part once.

For every (model, fold, seed):

1. skip it if its parent run is done; otherwise claim (create or resume) the parent run;
2. tune the model's search space with Optuna on the fold's training rows, early stopping and pruning on the
   validation rows carved from them (the fixed validation part for OQMD), under the preset's budget;
3. refit the best configuration with the seed on the same training rows (early stopping on validation);
4. predict the fold's test part once, score it (MAE, RMSE, R², max error), and log everything; mark done.

Test rows reach step 4 only: trials receive :class:`benchmarks.splits.TrainingData`, never the test view.
The results come back as a long table (one row per task, model, fold, seed and metric) read from MLflow, so a
rerun that skips finished work still reports it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.contract import Model
from benchmarks.errors import BenchError
from benchmarks.splits import TestData, TrainingData
from studies import schema
from studies.presets import Preset, TrialBudget, expected_fit_seconds
from studies.registry import get_model_class
from studies.spaces import NETWORK_MODELS, Spec, check_space, converging_network_regime, fixed, get_search, merge_space
from studies.tracking import (
    FinalHeartbeat,
    FinalRecord,
    MlflowTrialRecorder,
    ParentKey,
    ResultRow,
    claim_final_step,
    claim_parent_run,
    code_version,
    ensure_experiment,
    find_parent_runs,
    final_step_state,
    check_parent_config,
    log_dataset_input,
    log_final,
    make_client,
    mark_parent_interrupted,
    package_tags,
    read_results,
)
from studies.locks import storage_lock
from studies.tuning import (
    TRIAL_FAILURES,
    ProgressLog,
    StudyKey,
    first_line,
    fit_identity,
    load_trial_fit,
    make_storage,
    open_study,
    tune,
)

log = logging.getLogger(__name__)

THREAD_PARAMS = ("n_jobs", "num_threads", "nthread")  # what the models call their thread count


@dataclass(frozen=True)
class RunPlan:
    """Everything one benchmark run needs, validated by the command line before any work starts."""

    task: Any  # benchmarks.loader.TaskData
    models: tuple[str, ...]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    preset: Preset  # with command-line overrides applied (budget, max_train_rows)
    out_dir: Path
    storage_url: str
    tracking_uri: str
    device: str = "cpu"
    threads: int = 1
    featurizer: str = "magpie"
    cache_dir: Path | None = None
    val_seed: int = 0  # the same validation rows for every model and seed: only the model seed varies
    progress: bool = True
    fold_tags: dict[int, dict[str, str]] = field(default_factory=dict)  # extra parent-run tags per fold
    # Training-row caps of a scaling study (None in it: all rows), increasing; empty: the preset's cap only.
    train_sizes: tuple[int | None, ...] = ()

    @property
    def task_name(self) -> str:
        return str(self.task.spec.name)

    def caps(self) -> tuple[int | None, ...]:
        """The training-row caps the run covers, smallest first."""
        return self.train_sizes or (self.preset.max_train_rows,)

    def effective_cap(self, cap: int | None, fold: int) -> int | None:
        """``cap``, or None where it does not bind on ``fold`` (so "all" and a cap above the fold's training
        part are one configuration with one key)."""
        from benchmarks.loader import training_size

        if cap is None or cap >= training_size(self.task, fold, val_seed=self.val_seed):
            return None
        return cap

    def jobs(self) -> list[tuple[int | None, ParentKey]]:
        """Every (training-row cap, key) of the run: size by size, smallest first, and within a size
        fold-major, so an interrupted run has whole sizes and folds. The key carries the training rows."""
        return [(cap, key) for jobs in self.jobs_by_size().values() for cap, key in jobs]

    def jobs_by_size(self) -> dict[int | None, list[tuple[int | None, ParentKey]]]:
        """:meth:`jobs` under the cap each was asked for (None: all rows); folds of one cap may differ by a row
        or two in training size (Matbench folds are not all equal), so tables group by this."""
        from benchmarks.loader import training_size

        out: dict[int | None, list[tuple[int | None, ParentKey]]] = {}
        for requested in self.caps():
            for fold in self.folds:
                cap = self.effective_cap(requested, fold)
                n_train = training_size(self.task, fold, val_seed=self.val_seed, max_train_rows=cap)
                for seed in self.seeds:
                    for model in self.models:
                        key = ParentKey(self.task_name, model, fold, seed, self.preset.name, n_train)
                        out.setdefault(requested, []).append((cap, key))
        return out

    def keys(self) -> list[ParentKey]:
        """Every (model, fold, seed, training size) of the run, in :meth:`jobs` order."""
        return [key for _, key in self.jobs()]

    def config(self, cap: int | None = None) -> dict[str, str]:
        """What the runs of one training-row cap are trained on; a rerun with other values is refused rather
        than mixed in."""
        return {
            schema.TAG_DATA_SHA256: str(self.task.sha256),
            schema.TAG_FEATURIZER: self.featurizer,
            schema.TAG_MAX_TRAIN_ROWS: "all" if cap is None else str(cap),
            schema.TAG_VAL_SEED: str(self.val_seed),
        }

    def budget(self, key: ParentKey) -> TrialBudget:
        """The study budget of ``key``: by the preset's rule from its model family and training rows."""
        return self.preset.budget_for(key.model, int(key.train_size or 0), self.device)


PAPER_TRIAL_FITS = 4.0  # queue the paper's regime only where tuning has room for this many expected fits


def first_trials(plan: RunPlan, key: ParentKey, budget: TrialBudget) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Trial 0's parameters (over the model's defaults) and the configurations queued after it.

    A network study under a preset with ``network_trial0 = "converging"`` starts with a regime that
    early-stops within the budget on the machine it runs on; the paper's regime (the model's defaults)
    follows as trial 1 where the space holds it and tuning has room for several fits.
    """
    if key.model not in NETWORK_MODELS or plan.preset.network_trial0 != "converging":
        return {}, []
    n_train = int(key.train_size or 0)
    room = budget.tuning_seconds is None or (
        budget.tuning_seconds >= PAPER_TRIAL_FITS * expected_fit_seconds("networks", n_train, plan.device)
    )
    return converging_network_regime(n_train), [get_model_class(key.model).default_params()] if room else []


def resolved_space(model: str, preset: Preset, threads: int) -> dict[str, Spec]:
    """The model's declared space, narrowed and capped by the preset, with the thread count fixed."""
    cls = get_model_class(model)
    space = merge_space(get_search(model).space, preset.overrides_for(model))
    defaults = cls.default_params()
    space.update({name: fixed(threads) for name in THREAD_PARAMS if name in defaults})
    check_space(space, defaults, model=model)
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
        resolved_space(model, plan.preset, plan.threads)


@dataclass
class JobOutcome:
    """What happened to one (model, fold, seed)."""

    key: ParentKey
    state: str  # "done" (this process finished it), "skipped" (done before), "elsewhere", "failed"
    message: str = ""


@dataclass
class RunOutcome:
    """The run's jobs and its long results table."""

    jobs: list[JobOutcome] = field(default_factory=list)
    results: list[ResultRow] = field(default_factory=list)

    @property
    def failed(self) -> list[JobOutcome]:
        return [j for j in self.jobs if j.state == "failed"]


def run_benchmark(plan: RunPlan) -> RunOutcome:
    """Run every (model, fold, seed) of ``plan`` that is not done yet and return all their results."""
    from benchmarks.loader import task_fold

    client = make_client(plan.tracking_uri)
    experiment_id = ensure_experiment(client, plan.task_name, plan.out_dir, plan.tracking_uri)
    storage = make_storage(plan.storage_url)
    env_tags = {
        schema.TAG_CODE_VERSION: code_version(),
        schema.TAG_COMPOSITION_ONLY: str(bool(plan.task.spec.composition_only)).lower(),
        schema.TAG_DEVICE: plan.device,
        **package_tags(),
    }
    outcome = RunOutcome()
    jobs = plan.jobs()
    bar = _bar(len(jobs), plan.progress)
    try:
        groups = list(dict.fromkeys((cap, key.fold) for cap, key in jobs))  # (cap, fold) in job order
        for cap, fold in groups:
            group_keys = [k for c, k in jobs if (c, k.fold) == (cap, fold)]
            pending = [k for k in group_keys if not _is_done(client, experiment_id, k)]
            for key in group_keys:
                if key not in pending:
                    shutil.rmtree(trial_model_dir(plan, key), ignore_errors=True)  # left by a kill after "done"
                    outcome.jobs.append(JobOutcome(key, "skipped", "done in an earlier run"))
                    _advance(bar, f"{key.run_name}: done earlier")
            if not pending:
                continue
            training, test = task_fold(
                plan.task,
                fold,
                featurizer=plan.featurizer,
                val_seed=plan.val_seed,
                max_train_rows=cap,
                cache_dir=plan.cache_dir,
                progress=plan.progress,
            )
            fold_tags = {**env_tags, **plan.fold_tags.get(fold, {})}
            for key in pending:
                job = run_job(plan, key, training, test, client=client, experiment_id=experiment_id,
                              storage=storage, env_tags=fold_tags, cap=cap)  # fmt: skip
                outcome.jobs.append(job)
                _advance(bar, f"{key.run_name}: {job.message or job.state}")
        _settle_elsewhere(plan, outcome, client=client, experiment_id=experiment_id, storage=storage, env_tags=env_tags)
    finally:
        if bar is not None:
            bar.close()
    return collect_outcome(plan, outcome, client=client, experiment_id=experiment_id)


def collect_outcome(
    plan: RunPlan, outcome: RunOutcome | None = None, *, client: Any = None, experiment_id: str | None = None
) -> RunOutcome:
    """Read every (model, fold, seed) of the plan back from MLflow, whoever ran it, and write the long
    results table. Jobs not finished are reported as failed."""
    client = client or make_client(plan.tracking_uri)
    if experiment_id is None:
        experiment_id = ensure_experiment(client, plan.task_name, plan.out_dir, plan.tracking_uri)
    outcome = outcome or RunOutcome()
    keys = plan.keys()
    outcome.results = read_results(client, experiment_id, keys)
    if not outcome.jobs:  # the work ran in worker processes: what is not done now did not finish
        for key in keys:
            done = _is_done(client, experiment_id, key)
            outcome.jobs.append(JobOutcome(key, "done" if done else "failed", "" if done else "not finished by any worker"))
    write_results_table(outcome.results, plan.out_dir / f"results_{plan.task_name}_{plan.preset.name}.csv")
    return outcome


FINAL_POLL_S = 5.0


def _settle_elsewhere(
    plan: RunPlan, outcome: RunOutcome, *, client: Any, experiment_id: str, storage: Any, env_tags: dict[str, str]
) -> None:
    """Wait for the refits other workers took; take one over when its worker died, so that a run that ends
    has every (model, fold, seed) scored exactly once whichever workers survive."""
    from benchmarks.loader import task_fold

    caps = {key: cap for cap, key in plan.jobs()}
    while True:
        waiting = [i for i, job in enumerate(outcome.jobs) if job.state == "elsewhere"]
        if not waiting:
            return
        for i in waiting:
            key = outcome.jobs[i].key
            runs = find_parent_runs(client, experiment_id, key)
            state = final_step_state(client, runs[0].info.run_id) if runs else "orphaned"
            if state == "done":
                outcome.jobs[i] = JobOutcome(key, "done", "scored by another worker")
            elif state == "orphaned":
                log.warning("%s: the worker that took its refit stopped; taking it over", key.run_name)
                training, test = task_fold(plan.task, key.fold, featurizer=plan.featurizer, val_seed=plan.val_seed,
                                           max_train_rows=caps[key], cache_dir=plan.cache_dir,
                                           progress=False)  # fmt: skip
                outcome.jobs[i] = run_job(plan, key, training, test, client=client, experiment_id=experiment_id,
                                          storage=storage, env_tags={**env_tags, **plan.fold_tags.get(key.fold, {})}, cap=caps[key])  # fmt: skip
        if any(job.state == "elsewhere" for job in outcome.jobs):
            time.sleep(FINAL_POLL_S)


def trial_model_dir(plan: RunPlan, key: ParentKey) -> Path:
    """Where a study keeps its best trial's fitted model until the parent run holds the final one."""
    return plan.out_dir / "trial_models" / study_key_of(key).name


def study_key_of(key: ParentKey) -> StudyKey:
    """The Optuna study of a parent run (one per model, fold, seed, preset and training size)."""
    return StudyKey(key.task, key.model, key.fold, key.seed, key.preset, key.train_size)


def _is_done(client: Any, experiment_id: str, key: ParentKey) -> bool:
    return any(r.data.tags.get(schema.TAG_STATUS) == schema.STATUS_DONE for r in find_parent_runs(client, experiment_id, key))


def run_job(
    plan: RunPlan,
    key: ParentKey,
    training: TrainingData,
    test: TestData,
    *,
    client: Any,
    experiment_id: str,
    storage: Any,
    env_tags: dict[str, str],
    cap: int | None = None,
) -> JobOutcome:
    """Tune, refit, score once and record one (model, fold, seed, training size); ``cap`` is the training-row
    cap that gave ``training``."""
    study_key = study_key_of(key)
    tags = {**env_tags, schema.TAG_STUDY_NAME: study_key.name}
    config = plan.config(cap)
    budget = plan.budget(key)
    # Look-then-write claims run under a lock in the shared storage, so concurrent workers never create two
    # parent runs for one key nor both take its one test scoring.
    with storage_lock(plan.storage_url, f"parent:{study_key.name}"):
        parent = claim_parent_run(client, experiment_id, key, tags, config)
    if parent.state == "done":
        return JobOutcome(key, "skipped", "done in an earlier run")
    model_dir = trial_model_dir(plan, key)
    try:
        log_dataset_input(client, parent.run_id, plan.task, key.fold, len(training.y_train), len(training.y_val),
                          len(test.y))  # fmt: skip
        model_cls = get_model_class(key.model)
        search = get_search(key.model)
        space = resolved_space(key.model, plan.preset, plan.threads)
        study = open_study(storage, study_key, search=search, preset=plan.preset, config=config)
        recorder = MlflowTrialRecorder(client, experiment_id, parent.run_id, {**key.tags(), schema.TAG_STUDY_NAME: study_key.name})
        trial0, extra_trials = first_trials(plan, key, budget)
        tuning = tune(
            study,
            model_cls=model_cls,
            search=search,
            space=space,
            training=training,
            budget=budget,
            seed=key.seed,
            device=plan.device,
            recorder=recorder,
            progress=plan.progress,
            description=f"tune {key.model} fold {key.fold} seed {key.seed} n={key.train_size}",
            trial0=trial0,
            extra_trials=extra_trials,
            model_dir=model_dir,
        )
        with storage_lock(plan.storage_url, f"final:{study_key.name}"):
            claimed = claim_final_step(client, parent.run_id)
        if not claimed:
            return JobOutcome(key, "elsewhere", "refit and test scoring taken by another worker")
        with FinalHeartbeat(client, parent.run_id):
            # A log, not a terminal: timed lines while the refit runs.
            heartbeat = None if plan.progress else ProgressLog(f"{key.task} {key.run_name} refit")
            with heartbeat or contextlib.nullcontext():
                if heartbeat is not None:
                    heartbeat.say("refitting the best configuration, then scoring on the test part")
                record = refit_and_score(model_cls, tuning, training, test, plan, key, budget)
            log_final(client, parent.run_id, key, record)
        shutil.rmtree(model_dir, ignore_errors=True)  # the parent run holds the model now
    except KeyboardInterrupt:
        mark_parent_interrupted(client, parent.run_id)
        raise
    except (BenchError, *TRIAL_FAILURES) as exc:
        # One model failing (every trial crashed, the refit diverged) must not lose the other models' runs.
        message = f"{type(exc).__name__}: {first_line(exc)}"
        log.error("%s %s: %s", key.task, key.run_name, message)
        client.set_tag(parent.run_id, schema.TAG_ERROR, message[:5000])
        client.set_terminated(parent.run_id, status="FAILED")
        return JobOutcome(key, "failed", message)
    mae = record.test_metrics["mae"]
    refit = "best trial's model kept" if record.refit_reused else f"{record.train_seconds:.0f} s refit"
    cut = ", cut short by the time cap" if record.report.stopped == schema.REFIT_STOPPED_TIME_LIMIT else ""
    return JobOutcome(
        key,
        "done",
        f"test MAE {mae:.4g} ({tuning.n_trials} trials, {tuning.tuning_seconds:.0f} s tuning, {refit}{cut})",
    )


def reusable_trial_fit(tuning: Any, training: TrainingData, plan: RunPlan, key: ParentKey) -> tuple[Model, Any] | None:
    """The best trial's saved model and report when the refit would repeat that trial exactly (same full
    parameters, seed and rows, checked by :func:`studies.tuning.fit_identity`); None otherwise (no saved
    model, e.g. the trial ran on another machine, or a different fit)."""
    if not tuning.best_model_file or not tuning.best_fit_identity:
        return None
    identity = fit_identity(model_cls_params(tuning.best_params, key), key.seed, training)
    if identity != tuning.best_fit_identity:
        return None
    return load_trial_fit(tuning.best_model_file, identity, device=plan.device)


def model_cls_params(params: dict[str, Any], key: ParentKey) -> dict[str, Any]:
    """The full parameters the refit's model is built with (the defaults of ``key.model`` under ``params``)."""
    return dict(get_model_class(key.model)(dict(params), seed=key.seed).params)


def refit_and_score(
    model_cls: type[Model],
    tuning: Any,
    training: TrainingData,
    test: TestData,
    plan: RunPlan,
    key: ParentKey,
    budget: TrialBudget | None = None,
) -> FinalRecord:
    """Refit the best configuration with the run's seed (early stopping on validation), or keep the best
    trial's model where the refit would repeat it exactly; then predict the test part once and score it."""
    budget = budget or plan.budget(key)
    refit_started = time.time()
    reused = reusable_trial_fit(tuning, training, plan, key)
    if reused is not None:
        model, report = reused
        train_seconds = float(report.fit_seconds)  # what the kept model cost (spent inside tuning)
    else:
        model = model_cls(dict(tuning.best_params), seed=key.seed, device=plan.device)
        start = time.perf_counter()
        report = model.fit(training.X_train, training.y_train, training.X_val, training.y_val,
                           time_limit_s=budget.fit_seconds)  # fmt: skip
        train_seconds = time.perf_counter() - start
    if not math.isfinite(report.best_val_mae):
        raise FloatingPointError(f"the refit's validation MAE is {report.best_val_mae}")
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
    )


# ---------------------------------------------------------------------------------------------- output ---


def results_frame(rows: Sequence[ResultRow]) -> pd.DataFrame:
    """The long results table: task, model, fold, seed, preset, metric, value, times, device, run id."""
    columns = list(ResultRow.__dataclass_fields__)
    return pd.DataFrame([r.__dict__ for r in rows], columns=columns)


def write_results_table(rows: Sequence[ResultRow], path: Path) -> Path:
    """Write the long results table as CSV (atomically)."""
    from benchmarks.atomic import atomic_write

    with atomic_write(path, "w") as handle:
        results_frame(rows).to_csv(handle, index=False)
    return path


def leaderboard(rows: Sequence[ResultRow], *, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Test MAE per model, mean and (population) std over folds and seeds, ranked by the mean; times are
    summed over the model's runs (tuning + refit) and the refit's mean training seconds."""
    frame = results_frame(rows)
    frame = frame[frame["metric"] == "mae"]
    records = []
    for model, group in frame.groupby("model", sort=False):
        values = group["value"].to_numpy(dtype=np.float64)
        records.append(
            {
                "model": model,
                "mae_mean": float(values.mean()),
                "mae_std": float(values.std(ddof=0)),
                "runs": len(values),
                "refit_s": float(group["train_seconds"].mean()),
                "total_s": float((group["tuning_seconds"] + group["train_seconds"] + group["inference_seconds"]).sum()),
                "refit_stopped": ",".join(sorted({str(v) for v in group["refit_stopped"] if v})),
                "cut_short": int((group["refit_stopped"] == schema.REFIT_STOPPED_TIME_LIMIT).sum()),
            }
        )
    columns = ["model", "mae_mean", "mae_std", "runs", "refit_s", "total_s", "refit_stopped", "cut_short"]
    board = pd.DataFrame(records, columns=columns)
    if board.empty:
        return board.assign(rank=pd.Series(dtype=int))
    order = {m: i for i, m in enumerate(models or [])}
    board["_order"] = board["model"].map(lambda m: order.get(m, len(order)))
    board = board.sort_values(["mae_mean", "_order"]).drop(columns="_order").reset_index(drop=True)
    board.insert(0, "rank", board["mae_mean"].rank(method="min").astype(int))
    return board


CUT_SHORT = "cut short"  # beside a score whose refit hit its time cap (refit_stopped = time_limit)


def format_leaderboard(board: pd.DataFrame, *, title: str, unit: str = "") -> str:
    """The leaderboard as an aligned text table; a score whose refit hit its time cap is marked "cut short"
    (with the count when only some of the model's runs were)."""
    unit_text = f" ({unit})" if unit else ""
    header = (f"{'rank':>4}  {'model':<10} {'test MAE' + unit_text:<36} {'runs':>4} {'refit s':>8} {'total s':>8}  "
              "refit stopped")  # fmt: skip
    lines = [title, header, "-" * len(header)]
    for row in board.itertuples(index=False):
        mae = f"{row.mae_mean:.4g} ± {row.mae_std:.2g}"
        if row.cut_short:
            mae += f" {CUT_SHORT}" + ("" if row.cut_short == row.runs else f" {row.cut_short}/{row.runs}")
        lines.append(f"{row.rank:>4}  {row.model:<10} {mae:<36} {row.runs:>4} {row.refit_s:>8.1f} "
                     f"{row.total_s:>8.0f}  {row.refit_stopped or '-'}")  # fmt: skip
    if board.empty:
        lines.append("(no finished runs)")
    return "\n".join(lines)


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
