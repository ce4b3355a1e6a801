"""MLflow records: experiments, parent runs per :class:`studies.schema.RunKey`, nested trial runs, the final record.

Names come from :mod:`studies.schema` (the contract with ``reports``). With the default sqlite store each
experiment's artifacts go under ``<out>/mlartifacts/<task>``; with ``--tracking-uri`` a server decides. Who may
create, resume or finish a parent run is decided in :mod:`studies.coordination`; this module only writes.

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids (no fluent "active run" state), so
a trial run is written in one go when the trial ends and a parent run can be resumed by id.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contract import CurvePoint, FitReport, Model
from studies import schema
from studies.outcomes import RungSummary, TrialOutcome, TuningResult
from studies.registry import model_info, registry
from studies.stores import is_local_store, make_client, redact_url

log = logging.getLogger(__name__)

MLFLOW_PARENT_TAG = "mlflow.parentRunId"  # what makes a run nested in MLflow's UI
MLFLOW_RUN_NAME_TAG = "mlflow.runName"
# On a parent run whose study had trials interrupted (a kill, a dead worker, Ctrl-C) and run again: the first trial
# of each one's retry chain, in order ("0,0,7": trial 0 resumed twice, trial 7 once). Absent when none was.
TAG_RESUMED_TRIALS = "resumed_trials"
# The refit's predictions on the fold's validation rows (columns id, y_true, y_pred; float32): what post-hoc
# ensemble selection weighs the suite's models on (reports.ensembles), never the test rows. Absent on runs written
# before 2026-12-08.
ARTIFACT_VAL_PREDICTIONS = schema.ARTIFACT_VAL_PREDICTIONS  # re-exported: readers import it from here
# A post-hoc ensemble of parent runs (reports.ensembles), logged with its MLflow model by benchmarks.run; never a
# parent run (reports read run_kind=final only).
KIND_ENSEMBLE = "ensemble"
# MLflow 3's UI opens an experiment by this tag: "custom_model_development" is the training view (runs
# table); without it the UI guesses and may open the GenAI overview (mlflow/server/js ExperimentKind enum).
MLFLOW_EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
MLFLOW_DATASET_CONTEXT_TAG = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT
DATASET_DIGEST_CHARS = 36  # MLflow's SQL store holds at most 36 characters of a dataset digest
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
# Tag suffix -> distribution names to try; each registered model adds its own (ModelInfo.packages).
SUITE_PACKAGES = {
    "numpy": ("numpy",),
    "optuna": ("optuna",),
    "mlflow": ("mlflow", "mlflow-skinny"),
    "matminer": ("matminer",),
    "pymatgen": ("pymatgen",),
    "irnet-bench": ("irnet-bench",),
}


# ----------------------------------------------------------------------------------------- experiments ---


def ensure_experiment(client: Any, task: str, out_dir: Path, tracking_uri: str) -> str:
    """The id of the task's experiment, created on first use (artifacts under ``<out>/mlartifacts/<task>`` for
    a local store; where the server says for a server)."""
    experiment = client.get_experiment_by_name(task)
    if experiment is None:
        location = (out_dir / "mlartifacts" / task).resolve().as_uri() if is_local_store(tracking_uri) else None
        try:
            return client.create_experiment(task, artifact_location=location,
                                            tags={MLFLOW_EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})  # fmt: skip
        except Exception:  # another process created it a moment ago
            experiment = client.get_experiment_by_name(task)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if MLFLOW_EXPERIMENT_KIND_TAG not in experiment.tags:  # made before this tag was set; a user's choice stays
        client.set_experiment_tag(experiment.experiment_id, MLFLOW_EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def ui_hint(tracking_uri: str, task: str) -> str:
    """How to open the task's runs table in MLflow's UI. MLflow 3.17's UI picks its view from the page address
    (``workflowType=machine_learning``, then remembered by the browser), else opens the GenAI overview."""
    experiment = make_client(tracking_uri).get_experiment_by_name(task)
    page = f"#/experiments/{experiment.experiment_id if experiment else ''}/runs?workflowType=machine_learning"
    if is_local_store(tracking_uri):
        return f"mlflow ui --backend-store-uri {redact_url(tracking_uri)}  then open http://127.0.0.1:5000/{page}"
    return f"{redact_url(tracking_uri).rstrip('/')}/{page}"


def dataset_input(task: Any, fold: int, n_train: int, n_val: int, n_test: int) -> Any:
    """The task's data as an MLflow dataset input of a parent run, so the UI's Dataset column and dataset
    filters work: name = task, digest = the data sha256 (cut to MLflow's 36 characters; the full one is the
    ``data_sha256`` tag), source = the file(s), profile = rows and every fold's train/test sizes; the input's
    tags name the fold and the rows this run trained, validated and was scored on."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    spec = task.spec
    source = {"uri": spec.files[0] if len(spec.files) == 1 else ",".join(spec.files), "origin": spec.source}
    columns = [("id", "string"), ("formula", "string"), (spec.property, "double")]
    profile = {
        "num_rows": int(task.n_rows),
        "split": spec.split_scheme,
        "folds": [
            {"train": len(f.train) + (0 if f.val is None else len(f.val)), "test": len(f.test)} for f in task.folds
        ],
    }
    dataset = Dataset(
        name=spec.name,
        digest=str(task.sha256)[:DATASET_DIGEST_CHARS],
        source_type="local" if spec.source == "user" else "external",
        source=json.dumps(source),
        schema=json.dumps({"mlflow_colspec": [{"name": n, "type": t} for n, t in columns]}),
        profile=json.dumps(profile),
    )
    tags = {MLFLOW_DATASET_CONTEXT_TAG: "train", "fold": str(fold), "n_train": str(n_train), "n_val": str(n_val),
            "n_test": str(n_test)}  # fmt: skip
    return DatasetInput(dataset, tags=[InputTag(k, v) for k, v in tags.items()])


def log_dataset_input(client: Any, run_id: str, task: Any, fold: int, n_train: int, n_val: int, n_test: int) -> None:
    """Attach the task's dataset input to a parent run once (a resumed run that has it keeps it)."""
    if client.get_run(run_id).inputs.dataset_inputs:
        return
    client.log_inputs(run_id, datasets=[dataset_input(task, fold, n_train, n_val, n_test)])


# ---------------------------------------------------------------------------------------- environment ---


def code_version() -> str:
    """The git commit of this code (``+dirty`` when the tree has changes), else the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(
                ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
            )
            dirty = "+dirty" if status.returncode == 0 and status.stdout.strip() else ""
            return commit.stdout.strip() + dirty
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"irnet-bench=={importlib.metadata.version('irnet-bench')} (no git commit)"
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def package_tags() -> dict[str, str]:
    """``pkg.<name>`` -> installed version, for every package a result depends on."""
    tags = {f"{schema.TAG_PACKAGE_PREFIX}python": platform.python_version()}
    packages = dict(SUITE_PACKAGES)
    for info in registry():
        packages.update(info.packages)
    for name, dists in packages.items():
        found = _installed(dists)
        if found is not None:
            tags[f"{schema.TAG_PACKAGE_PREFIX}{name}"] = found[1]
    return tags


def declaration_tags(model: str, params: Mapping[str, Any]) -> dict[str, str]:
    """What ``model`` declares about itself that a report needs (family, group, colour, and the depth its
    ``depth`` role took in ``params``), recorded on its parent run so the report needs no model code."""
    info = model_info(model)
    tags = {schema.TAG_MODEL_FAMILY: info.family, schema.TAG_MODEL_GROUP: info.group}
    tags[schema.TAG_MODEL_COLOR] = info.color
    depth_param = info.param("depth")
    if depth_param is not None and params.get(depth_param) is not None:
        tags[schema.TAG_MODEL_DEPTH] = str(params[depth_param])
    arch = getattr(info.model_class, "arch", None)  # the networks' (irnet.models.TorchNetworkModel.arch)
    if arch:
        tags[schema.TAG_MODEL_ARCH] = str(arch)
    for tag, text in ((schema.TAG_MODEL_SUMMARY, info.summary), (schema.TAG_MODEL_BIBTEX, info.bibtex)):
        if text:
            tags[tag] = text
    return tags


def machine_tags() -> dict[str, str]:
    """What the run's numbers were measured on: CPU model and logical CPUs (speeds and budgets depend on them;
    bf16 kernels differ between CPUs, so a network's fit can differ in its last digits from one machine to
    another)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {schema.TAG_HOST_CPU: cpu, schema.TAG_HOST_CPUS: str(os.cpu_count() or 0)}


def _installed(dists: Sequence[str]) -> tuple[str, str] | None:
    """(distribution, version) of the first of ``dists`` that is installed, else None."""
    for dist in dists:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _pinned(packages: Mapping[str, Sequence[str]]) -> list[str]:
    return [f"{dist}=={version}" for dist, version in filter(None, map(_installed, packages.values()))]


def pip_requirements(model: str) -> list[str]:
    """What a logged model of ``model`` needs to load and predict, pinned to the versions installed now."""
    packages = {name: SUITE_PACKAGES[name] for name in ("irnet-bench", "mlflow", "numpy")}
    return _pinned({**packages, "pandas": ("pandas",), **model_info(model).packages})


def run_requirements(model: str) -> list[str]:
    """What a run of ``model`` used, pinned to the versions installed now: the suite's packages and the model's."""
    return _pinned({**SUITE_PACKAGES, **model_info(model).packages})


# ------------------------------------------------------------------------------------------ parent runs ---


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def parent_filter(key: schema.RunKey) -> str:
    """MLflow search filter of the parent runs of ``key``."""
    parts = [f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}'"]
    parts += [f"tags.{k} = '{_quote(v)}'" for k, v in key.tags().items()]
    return " and ".join(parts)


def find_parent_runs(client: Any, experiment_id: str, key: schema.RunKey) -> list[Any]:
    """Active parent runs with ``key``'s tags, oldest first."""
    runs = client.search_runs([experiment_id], filter_string=parent_filter(key), max_results=100,
                              order_by=["attributes.start_time ASC"])  # fmt: skip
    return list(runs)


def create_parent_run(client: Any, experiment_id: str, key: schema.RunKey, tags: Mapping[str, str]) -> str:
    """A new parent run of ``key`` with ``tags``; returns its id."""
    all_tags = {**key.tags(), **tags, schema.TAG_KIND: schema.KIND_FINAL, MLFLOW_RUN_NAME_TAG: key.run_name}
    return client.create_run(experiment_id, tags=all_tags, run_name=key.run_name).info.run_id


def set_tags(client: Any, run_id: str, tags: Mapping[str, str]) -> None:
    """Set several tags in as few calls as MLflow allows."""
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in tags.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, tags=items[start : start + 100])


def mark_parent_failed(client: Any, run_id: str, message: str) -> None:
    """Record why a parent run's tuning or refit failed (a rerun retries it) and leave it FAILED."""
    client.set_tag(run_id, schema.TAG_ERROR, message[:5000])
    client.set_terminated(run_id, status="FAILED")


# --------------------------------------------------------------------------------------------- metrics ---


def curve_metrics(curve: Iterable[CurvePoint], started: float) -> list[Any]:
    """Per-step ``train_mae`` / ``val_mae`` metrics (step = epoch or boosting round); NaN points skipped."""
    from mlflow.entities import Metric

    metrics = []
    for point in curve:
        timestamp = int((started + point.seconds) * 1000)
        for name, value in ((schema.CURVE_TRAIN, point.train_mae), (schema.CURVE_VAL, point.val_mae)):
            if value is not None and math.isfinite(value):
                metrics.append(Metric(name, float(value), timestamp, int(point.step)))
    return metrics


def log_metrics(client: Any, run_id: str, metrics: Sequence[Any]) -> None:
    """Log ``mlflow.entities.Metric`` values in batches of MLflow's per-batch limit."""
    for start in range(0, len(metrics), 1000):  # MLflow's per-batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def log_params(client: Any, run_id: str, params: Sequence[Any]) -> None:
    """Log ``mlflow.entities.Param`` values in batches of 100 (MLflow's per-batch limit on parameters)."""
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])


def _params(values: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v)[:6000]) for k, v in values.items()]


class MlflowTrialRecorder:
    """Writes each finished trial as a nested run under the parent: params, per-step curve, trial_val_mae,
    state tags. Never a test metric (trials never see test data)."""

    def __init__(self, client: Any, experiment_id: str, parent_run_id: str, base_tags: Mapping[str, str]) -> None:
        self.client, self.experiment_id, self.parent_run_id = client, experiment_id, parent_run_id
        self.base_tags = dict(base_tags)

    def record(self, outcome: TrialOutcome) -> None:
        """Write one trial run in one go (a kill mid-trial leaves no half-written trial run)."""
        from mlflow.entities import Metric

        tags = {
            **self.base_tags,
            MLFLOW_PARENT_TAG: self.parent_run_id,
            schema.TAG_KIND: schema.KIND_TRIAL,
            schema.TAG_TRIAL_NUMBER: str(outcome.number),
            schema.TAG_TRIAL_STATE: outcome.state,
        }
        if outcome.failure:
            tags[schema.TAG_TRIAL_FAILURE] = outcome.failure[:5000]
        if outcome.retry_of is not None:
            tags[schema.TAG_TRIAL_RETRY_OF] = str(outcome.retry_of)
        if outcome.is_defaults:
            tags[schema.TAG_TRIAL_DEFAULTS] = "true"
        if outcome.report is not None:
            tags[schema.TAG_DEVICE] = outcome.report.device
            tags[schema.TAG_STOPPED] = outcome.report.stopped
        run = self.client.create_run(
            self.experiment_id, start_time=int(outcome.started * 1000), tags=tags, run_name=f"trial-{outcome.number}"
        )
        run_id = run.info.run_id
        log_params(self.client, run_id, _params(outcome.params))
        metrics = curve_metrics(outcome.curve, outcome.started)
        if outcome.value is not None and math.isfinite(outcome.value):
            metrics.append(Metric(schema.METRIC_TRIAL_VALUE, float(outcome.value), int(outcome.finished * 1000), 0))
        log_metrics(self.client, run_id, metrics)
        self.client.set_terminated(run_id, status=TRIAL_STATUS[outcome.state], end_time=int(outcome.finished * 1000))

    def interrupted(self, numbers: list[int]) -> None:
        """Mark trial runs of interrupted trials (if a kill hit after their run was written) as FAIL/KILLED."""
        for number in numbers:
            runs = self.client.search_runs(
                [self.experiment_id],
                filter_string=(f"tags.{MLFLOW_PARENT_TAG} = '{self.parent_run_id}' and "
                               f"tags.{schema.TAG_TRIAL_NUMBER} = '{number}'"),
            )  # fmt: skip
            for run in runs:
                set_tags(self.client, run.info.run_id, {schema.TAG_TRIAL_STATE: "FAIL", "trial_interrupted": "true"})
                self.client.set_terminated(run.info.run_id, status="KILLED")


# ------------------------------------------------------------------------------------------ final record ---


@dataclass
class FinalRecord:
    """Everything the parent run receives once the refit has been scored on the test part."""

    params: dict[str, Any]
    report: FitReport
    test_metrics: dict[str, float]  # mae, rmse, r2, max_error
    test_ids: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    model: Model
    tuning: TuningResult
    train_seconds: float
    inference_seconds: float
    n_train: int
    n_val: int
    n_test: int
    unit: str
    extra_params: dict[str, Any]
    refit_started: float
    refit_reused: bool = False  # the best trial's fitted model was kept instead of training it again
    featurizer: str = "magpie"  # what the model's inputs were computed by (its formula model featurises so)
    example_formulas: tuple[str, ...] = ()  # a few test formulas: the formula model's input example
    # The refit's predictions on the validation rows (ids, targets, predictions), for post-hoc ensembles.
    val_ids: np.ndarray | None = None
    y_val: np.ndarray | None = None
    y_val_pred: np.ndarray | None = None


def log_final(client: Any, run_id: str, key: schema.RunKey, record: FinalRecord) -> None:
    """Artifacts, parameters and curves on the parent run; mark it FINISHED; then, in one last batch, the test
    metrics and the done tag. A run therefore carries test metrics only if it is done, and a done run is
    complete and FINISHED: a process killed anywhere before that batch leaves a run that is not done
    (:func:`studies.schema.is_done`), which a rerun resumes."""
    from mlflow.entities import Metric, RunTag

    from studies.formula_model import log_formula_model
    from studies.plots import convergence_plot, parity_plot

    title = f"{key.task}: {key.model}, fold {key.fold}, seed {key.seed} ({key.preset})"
    with tempfile.TemporaryDirectory(prefix="irnet-bench-artifacts-") as tmp:
        folder = Path(tmp)
        import pandas as pd

        pd.DataFrame({"id": record.test_ids, "y_true": record.y_true, "y_pred": record.y_pred}).to_csv(
            folder / schema.ARTIFACT_PREDICTIONS, index=False
        )
        artifacts = [schema.ARTIFACT_PREDICTIONS, schema.ARTIFACT_PARITY, schema.ARTIFACT_CONVERGENCE,
                     schema.ARTIFACT_BEST_PARAMS]  # fmt: skip
        if record.val_ids is not None and record.y_val is not None and record.y_val_pred is not None:
            write_val_predictions(folder / ARTIFACT_VAL_PREDICTIONS, record.val_ids, record.y_val, record.y_val_pred)
            artifacts.append(ARTIFACT_VAL_PREDICTIONS)
        parity_plot(record.y_true, record.y_pred, folder / schema.ARTIFACT_PARITY, title=title, unit=record.unit)
        convergence_plot(record.report.curve, record.tuning.history, folder / schema.ARTIFACT_CONVERGENCE,
                         title=title, step_name=model_info(key.model).step_name)  # fmt: skip
        (folder / schema.ARTIFACT_BEST_PARAMS).write_text(
            json.dumps(
                {
                    "params": record.params,
                    "best_trial": record.tuning.best_trial_number,
                    "best_trial_val_mae": record.tuning.best_value,
                    "n_trials": record.tuning.n_trials,
                    "refit_best_step": record.report.best_step,
                    "refit_stopped": record.report.stopped,
                },
                indent=2,
                default=str,
            )
        )
        for name in artifacts:
            client.log_artifact(run_id, str(folder / name))
    uri = log_formula_model(
        client,
        run_id,
        record.model,
        featurizer=record.featurizer,
        code_version=code_version(),
        example_formulas=record.example_formulas,
        requirements=pip_requirements(key.model),
    )

    _log_new_params(client, run_id, {**record.params, **record.extra_params, schema.PARAM_TASK_UNIT: record.unit})
    log_metrics(client, run_id, curve_metrics(record.report.curve, record.refit_started))

    now = int(time.time() * 1000)
    summary = {
        **{schema.TEST_PREFIX + name: value for name, value in record.test_metrics.items()},
        schema.METRIC_BEST_VAL_MAE: record.report.best_val_mae,
        schema.METRIC_TRAIN_SECONDS: record.train_seconds,
        schema.METRIC_INFERENCE_SECONDS: record.inference_seconds,
        schema.METRIC_TUNING_SECONDS: record.tuning.tuning_seconds,
        schema.METRIC_N_TRIALS: record.tuning.n_trials,
        schema.METRIC_N_COMPLETE: record.tuning.n_complete,
        schema.METRIC_N_PRUNED: record.tuning.n_pruned,
        schema.METRIC_N_CUT_BY_BUDGET: record.tuning.n_cut_by_budget,
        schema.METRIC_N_TRAIN: record.n_train,
        schema.METRIC_N_VAL: record.n_val,
        schema.METRIC_N_TEST: record.n_test,
        **rung_metrics(record.tuning.rungs),
    }
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if v is not None and math.isfinite(float(v))]
    tags = [
        RunTag(schema.TAG_DEVICE, record.report.device),
        RunTag(schema.TAG_REFIT_STOPPED, record.report.stopped),
        RunTag(schema.TAG_REFIT_REUSED, str(record.refit_reused).lower()),
        RunTag(schema.TAG_MODEL_URI, uri),
    ]
    if "precision" in record.report.extra:  # which kernel trained a network (bf16 autocast on which CPU feature)
        tags.append(RunTag(schema.TAG_REFIT_PRECISION, str(record.report.extra["precision"])))
    if "resumed_from_epoch" in record.report.extra:
        tags.append(RunTag(schema.TAG_RESUMED_FROM_EPOCH, str(record.report.extra["resumed_from_epoch"])))
    if record.tuning.resumed_trials:
        tags.append(RunTag(TAG_RESUMED_TRIALS, ",".join(str(n) for n in record.tuning.resumed_trials)))
    tags += [RunTag(name, value) for name, value in declaration_tags(key.model, record.params).items()]
    tags.append(RunTag(schema.TAG_REQUIREMENTS, "; ".join(run_requirements(key.model))))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, status="FINISHED")  # MLflow accepts logging to a FINISHED run
    mark_done(client, run_id, metrics)


def write_val_predictions(path: Path, ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> Path:
    """The validation predictions artifact (:data:`ARTIFACT_VAL_PREDICTIONS`): ``id`` (string), ``y_true`` and
    ``y_pred`` (float32), one row per validation row in the order given; parquet, zstd."""
    import pandas as pd

    frame = pd.DataFrame({"id": np.asarray(ids).astype(str), "y_true": np.asarray(y_true, dtype=np.float32),
                          "y_pred": np.asarray(y_pred, dtype=np.float32)})  # fmt: skip
    frame.to_parquet(path, index=False, compression="zstd")
    return path


def rung_metrics(rungs: Sequence[RungSummary]) -> dict[str, float]:
    """A study with row rungs, as metrics of its parent run: per rung r (from 0), ``rung{r}_rows``,
    ``rung{r}_configurations`` and ``rung{r}_spearman_next`` (left out where NaN)."""
    out: dict[str, float] = {}
    for r, rung in enumerate(rungs):
        out.update({f"rung{r}_rows": rung.rows, f"rung{r}_configurations": rung.configurations,
                    f"rung{r}_spearman_next": rung.spearman_next})  # fmt: skip
    return out


def mark_done(client: Any, run_id: str, summary: Sequence[Any]) -> None:
    """The last write of a parent run: its summary metrics (the test metrics among them) and the done tag,
    in one batch."""
    from mlflow.entities import RunTag

    client.log_batch(run_id, metrics=list(summary), tags=[RunTag(schema.TAG_STATUS, schema.STATUS_DONE)])


def _log_new_params(client: Any, run_id: str, values: Mapping[str, Any]) -> None:
    """Log parameters, skipping those already on the run (MLflow params are immutable; a resumed parent whose
    earlier attempt logged them keeps the first value, and a differing one is warned about)."""
    existing = client.get_run(run_id).data.params
    fresh = []
    for param in _params(values):
        if param.key not in existing:
            fresh.append(param)
        elif existing[param.key] != param.value:
            log.warning("run %s: parameter %s stays %r (now %r)", run_id, param.key, existing[param.key], param.value)
    log_params(client, run_id, fresh)
