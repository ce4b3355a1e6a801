"""MLflow: where runs go, the parent run per (model, fold, seed), nested trial runs, and the final record.

Names come from :mod:`studies.schema` (the contract with ``reports``). The default tracking store is an
embedded sqlite file in the output folder, with each experiment's artifacts under
``<out>/mlartifacts/<task>`` (MLflow 3 refuses its file store, which is in maintenance mode). ``--tracking-uri`` points at a server.

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids (no fluent "active run" state), so
a trial run is written in one go when the trial ends and a parent run can be resumed by id.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import platform
import subprocess
import threading
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contract import CurvePoint, FitReport, Model
from benchmarks.errors import UsageError
from studies import schema
from studies.tuning import TrialOutcome, TuningResult, first_line, redact_url
from studies.workers import current_worker, is_alive

log = logging.getLogger(__name__)

MLFLOW_PARENT_TAG = "mlflow.parentRunId"  # what makes a run nested in MLflow's UI
MLFLOW_RUN_NAME_TAG = "mlflow.runName"
# MLflow 3's UI opens an experiment by this tag: "custom_model_development" is the training view (runs
# table); without it the UI guesses and may open the GenAI overview (mlflow/server/js ExperimentKind enum).
MLFLOW_EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
MLFLOW_DATASET_CONTEXT_TAG = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT
DATASET_DIGEST_CHARS = 36  # MLflow's SQL store holds at most 36 characters of a dataset digest
STEP_NAMES = {"network": "epoch", "tree": "boosting round"}  # what a curve's step counts (rf: trees)
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
PACKAGES = {  # tag suffix -> distribution names to try
    "python": (),
    "numpy": ("numpy",),
    "torch": ("torch",),
    "sklearn": ("scikit-learn",),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "lightgbm": ("lightgbm",),
    "optuna": ("optuna",),
    "mlflow": ("mlflow", "mlflow-skinny"),
    "matminer": ("matminer",),
    "pymatgen": ("pymatgen",),
    "irnet-bench": ("irnet-bench",),
}


# ------------------------------------------------------------------------------------------ locations ---


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.expanduser().resolve()}"


def default_tracking_uri(out_dir: Path) -> str:
    """``sqlite:///<out>/mlflow.db``."""
    return _sqlite_url(out_dir / "mlflow.db")


def default_storage_url(out_dir: Path) -> str:
    """``sqlite:///<out>/optuna.db``."""
    return _sqlite_url(out_dir / "optuna.db")


def is_local_store(uri: str) -> bool:
    """A database URI (not a tracking server): artifacts then go to the output folder."""
    return not uri.startswith(("http://", "https://", "databricks"))


def make_client(uri: str):
    """An MlflowClient for ``uri`` (imported lazily: mlflow takes seconds to import)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def check_tracking_uri(uri: str) -> None:
    """Fail fast with a one-line UsageError when the tracking store cannot be used."""
    if uri.startswith("file:") or "://" not in uri:
        raise UsageError(
            f"tracking URI {uri!r} is MLflow's file store, which MLflow refuses (maintenance mode); "
            "use sqlite:///PATH/mlflow.db or a server URL (http://host:5000)"
        )
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
                pass
        except urllib.error.HTTPError:
            pass  # the server answered (with an error page): it is reachable; MLflow calls will say more
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UsageError(f"MLflow tracking server {redact_url(uri)} cannot be reached ({reason})") from None
        return
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            raise UsageError(f"tracking URI {uri}: folder {path.parent} does not exist")
    try:
        make_client(uri).search_experiments(max_results=1)
    except Exception as exc:  # MlflowException, SQLAlchemy errors, ...
        raise UsageError(f"cannot open MLflow tracking store {redact_url(uri)}: {type(exc).__name__}: {first_line(exc)}") from None


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
        "folds": [{"train": len(f.train) + (0 if f.val is None else len(f.val)), "test": len(f.test)} for f in task.folds],
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
            status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10)
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
    for name, dists in PACKAGES.items():
        for dist in dists:
            try:
                tags[f"{schema.TAG_PACKAGE_PREFIX}{name}"] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return tags


# ------------------------------------------------------------------------------------------ parent runs ---


@dataclass(frozen=True)
class ParentKey:
    """The identity of a parent run: one (task, model, fold, seed, preset, training rows)."""

    task: str
    model: str
    fold: int
    seed: int
    preset: str
    train_size: int | None = None  # training rows actually used; None only for callers that do not know

    def tags(self) -> dict[str, str]:
        tags = {
            schema.TAG_TASK: self.task,
            schema.TAG_MODEL: self.model,
            schema.TAG_FOLD: str(self.fold),
            schema.TAG_SEED: str(self.seed),
            schema.TAG_PRESET: self.preset,
        }
        if self.train_size is not None:
            tags[schema.TAG_TRAIN_SIZE] = str(int(self.train_size))
        return tags

    def filter_string(self) -> str:
        parts = [f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}'"]
        parts += [f"tags.{k} = '{_quote(v)}'" for k, v in self.tags().items()]
        return " and ".join(parts)

    @property
    def run_name(self) -> str:
        size = "" if self.train_size is None else f"-n{self.train_size}"
        return f"{self.model}-fold{self.fold}-seed{self.seed}{size}"


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


@dataclass
class ParentRun:
    """A claimed parent run: ``state`` is "new", "resumed" or "done" (nothing left to do)."""

    run_id: str
    state: str
    tags: dict[str, str]


def find_parent_runs(client: Any, experiment_id: str, key: ParentKey) -> list[Any]:
    """Active parent runs with ``key``'s tags, oldest first."""
    runs = client.search_runs([experiment_id], filter_string=key.filter_string(), max_results=100,
                              order_by=["attributes.start_time ASC"])  # fmt: skip
    return list(runs)


def check_parent_config(run: Any, config_tags: Mapping[str, str], key: ParentKey) -> None:
    """Refuse to resume or skip a parent run made from other data or another training-row cap."""
    changed = {k: (run.data.tags.get(k), v) for k, v in config_tags.items() if run.data.tags.get(k, v) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise UsageError(
            f"{key.run_name} of {key.task} ({key.preset}) in this tracking store was run with other settings "
            f"({detail}); use the same settings to resume, or another --out/--tracking-uri"
        )


def claim_parent_run(
    client: Any, experiment_id: str, key: ParentKey, tags: Mapping[str, str], config_tags: Mapping[str, str]
) -> ParentRun:
    """Find or create the parent run of ``key``: a done run is returned as "done" (skip it); an unfinished
    one (crashed, killed, or being worked on by a joining process) is resumed, never duplicated.

    This is the one place that decides who owns a parent run; multi-worker claims extend it.
    """
    runs = find_parent_runs(client, experiment_id, key)
    for run in runs:
        check_parent_config(run, config_tags, key)
    done = [r for r in runs if r.data.tags.get(schema.TAG_STATUS) == schema.STATUS_DONE]
    if done:
        return ParentRun(done[0].info.run_id, "done", dict(done[0].data.tags))
    if runs:
        run = runs[0]
        if len(runs) > 1:
            log.warning("%s: %d unfinished parent runs; resuming the oldest (%s)", key.run_name, len(runs), run.info.run_id)
        client.update_run(run.info.run_id, status="RUNNING")
        if schema.TAG_ERROR in run.data.tags:  # the failure of an earlier attempt; this one retries
            client.delete_tag(run.info.run_id, schema.TAG_ERROR)
        _set_tags(client, run.info.run_id, {**tags, **config_tags})
        return ParentRun(run.info.run_id, "resumed", {**run.data.tags, **tags})
    all_tags = {**key.tags(), **tags, **config_tags, schema.TAG_KIND: schema.KIND_FINAL, MLFLOW_RUN_NAME_TAG: key.run_name}
    run = client.create_run(experiment_id, tags=all_tags, run_name=key.run_name)
    return ParentRun(run.info.run_id, "new", all_tags)


def _final_owner_alive(tags: Mapping[str, str]) -> bool:
    """Whether the worker that took a parent's refit is still at it: its process exists (this machine) and,
    wherever it runs, its refit heartbeat is fresh."""
    owner = tags.get(schema.TAG_FINAL_OWNER)
    if not owner or not is_alive(owner):
        return False
    beat = tags.get(schema.TAG_FINAL_HEARTBEAT)
    if beat is None:
        return True  # claimed a moment ago; the first beat follows the claim at once
    try:
        return time.time() - float(beat) < FinalHeartbeat.interval_s * FinalHeartbeat.grace
    except ValueError:
        return False


def claim_final_step(client: Any, run_id: str) -> bool:
    """Take the refit and test scoring of a parent run for this process, unless a live worker has it.

    Call it under :func:`studies.locks.storage_lock`: with the lock, reading the owner and writing ourselves
    cannot interleave with another worker's claim, so exactly one worker scores the test part.
    """
    tags = client.get_run(run_id).data.tags
    if tags.get(schema.TAG_STATUS) == schema.STATUS_DONE:
        return False
    me = current_worker()
    if tags.get(schema.TAG_FINAL_OWNER) not in (None, me) and _final_owner_alive(tags):
        return False
    _set_tags(client, run_id, {schema.TAG_FINAL_OWNER: me, schema.TAG_FINAL_HEARTBEAT: f"{time.time():.3f}"})
    return True


def final_step_state(client: Any, run_id: str) -> str:
    """"done", "running" (a live worker has the refit) or "orphaned" (nobody is doing it)."""
    tags = client.get_run(run_id).data.tags
    if tags.get(schema.TAG_STATUS) == schema.STATUS_DONE:
        return "done"
    return "running" if _final_owner_alive(tags) else "orphaned"


class FinalHeartbeat:
    """While a worker refits and scores, beat a tag on the parent run so workers on other machines can tell
    a long refit from a dead worker."""

    interval_s: float = 10.0
    grace: int = 6  # missed beats before the refit is taken as abandoned

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="final-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.client.set_tag(self.run_id, schema.TAG_FINAL_HEARTBEAT, f"{time.time():.3f}")
            except Exception:  # a missed beat is survivable; the refit itself reports store failures
                log.debug("final heartbeat failed", exc_info=True)

    def __enter__(self) -> "FinalHeartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def mark_parent_interrupted(client: Any, run_id: str) -> None:
    """Leave an unfinished parent run KILLED (a rerun of the same command resumes it)."""
    try:
        client.set_terminated(run_id, status="KILLED")
    except Exception:  # best effort while the process is being interrupted
        log.debug("could not mark run %s KILLED", run_id, exc_info=True)


def _set_tags(client: Any, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in tags.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, tags=items[start : start + 100])


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


def _log_metrics(client: Any, run_id: str, metrics: Sequence[Any]) -> None:
    for start in range(0, len(metrics), 1000):  # MLflow's per-batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


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
        params = _params(outcome.params)
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])
        metrics = curve_metrics(outcome.curve, outcome.started)
        if outcome.value is not None and math.isfinite(outcome.value):
            metrics.append(Metric(schema.METRIC_TRIAL_VALUE, float(outcome.value), int(outcome.finished * 1000), 0))
        _log_metrics(self.client, run_id, metrics)
        self.client.set_terminated(run_id, status=TRIAL_STATUS[outcome.state], end_time=int(outcome.finished * 1000))

    def interrupted(self, numbers: list[int]) -> None:
        """Mark trial runs of interrupted trials (if a kill hit after their run was written) as FAIL/KILLED."""
        for number in numbers:
            runs = self.client.search_runs(
                [self.experiment_id],
                filter_string=(f"tags.{MLFLOW_PARENT_TAG} = '{self.parent_run_id}' and "
                               f"tags.{schema.TAG_TRIAL_NUMBER} = '{number}'"),  # fmt: skip
            )
            for run in runs:
                _set_tags(self.client, run.info.run_id, {schema.TAG_TRIAL_STATE: "FAIL", "trial_interrupted": "true"})
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


def log_final(client: Any, run_id: str, key: ParentKey, record: FinalRecord) -> None:
    """Artifacts, parameters, curves and test metrics on the parent run; then mark it done and finished.

    The test metrics and the done tag go in one batch, so a run carries test metrics only if it is done.
    """
    from mlflow.entities import Metric, RunTag

    from studies.plots import convergence_plot, parity_plot

    title = f"{key.task}: {key.model}, fold {key.fold}, seed {key.seed} ({key.preset})"
    with tempfile.TemporaryDirectory(prefix="irnet-bench-artifacts-") as tmp:
        folder = Path(tmp)
        import pandas as pd

        pd.DataFrame({"id": record.test_ids, "y_true": record.y_true, "y_pred": record.y_pred}).to_csv(
            folder / schema.ARTIFACT_PREDICTIONS, index=False
        )
        parity_plot(record.y_true, record.y_pred, folder / schema.ARTIFACT_PARITY, title=title, unit=record.unit)
        step_name = STEP_NAMES.get(record.model.family, "step") if key.model != "rf" else "trees"
        convergence_plot(record.report.curve, record.tuning.history, folder / schema.ARTIFACT_CONVERGENCE,
                         title=title, step_name=step_name)  # fmt: skip
        record.model.save(folder / schema.ARTIFACT_MODEL)
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
        for name in (schema.ARTIFACT_PREDICTIONS, schema.ARTIFACT_PARITY, schema.ARTIFACT_CONVERGENCE,
                     schema.ARTIFACT_MODEL, schema.ARTIFACT_BEST_PARAMS):  # fmt: skip
            client.log_artifact(run_id, str(folder / name))

    _log_new_params(client, run_id, {**record.params, **record.extra_params, schema.PARAM_TASK_UNIT: record.unit})
    _log_metrics(client, run_id, curve_metrics(record.report.curve, record.refit_started))

    now = int(time.time() * 1000)
    summary = {
        **{f"test_{name}": value for name, value in record.test_metrics.items()},
        schema.METRIC_BEST_VAL_MAE: record.report.best_val_mae,
        schema.METRIC_TRAIN_SECONDS: record.train_seconds,
        schema.METRIC_INFERENCE_SECONDS: record.inference_seconds,
        schema.METRIC_TUNING_SECONDS: record.tuning.tuning_seconds,
        schema.METRIC_N_TRIALS: record.tuning.n_trials,
        schema.METRIC_N_TRAIN: record.n_train,
        schema.METRIC_N_VAL: record.n_val,
        schema.METRIC_N_TEST: record.n_test,
    }
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if v is not None and math.isfinite(float(v))]
    tags = [
        RunTag(schema.TAG_DEVICE, record.report.device),
        RunTag(schema.TAG_REFIT_STOPPED, record.report.stopped),
        RunTag(schema.TAG_REFIT_REUSED, str(record.refit_reused).lower()),
        RunTag(schema.TAG_STATUS, schema.STATUS_DONE),
    ]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    client.set_terminated(run_id, status="FINISHED")


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
    for start in range(0, len(fresh), 100):
        client.log_batch(run_id, params=fresh[start : start + 100])


# ------------------------------------------------------------------------------------------ reading back ---


@dataclass(frozen=True)
class ResultRow:
    """One line of the long results table (TabArena style): one metric of one (task, model, fold, seed)."""

    task: str
    model: str
    fold: int
    seed: int
    preset: str
    metric: str
    value: float
    train_seconds: float
    inference_seconds: float
    tuning_seconds: float
    device: str
    run_id: str
    refit_stopped: str = ""  # early_stopping, max_steps, time_limit, completed
    train_size: int | None = None


def read_results(client: Any, experiment_id: str, keys: Sequence[ParentKey]) -> list[ResultRow]:
    """The test metrics of the done parent runs of ``keys`` (one row per metric), whoever wrote them."""
    rows: list[ResultRow] = []
    for key in keys:
        done = [r for r in find_parent_runs(client, experiment_id, key)
                if r.data.tags.get(schema.TAG_STATUS) == schema.STATUS_DONE]  # fmt: skip
        if not done:
            continue
        run = done[0]
        metrics = run.data.metrics
        for metric in schema.TEST_METRICS:
            if metric not in metrics:
                continue
            rows.append(
                ResultRow(
                    task=key.task,
                    model=key.model,
                    fold=key.fold,
                    seed=key.seed,
                    preset=key.preset,
                    metric=metric.removeprefix("test_"),
                    value=float(metrics[metric]),
                    train_seconds=float(metrics.get(schema.METRIC_TRAIN_SECONDS, math.nan)),
                    inference_seconds=float(metrics.get(schema.METRIC_INFERENCE_SECONDS, math.nan)),
                    tuning_seconds=float(metrics.get(schema.METRIC_TUNING_SECONDS, math.nan)),
                    device=run.data.tags.get(schema.TAG_DEVICE, ""),
                    run_id=run.info.run_id,
                    refit_stopped=run.data.tags.get(schema.TAG_REFIT_STOPPED, ""),
                    train_size=key.train_size,
                )
            )
    return rows
