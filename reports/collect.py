"""Read a benchmark's MLflow store back into pandas frames, and refuse inconsistent input.

Everything the report shows comes from here: one row per finished parent run (``finals``), the refit curves
(``curves``), the Optuna trials (``trials``) and the test predictions (``predictions``). The names of tags,
metrics and artifacts are those of :mod:`studies.schema`; nothing else is assumed about the writer.

A parent run is read when it is done (:func:`studies.schema.is_done`, the same definition
``benchmarks.run`` uses to skip finished work); :func:`read_finals` reads those runs only (the console
leaderboard), :func:`collect` also their curves, trials and predictions (the report).

Reading never creates anything: a tracking URI that points at a missing sqlite file is an error, not a new
empty store.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.errors import UsageError
from benchmarks.metrics import mae
from studies import schema
from studies.schema import is_done
from studies.stores import check_store_exists
from studies.tracking import ARTIFACT_VAL_PREDICTIONS, MLFLOW_PARENT_TAG, TAG_RESUMED_TRIALS

KEY = list(schema.RunKey.FIELDS)  # one finished parent run per key
# Recorded sizes of one task within this relative distance are one size of the study (Matbench folds of one
# task differ by a row or two; a scaling study's sizes differ by multiples).
SIZE_RTOL = 0.02
BUDGET_PARAMS = (schema.PARAM_BUDGET_TRIALS, schema.PARAM_BUDGET_TUNING_SECONDS, schema.PARAM_BUDGET_FIT_SECONDS)
# A stored test_mae and the MAE recomputed from predictions.csv must agree to this relative tolerance.
MAE_RTOL = 1e-6


class ReportInputError(UsageError):
    """The store is empty or inconsistent; the report is not written (exit 2)."""


# Tags on which worker held a run: meaningful only on the machine that ran it, so not part of a published run.
WORKER_TAGS = (schema.TAG_FINAL_OWNER, schema.TAG_FINAL_HEARTBEAT)
# Predictions read back from an export are float32: rounding a value to float32 moves it by at most 2**-24 of
# itself (IEEE 754 binary32, 24-bit significand, round to nearest), so an MAE by at most 2**-24 * mean(|y| + |y_hat|).
FLOAT32_ROUNDING = 2.0**-24


@dataclass(frozen=True)
class RunRecord:
    """A finished parent run as it is published: what :mod:`reports.export` keeps of it and imports back.

    ``run_id`` is the published id: the run's MLflow id, or, on a run imported from an export, the id it had in
    the store the export was made from (tag ``source_run_id``: MLflow sets a new run's id itself). ``store_id``
    is the run's id in the store it was read from (equal to ``run_id`` except on an imported run; never exported).
    ``tags``: every tag but :data:`WORKER_TAGS` and ``source_run_id``; ``metrics``: the latest value of every
    metric but the per-step curves (``train_mae``, ``val_mae``: those are ``Collected.curves``).
    """

    run_id: str
    store_id: str
    task: str  # the experiment's name
    start_time: int
    end_time: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def from_run(cls, run: Any, experiment_name: str) -> RunRecord:
        tags = run.data.tags
        dropped = (*WORKER_TAGS, schema.TAG_SOURCE_RUN_ID)
        return cls(
            run_id=tags.get(schema.TAG_SOURCE_RUN_ID) or run.info.run_id,
            store_id=run.info.run_id,
            task=experiment_name,
            start_time=int(run.info.start_time),
            end_time=None if run.info.end_time is None else int(run.info.end_time),
            tags={k: v for k, v in tags.items() if k not in dropped},
            params=dict(run.data.params),
            metrics={
                k: float(v) for k, v in run.data.metrics.items() if k not in (schema.CURVE_TRAIN, schema.CURVE_VAL)
            },
        )


VAL_COLUMNS = ["run_id", "id", "y_true", "y_pred"]
# Prediction rows made beside the runs' (published predictions, post-hoc ensembles), keyed like Collected.predictions.
PREDICTION_COLUMNS = ["run_id", "task", "model", "fold", "seed", "train_size", "id", "y_true", "y_pred"]


def no_val_predictions() -> pd.DataFrame:
    """``Collected.val_predictions`` of runs that recorded none (runs written before 2026-12-08)."""
    return pd.DataFrame({"run_id": pd.Series(dtype=str), "id": pd.Series(dtype=str),
                         "y_true": pd.Series(dtype=np.float64), "y_pred": pd.Series(dtype=np.float64)})  # fmt: skip


@dataclass(frozen=True)
class Collected:
    """All a report needs, as long tables.

    finals: one row per finished parent run; columns ``run_id``, the :data:`KEY` columns, provenance tags,
        ``composition_only`` (bool), ``depth`` (int or NA), the test metrics, times, ``params`` (dict),
        ``refit_stopped`` (why the refit stopped; "" when not recorded) and ``train_size`` (see
        :func:`add_train_size`).
    curves: ``run_id, task, model, fold, seed, depth, step, train_mae, val_mae`` of the refits.
    trials: ``parent_run_id, task, model, train_size, fold, seed, trial_number, trial_val_mae, trial_state``.
    predictions: ``run_id, task, model, fold, seed, train_size, id, y_true, y_pred``.
    skipped: human-readable notes on runs left out (unfinished parent runs), shown in the report.
    records: the parent runs as published (:class:`RunRecord`), in the order of ``finals``.
    from_export: read from an export of the store ``tracking_uri`` (:mod:`reports.export`), not the store itself.
    val_predictions: ``run_id, id, y_true, y_pred`` (float32 values as float64): each refit's predictions on its
        validation rows, for post-hoc ensembles (:mod:`reports.ensembles`); no rows for a run that recorded none
        (runs written before 2026-12-08, an export of format version 1).
    """

    tracking_uri: str
    finals: pd.DataFrame
    curves: pd.DataFrame
    trials: pd.DataFrame
    predictions: pd.DataFrame
    skipped: tuple[str, ...]
    records: tuple[RunRecord, ...] = ()
    from_export: bool = False
    val_predictions: pd.DataFrame = field(default_factory=no_val_predictions)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.finals["task"].unique())


def _client(tracking_uri: str) -> Any:
    # One progress bar per downloaded predictions.csv would bury the command's one line of output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # imported late: it is slow, and argument errors should not wait for it

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def _all_runs(client: Any, experiment_ids: list[str], filter_string: str) -> Iterator[Any]:
    """Every run matching ``filter_string``, following MLflow's pages."""
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=5000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _as_int(value: str | None, what: str, run_id: str) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise ReportInputError(f"run {run_id}: tag {what}={value!r} is not an integer") from None


def _depth(tags: dict[str, str], params: dict[str, str]) -> int | None:
    """The depth a figure groups the run by: its recorded ``model_depth`` (none for a model without a depth role,
    such as CatBoost, whose ``depth`` is a tree's); on runs written before runs recorded their declaration, the
    parameter ``depth`` (then only the published networks had one)."""
    recorded = schema.TAG_MODEL_FAMILY in tags
    value = tags.get(schema.TAG_MODEL_DEPTH) if recorded else params.get("depth")
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _arch(tags: dict[str, str], params: dict[str, str]) -> str:
    """A network's architecture as the run recorded it; on runs written before, the model's name where it had
    a ``depth`` (then only the published networks, each named after its architecture); "" otherwise."""
    if schema.TAG_MODEL_FAMILY in tags:
        return tags.get(schema.TAG_MODEL_ARCH, "")
    return tags.get(schema.TAG_MODEL, "") if "depth" in params else ""


def _final_row(record: RunRecord) -> dict[str, Any]:
    """One parent run as a flat row; raises on a run that claims to be done but lacks what that implies."""
    tags, metrics, params = record.tags, record.metrics, dict(record.params)
    run_id = record.run_id
    task = tags.get(schema.TAG_TASK, record.task)
    if task != record.task:
        raise ReportInputError(f"run {run_id}: tag task={task!r} but it sits in experiment {record.task!r}")
    for tag in (schema.TAG_MODEL, schema.TAG_FOLD, schema.TAG_SEED, schema.TAG_PRESET):
        if not tags.get(tag):
            raise ReportInputError(f"run {run_id} ({task}): finished parent run without tag {tag!r}")
    missing = [m for m in schema.TEST_METRICS if m not in metrics]  # a done run has them all (log_final)
    if missing:
        raise ReportInputError(
            f"run {run_id} ({task}, {tags[schema.TAG_MODEL]}, fold {tags[schema.TAG_FOLD]}): finished parent run "
            f"without metric(s) {', '.join(missing)}"
        )
    row: dict[str, Any] = {
        "run_id": run_id,
        "task": task,
        "model": tags[schema.TAG_MODEL],
        "fold": _as_int(tags[schema.TAG_FOLD], "fold", run_id),
        "seed": _as_int(tags[schema.TAG_SEED], "seed", run_id),
        "preset": tags[schema.TAG_PRESET],
        "code_version": tags.get(schema.TAG_CODE_VERSION, ""),
        "data_sha256": tags.get(schema.TAG_DATA_SHA256, ""),
        "featurizer": tags.get(schema.TAG_FEATURIZER, ""),
        "device": tags.get(schema.TAG_DEVICE, ""),
        "composition_only": tags.get(schema.TAG_COMPOSITION_ONLY, "false").lower() == "true",
        "max_train_rows": tags.get(schema.TAG_MAX_TRAIN_ROWS, ""),
        "val_seed": tags.get(schema.TAG_VAL_SEED, ""),
        "unit": params.get(schema.PARAM_TASK_UNIT, ""),
        "depth": _depth(tags, params),
        "arch": _arch(tags, params),
        # The model's declaration as the run recorded it; "" on runs written before (reports.declared).
        "family": tags.get(schema.TAG_MODEL_FAMILY, ""),
        "color": tags.get(schema.TAG_MODEL_COLOR, ""),
        "budget": " / ".join(params.get(p, "?") for p in BUDGET_PARAMS)
        if any(p in params for p in BUDGET_PARAMS)
        else "",
        # The model's configuration only: the unit and the budget are facts about the run.
        "params": {k: v for k, v in params.items() if k != schema.PARAM_TASK_UNIT and k not in BUDGET_PARAMS},
        "start_time": record.start_time,
        "end_time": record.end_time,
        # Why the refit stopped (early_stopping, max_steps, time_limit, completed); "" on older stores.
        "refit_stopped": tags.get(schema.TAG_REFIT_STOPPED, ""),
        "train_size_tag": tags.get(schema.TAG_TRAIN_SIZE, ""),
        # The best trial's fitted model was kept as the refit: its train_seconds are already in tuning_seconds.
        "refit_reused": tags.get(schema.TAG_REFIT_REUSED, "false").lower() == "true",
        # Trials of the study interrupted and run again, by the first trial of each retry chain ("0,0,7"); "" if none.
        "resumed_trials": tags.get(TAG_RESUMED_TRIALS, ""),
        # A study with row rungs: its rungs, configurations and rank agreement; "" for a study on every row.
        "rungs": rung_summary(metrics),
        # The fitted model as an MLflow model that takes formulas; "" on runs logged before it existed.
        "model_uri": tags.get(schema.TAG_MODEL_URI, ""),
        # The benchmarks.run command line that made the run; "" on runs logged before it was recorded.
        "command": tags.get(schema.TAG_COMMAND, ""),
        "summary": tags.get(schema.TAG_MODEL_SUMMARY, ""),
        "bibtex": tags.get(schema.TAG_MODEL_BIBTEX, ""),
        # The suite's and the model's distributions as pip pins, "; "-separated; "" on runs logged before.
        "requirements": tags.get(schema.TAG_REQUIREMENTS, ""),
    }
    for name in schema.TEST_METRICS:
        row[name] = float(metrics[name])
    for name in (
        schema.METRIC_TRAIN_SECONDS,
        schema.METRIC_INFERENCE_SECONDS,
        schema.METRIC_TUNING_SECONDS,
        schema.METRIC_N_TRIALS,
        schema.METRIC_N_COMPLETE,
        schema.METRIC_N_PRUNED,
        schema.METRIC_N_CUT_BY_BUDGET,
        schema.METRIC_BEST_VAL_MAE,
        schema.METRIC_N_TRAIN,
        schema.METRIC_N_TEST,
    ):
        row[name] = float(metrics[name]) if name in metrics else math.nan
    return row


def _curve_points(client: Any, record: RunRecord) -> list[dict[str, Any]]:
    """The refit's per-step train/val MAE, one row per step (``run_id, step, train_mae, val_mae``; NaN where a
    step has one of the two)."""
    by_step: dict[int, dict[str, Any]] = {}
    for key in (schema.CURVE_TRAIN, schema.CURVE_VAL):
        for m in client.get_metric_history(record.store_id, key):
            point = by_step.setdefault(int(m.step), {"run_id": record.run_id, "step": int(m.step),
                                                     schema.CURVE_TRAIN: math.nan,
                                                     schema.CURVE_VAL: math.nan})  # fmt: skip
            point[key] = float(m.value)
    return [p for _, p in sorted(by_step.items())]


def _where(row: dict[str, Any]) -> str:
    return f"run {row['run_id']} ({row['task']}, {row['model']}, fold {row['fold']}, seed {row['seed']})"


def _download_predictions(client: Any, record: RunRecord, row: dict[str, Any], scratch: Path) -> pd.DataFrame:
    """predictions.csv of one parent run, as stored."""
    try:
        local = client.download_artifacts(record.store_id, schema.ARTIFACT_PREDICTIONS, str(scratch / record.store_id))
    except Exception as exc:  # MLflow raises several types for a missing artifact
        raise ReportInputError(
            f"{_where(row)}: finished parent run without artifact {schema.ARTIFACT_PREDICTIONS} ({exc})"
        ) from None
    # round_trip: the values as written (pandas' default parser can be one unit in the last place off).
    return pd.read_csv(local, dtype={"id": str}, float_precision="round_trip")


def _download_val_predictions(client: Any, record: RunRecord, scratch: Path) -> pd.DataFrame | None:
    """The refit's validation predictions of one parent run (:data:`ARTIFACT_VAL_PREDICTIONS`), None where the run
    recorded none (written before 2026-12-08)."""
    if ARTIFACT_VAL_PREDICTIONS not in {f.path for f in client.list_artifacts(record.store_id)}:
        return None
    local = client.download_artifacts(record.store_id, ARTIFACT_VAL_PREDICTIONS, str(scratch / record.store_id))
    frame = pd.read_parquet(local)
    return frame.astype({"id": str}).assign(run_id=record.run_id)[VAL_COLUMNS]


def checked_predictions(frame: pd.DataFrame, row: dict[str, Any]) -> pd.DataFrame:
    """One run's test predictions (columns ``id, y_true, y_pred``), checked against its logged test_mae, with the
    run's identity columns added."""
    where = _where(row)
    if list(frame.columns[:3]) != ["id", "y_true", "y_pred"]:
        raise ReportInputError(
            f"{where}: {schema.ARTIFACT_PREDICTIONS} has columns {list(frame.columns)}, expected id,y_true,y_pred"
        )
    if frame.empty or frame["id"].duplicated().any():
        raise ReportInputError(f"{where}: {schema.ARTIFACT_PREDICTIONS} is empty or repeats an id")
    values = frame[["y_true", "y_pred"]].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ReportInputError(f"{where}: {schema.ARTIFACT_PREDICTIONS} holds a non-finite value")
    # Why: the table shows logged metrics and the plots/export use predictions; they must be the same numbers.
    recomputed = mae(values[:, 0], values[:, 1])
    float32_bound = FLOAT32_ROUNDING * float(np.mean(np.abs(values).sum(axis=1)))
    if not math.isclose(recomputed, row[schema.TEST_MAE], rel_tol=MAE_RTOL, abs_tol=max(1e-12, float32_bound)):
        raise ReportInputError(
            f"{where}: logged test_mae {row[schema.TEST_MAE]!r} but its predictions give {recomputed!r}"
        )
    frame = frame[["id", "y_true", "y_pred"]].astype({"id": str, "y_true": np.float64, "y_pred": np.float64})
    for k in ("run_id", "task", "model", "fold", "seed", "train_size"):
        frame[k] = row[k]
    return frame


def _size_levels(sizes: list[int]) -> dict[int, int]:
    """Recorded size -> the size of the study it belongs to: sizes within :data:`SIZE_RTOL` merge (to the largest)."""
    levels: dict[int, int] = {}
    group: list[int] = []
    for size in sorted(set(sizes)):
        if group and size > group[0] * (1 + SIZE_RTOL):
            levels.update(dict.fromkeys(group, group[-1]))
            group = []
        group.append(size)
    levels.update(dict.fromkeys(group, group[-1]))
    return levels


def add_train_size(finals: pd.DataFrame) -> pd.DataFrame:
    """Column ``train_size`` (int): the training rows of the run, as one size of the task's scaling study, and
    ``train_rows``: the rows as recorded.

    From the ``train_size`` tag; a run without it (older stores) counts as one size per task, valued at the
    largest ``n_train`` metric of those runs (0 when that is missing too). Sizes of one task within
    :data:`SIZE_RTOL` of each other are one size (a Matbench task's folds differ by a row or two).
    """
    out = finals.copy()
    recorded = pd.Series(0, index=out.index, dtype="int64")
    levelled = pd.Series(0, index=out.index, dtype="int64")
    for _task, group in out.groupby("task"):
        tagged = group["train_size_tag"] != ""
        for index, value in group.loc[tagged, "train_size_tag"].items():
            recorded[index] = _as_int(value, schema.TAG_TRAIN_SIZE, group.at[index, "run_id"])
        untagged = group.index[~tagged]
        if len(untagged):
            n_train = group.loc[untagged, schema.METRIC_N_TRAIN]
            recorded[untagged] = int(n_train.max()) if n_train.notna().any() else 0
        levels = _size_levels(recorded[group.index].tolist())
        levelled[group.index] = recorded[group.index].map(levels)
    out["train_rows"] = recorded
    out["train_size"] = levelled
    return out.drop(columns="train_size_tag")


def _check_runs(finals: pd.DataFrame) -> None:
    """Duplicates and runs that cannot be compared are errors, never silently averaged."""
    sizes = finals.groupby(KEY).size()
    if (sizes > 1).any():
        key = sizes[sizes > 1].index[0]
        ids = finals.set_index(KEY).loc[key, "run_id"].tolist()
        task, model, fold, seed, preset, train_size = key
        raise ReportInputError(
            f"duplicate finished parent runs for task={task} model={model} fold={fold} seed={seed} "
            f"preset={preset} train_size={train_size}: {', '.join(ids)}; delete all but one "
            f"({int((sizes > 1).sum())} duplicated key(s))"
        )
    presets = sorted(finals["preset"].unique())
    if len(presets) > 1:
        raise ReportInputError(f"runs of several presets ({', '.join(presets)}) in one store; choose one with --preset")
    for task, group in finals.groupby("task"):
        for column, what in (("data_sha256", "data"), ("composition_only", "composition_only tag")):
            values = group[column].unique()
            if len(values) > 1:
                raise ReportInputError(
                    f"task {task}: runs disagree on the {what} ({', '.join(map(str, values))}); they cannot be compared"
                )
        # A scaling study caps each size differently; within one size the cap must agree.
        for size, at_size in group.groupby("train_size"):
            values = at_size["max_train_rows"].unique()
            if len(values) > 1:
                raise ReportInputError(
                    f"task {task}, {size} training rows: runs disagree on the training-row cap "
                    f"({', '.join(map(str, values))}); they cannot be compared"
                )


def _check_test_rows(predictions: pd.DataFrame) -> None:
    """Every model of a task must have been scored on the same test rows of each fold."""
    # Every model of a task must have been scored on the same test rows of each fold.
    # (A featuriser that drops rows for one model only would otherwise make its MAE look better or worse.)
    ids = predictions.groupby(["task", "fold", "model", "run_id"])["id"].apply(frozenset)
    for (task, fold), sets in ids.groupby(level=[0, 1]):
        if len(set(sets)) > 1:
            sizes = sorted({(model, len(s)) for (_, _, model, _), s in sets.items()})
            detail = ", ".join(f"{model}: {n} rows" for model, n in sizes)
            raise ReportInputError(f"task {task} fold {fold}: runs were scored on different test rows ({detail})")


def _experiments(client: Any, tracking_uri: str, tasks: Iterable[str] | None) -> dict[str, Any]:
    wanted = list(tasks) if tasks else None
    experiments = {e.name: e for e in client.search_experiments()}
    if wanted:
        unknown = [t for t in wanted if t not in experiments]
        if unknown:
            known = sorted(n for n in experiments if n != "Default")
            raise ReportInputError(
                f"no experiment for task(s) {', '.join(unknown)} in {tracking_uri}; found: {', '.join(known) or 'none'}"
            )
        experiments = {name: experiments[name] for name in wanted}
    if not any(name != "Default" for name in experiments):
        raise ReportInputError(f"no experiments in {tracking_uri}: nothing to report")
    return experiments


def _read_records(client: Any, experiments: dict[str, Any]) -> tuple[list[RunRecord], list[tuple[str, str]]]:
    """The done parent runs of ``experiments``, and (preset, note) for each one that is not done."""
    records: list[RunRecord] = []
    skipped: list[tuple[str, str]] = []
    final_filter = f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}'"
    for name, exp in sorted(experiments.items()):
        for run in _all_runs(client, [exp.experiment_id], final_filter):
            if not is_done(run):
                tags = run.data.tags
                note = (
                    f"{name}: {tags.get(schema.TAG_MODEL, '?')} fold {tags.get(schema.TAG_FOLD, '?')} seed "
                    f"{tags.get(schema.TAG_SEED, '?')} (run {run.info.run_id}, status {run.info.status}) not finished"
                )
                skipped.append((tags.get(schema.TAG_PRESET, ""), note))
                continue
            records.append(RunRecord.from_run(run, name))
    return records, skipped


def finals_from_records(
    records: Iterable[RunRecord], skipped: Iterable[tuple[str, str]], source: str, preset: str | None
) -> tuple[pd.DataFrame, list[RunRecord], list[str]]:
    """``Collected.finals`` of the done parent runs ``records`` (of ``preset`` when given), those records in the
    same order, and the notes of ``skipped`` ((preset, note) pairs) that concern that preset. ``source`` names
    where they were read, for errors."""
    records = list(records)
    rows = [_final_row(r) for r in records]
    skipped = list(skipped)
    if preset is not None:
        rows = [r for r in rows if r["preset"] == preset]
        skipped = [(p, note) for p, note in skipped if p == preset]
    if not rows:
        where = f" with preset {preset}" if preset else ""
        raise ReportInputError(
            f"no finished parent runs ({schema.TAG_KIND}={schema.KIND_FINAL}, {schema.TAG_STATUS}={schema.STATUS_DONE})"
            f"{where} in {source}: nothing to report"
        )
    finals = add_train_size(pd.DataFrame(rows))
    # Before reading curves and artifacts: a duplicate would otherwise surface as a confusing mismatch further down.
    _check_runs(finals)
    finals = finals.sort_values(["task", "model", "train_size", "fold", "seed"]).reset_index(drop=True)
    by_id = {r.run_id: r for r in records}
    return finals, [by_id[run_id] for run_id in finals["run_id"]], [note for _, note in skipped]


def read_finals(
    tracking_uri: str, tasks: Iterable[str] | None = None, preset: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The finished parent runs of ``tasks`` (all tasks when None) as ``Collected.finals``, and notes on the
    unfinished ones. Raises :class:`ReportInputError` when there is none or the store is inconsistent."""
    check_store_exists(tracking_uri)
    client = _client(tracking_uri)
    records, skipped = _read_records(client, _experiments(client, tracking_uri, tasks))
    finals, _, notes = finals_from_records(records, skipped, tracking_uri, preset)
    return finals, notes


def assemble(
    tracking_uri: str,
    finals: pd.DataFrame,
    records: list[RunRecord],
    curve_points: pd.DataFrame,
    trials: pd.DataFrame,
    predictions: pd.DataFrame,
    skipped: Iterable[str],
    *,
    from_export: bool = False,
    val_predictions: pd.DataFrame | None = None,
) -> Collected:
    """The :class:`Collected` of ``finals`` (and their ``records``) from long tables keyed by the published run id,
    whatever they were read from (a store: :func:`collect`; an export: :mod:`reports.export`):
    ``curve_points`` (``run_id, step, train_mae, val_mae``), ``trials`` (``parent_run_id, trial_number,
    trial_val_mae, trial_state``; those of other runs are dropped) and ``predictions`` (``run_id, id, y_true,
    y_pred``; every run of ``finals`` must have rows) and ``val_predictions`` (``run_id, id, y_true, y_pred``; a run
    may have none)."""
    rows = finals.to_dict("records")
    by_run = dict(iter(predictions.groupby("run_id", sort=False))) if len(predictions) else {}
    pred_frames = []
    for row in rows:
        if row["run_id"] not in by_run:
            raise ReportInputError(f"{_where(row)}: finished parent run without test predictions")
        pred_frames.append(
            checked_predictions(by_run[row["run_id"]].drop(columns="run_id").reset_index(drop=True), row)
        )
    predictions = pd.concat(pred_frames, ignore_index=True)
    _check_test_rows(predictions)

    ident = finals[["run_id", "task", "model", "fold", "seed", "depth"]].assign(_order=np.arange(len(finals)))
    points = curve_points[["run_id", "step", schema.CURVE_TRAIN, schema.CURVE_VAL]].astype({"step": int})
    curves = ident.merge(points, on="run_id").sort_values(["_order", "step"], kind="stable").drop(columns="_order")

    parents = finals.set_index("run_id")[["task", "model", "train_size", "fold", "seed"]]
    trials = trials[["parent_run_id", "trial_number", "trial_val_mae", "trial_state"]].astype(
        {"parent_run_id": str, "trial_number": int, "trial_val_mae": float, "trial_state": str}
    )
    trials = trials[trials["parent_run_id"].isin(parents.index)]  # trials of skipped parents are not reported
    order = ["task", "model", "train_size", "fold", "seed", "trial_number", "trial_state", "trial_val_mae"]
    trials = trials.join(parents, on="parent_run_id").sort_values(order, kind="stable")
    val = no_val_predictions() if val_predictions is None or val_predictions.empty else val_predictions[VAL_COLUMNS]
    val = val[val["run_id"].isin(parents.index)].astype({"id": str, "y_true": np.float64, "y_pred": np.float64})
    return Collected(
        tracking_uri=tracking_uri,
        finals=finals,
        curves=curves.reset_index(drop=True),
        trials=trials.reset_index(drop=True),
        predictions=predictions,
        skipped=tuple(skipped),
        records=tuple(records),
        from_export=from_export,
        val_predictions=val.reset_index(drop=True),
    )


def collect(
    tracking_uri: str,
    tasks: Iterable[str] | None = None,
    preset: str | None = None,
) -> Collected:
    """Read every finished parent run (and its trials, curves, predictions) of the given tasks.

    Runs that are not done (still running, crashed, killed) are left out and listed in ``skipped``. Raises
    :class:`ReportInputError` on an empty store and on inconsistent input (see :func:`_check_runs`,
    :func:`_check_test_rows`).
    """
    check_store_exists(tracking_uri)
    client = _client(tracking_uri)
    experiments = _experiments(client, tracking_uri, tasks)
    records, skipped_runs = _read_records(client, experiments)
    finals, records, skipped = finals_from_records(records, skipped_runs, tracking_uri, preset)
    published = {r.store_id: r.run_id for r in records}  # trial runs name their parent by its id in this store

    trial_rows: list[dict[str, Any]] = []
    trial_filter = f"tags.{schema.TAG_KIND} = '{schema.KIND_TRIAL}'"
    for exp in experiments.values():
        for run in _all_runs(client, [exp.experiment_id], trial_filter):
            tags, metrics = run.data.tags, run.data.metrics
            if schema.METRIC_TRIAL_VALUE not in metrics or MLFLOW_PARENT_TAG not in tags:
                continue  # a trial that failed before scoring has nothing to plot
            trial_rows.append(
                {
                    "parent_run_id": published.get(tags[MLFLOW_PARENT_TAG], tags[MLFLOW_PARENT_TAG]),
                    "trial_number": _as_int(tags.get(schema.TAG_TRIAL_NUMBER), "trial_number", run.info.run_id),
                    "trial_val_mae": float(metrics[schema.METRIC_TRIAL_VALUE]),
                    "trial_state": tags.get(schema.TAG_TRIAL_STATE, "COMPLETE"),
                }
            )

    curve_rows: list[dict[str, Any]] = []
    pred_frames: list[pd.DataFrame] = []
    val_frames: list[pd.DataFrame] = []
    with tempfile.TemporaryDirectory(prefix="irnet-bench-report-") as scratch:
        for record, row in zip(records, finals.to_dict("records"), strict=True):
            curve_rows.extend(_curve_points(client, record))
            pred_frames.append(_download_predictions(client, record, row, Path(scratch)).assign(run_id=record.run_id))
            val = _download_val_predictions(client, record, Path(scratch) / "val")
            if val is not None:
                val_frames.append(val)
    return assemble(
        tracking_uri,
        finals,
        records,
        pd.DataFrame(curve_rows, columns=["run_id", "step", schema.CURVE_TRAIN, schema.CURVE_VAL]),
        pd.DataFrame(trial_rows, columns=["parent_run_id", "trial_number", "trial_val_mae", "trial_state"]),
        pd.concat(pred_frames, ignore_index=True),
        skipped,
        val_predictions=pd.concat(val_frames, ignore_index=True) if val_frames else None,
    )


def rung_summary(metrics: dict[str, float]) -> str:
    """A study's row rungs from its parent run's ``rung{r}_*`` metrics (``studies.tracking.rung_metrics``): "rows
    26,576: 24 configurations (Spearman with the next 0.50) -> 239,190: 3"; "" without row rungs."""
    parts = []
    r = 0
    while f"rung{r}_rows" in metrics:
        text = f"{metrics[f'rung{r}_rows']:,.0f}: {metrics.get(f'rung{r}_configurations', math.nan):.0f}"
        rho = metrics.get(f"rung{r}_spearman_next")
        parts.append(text + (f" (Spearman with the next {rho:.2f})" if rho is not None and math.isfinite(rho) else ""))
        r += 1
    return "rows " + " -> ".join(parts) if parts else ""
