"""The shape of what a benchmark run leaves in MLflow: written by ``studies``, read by ``reports``.

One experiment per task (named after the task). Per :class:`RunKey` (task, model, fold, seed, preset,
training rows) one parent run, and under it one nested run per Optuna trial. Names here are the contract
between writer and reader; change them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.metrics import METRICS

# Tags on every run this suite writes.
TAG_TASK = "task"
TAG_MODEL = "model"  # a registered model name (studies.registry)
TAG_FOLD = "fold"  # "0".."4" for Matbench, "0" for a fixed split
TAG_SEED = "seed"
TAG_PRESET = "preset"  # smoke, quick, paper
TAG_KIND = "run_kind"  # KIND_FINAL for the parent run, KIND_TRIAL for a nested trial run
TAG_CODE_VERSION = "code_version"  # git commit (with "+dirty" when the tree has changes) or package version
TAG_DATA_SHA256 = "data_sha256"
TAG_FEATURIZER = "featurizer"
TAG_COMPOSITION_ONLY = "composition_only"  # "true" where a structure task was run from formulas only
TAG_DEVICE = "device"
TAG_STATUS = "benchmark_status"  # STATUS_DONE, written last: refit, test metrics and artifacts are all logged
TAG_TRIAL_NUMBER = "trial_number"
TAG_TRIAL_STATE = "trial_state"  # COMPLETE, PRUNED, FAIL
TAG_STUDY_NAME = "study_name"
TAG_PACKAGE_PREFIX = "pkg."  # pkg.torch, pkg.xgboost, ...
TAG_TRAIN_TEST_DUPLICATES = "train_test_duplicates"  # test rows whose composition is also in the fold's training

KIND_FINAL = "final"
KIND_TRIAL = "trial"
STATUS_DONE = "done"


def is_done(run: Any) -> bool:
    """The one definition of a finished parent run (an MLflow run): its ``benchmark_status`` tag is ``done``.

    :func:`studies.tracking.log_final` writes that tag last, in the same batch as the test metrics and after
    the run is marked FINISHED, so a done run has everything; a run killed before that batch is not done and
    a rerun redoes its refit. It lives here, beside the tag, so the writer (``studies.coordination``) and the
    reader (``reports.collect``) share it without the reader importing Optuna."""
    return bool(run.data.tags.get(TAG_STATUS) == STATUS_DONE)


# Metrics on the parent run (scored once, on the fold's test part, by the refitted best configuration).
TEST_PREFIX = "test_"
TEST_METRICS = tuple(TEST_PREFIX + name for name in METRICS)  # test_mae, test_rmse, test_r2, test_max_error
TEST_MAE = TEST_PREFIX + "mae"
METRIC_BEST_VAL_MAE = "best_val_mae"  # validation MAE of the refit
METRIC_TRAIN_SECONDS = "train_seconds"
METRIC_INFERENCE_SECONDS = "inference_seconds"  # predicting the whole test part
METRIC_TUNING_SECONDS = "tuning_seconds"
METRIC_N_TRIALS = "n_trials"  # configurations tried (trials that counted toward the budget)
METRIC_N_COMPLETE = "n_trials_complete"  # of those, run to their own stopping rule
METRIC_N_PRUNED = "n_trials_pruned"  # stopped by the pruner
METRIC_N_CUT_BY_BUDGET = "n_trials_cut_by_budget"  # stopped because the tuning seconds ran out
METRIC_N_TRAIN = "n_train"
METRIC_N_VAL = "n_val"
METRIC_N_TEST = "n_test"

# Per-step curves (step = epoch for networks, boosting round for boosters), on parent (refit) and trial runs.
CURVE_TRAIN = "train_mae"
CURVE_VAL = "val_mae"

# Trial runs also carry the trial's final validation score.
METRIC_TRIAL_VALUE = "trial_val_mae"

# Artifacts on the parent run.
ARTIFACT_PREDICTIONS = "predictions.csv"  # columns: id, y_true, y_pred
ARTIFACT_VAL_PREDICTIONS = "val_predictions.parquet"  # the refit's validation rows: id, y_true, y_pred (float32)
ARTIFACT_PARITY = "parity.png"
ARTIFACT_CONVERGENCE = "convergence.png"
ARTIFACT_MODEL = "model"  # the MLflow pyfunc model that takes formulas (studies.formula_model)
ARTIFACT_BEST_PARAMS = "best_params.json"

# Parameters of the parent run are the tuned configuration, logged as-is (mlflow params), plus these:
PARAM_TASK_UNIT = "task_unit"

# Added with the studies package (issue #4).
# Settings that decide what a parent run was trained on; a rerun with other values is refused, not mixed in.
TAG_MAX_TRAIN_ROWS = "max_train_rows"  # "all" or the cap on training rows per fold
TAG_VAL_SEED = "val_seed"  # seed that carved (and subsampled) the validation rows
TAG_FINAL_OWNER = "final_owner"  # worker (host:pid:start) doing the refit and the one test scoring
TAG_FINAL_HEARTBEAT = "final_heartbeat"  # unix time of the owner's last sign of life during the refit
TAG_ERROR = "benchmark_error"  # on a parent whose tuning or refit failed; a rerun retries it
TAG_REFIT_STOPPED = "refit_stopped"  # why the refit stopped: early_stopping, max_steps, time_limit, completed
REFIT_STOPPED_TIME_LIMIT = "time_limit"  # a score whose refit hit its time cap: shown as "cut short"
REFIT_STOPPED_MAX_STEPS = "max_steps"  # a fit that used every step its cap allowed
# Added for issue #10 (fair fits, scaling study).
TAG_TRAIN_SIZE = "train_size"  # training rows actually used by the parent run (int string); part of its key
TAG_HOST_CPU = "host.cpu"  # the CPU model the run was measured on
TAG_HOST_CPUS = "host.cpus"  # logical CPUs of that machine
TAG_REFIT_PRECISION = "refit_precision"  # a network's training kernel, e.g. "bf16 autocast (CPU amx_bf16)"
TAG_COMMAND = "command"  # the benchmarks.run command line that made the run, shell-quoted
TAG_REQUIREMENTS = "requirements"  # "dist==version; ..." of the suite's and the model's packages (pip names)
TAG_MODEL_URI = "model_uri"  # runs:/<run id>/model, the fitted model as an MLflow model that takes formulas
TAG_REFIT_REUSED = "refit_reused"  # "true" when the best trial's fitted model was kept instead of a refit
TAG_RESUMED_FROM_EPOCH = "resumed_from_epoch"  # the refit continued from its checkpoint after this epoch
# What the model declared (its ModelInfo) when the run was written, so that a report draws and groups the run
# without the model's code; absent on runs written before 2026-12-05 (reports fall back to the registry).
TAG_MODEL_FAMILY = "model_family"  # network, tree, reference
TAG_MODEL_GROUP = "model_group"  # the key of a preset's budget rule and settings
TAG_MODEL_COLOR = "model_color"  # its colour in every figure
TAG_MODEL_DEPTH = "model_depth"  # the value of its depth role, where it has one (figures group by it)
TAG_MODEL_SUMMARY = "model_summary"  # one sentence on what the model is (ModelInfo.summary)
TAG_MODEL_BIBTEX = "model_bibtex"  # the publication(s) that define it (ModelInfo.bibtex)
TAG_MODEL_ARCH = "model_arch"  # a network's architecture (irnet, plain, ...): the depth figure's lines
# On a parent run imported from an export (reports.export --import): its id in the store the export was made
# from. MLflow gives every new run its own id, so readers report this one (the published id) instead.
TAG_SOURCE_RUN_ID = "source_run_id"
# On trial runs.
TAG_TRIAL_FAILURE = "trial_failure"  # "<ExceptionType>: message" of a crashed trial (trial_state FAIL)
TAG_TRIAL_DEFAULTS = "trial_defaults"  # "true" on the trial that ran the model's defaults (trial 0)
TAG_TRIAL_RETRY_OF = "trial_retry_of"  # number of the interrupted trial this trial re-ran
TAG_STOPPED = "stopped"  # why a trial's fit stopped
# Budget the parent run was tuned with (parameters of the parent run).
PARAM_BUDGET_TRIALS = "budget_trials"
PARAM_BUDGET_TUNING_SECONDS = "budget_tuning_seconds"
PARAM_BUDGET_FIT_SECONDS = "budget_fit_seconds"


@dataclass(frozen=True)
class RunKey:
    """The identity of one parent run and of its Optuna study: (task, model, fold, seed, preset, training rows).

    The one definition used by the writer (tracking, tuning, coordination) and the reader (reports)."""

    task: str
    model: str
    fold: int
    seed: int
    preset: str
    train_size: int | None = None  # training rows actually used; None only for callers that do not know

    FIELDS = ("task", "model", "fold", "seed", "preset", "train_size")

    def tags(self) -> dict[str, str]:
        """The key as parent-run tags."""
        tags = {TAG_TASK: self.task, TAG_MODEL: self.model, TAG_FOLD: str(self.fold), TAG_SEED: str(self.seed),
                TAG_PRESET: self.preset}  # fmt: skip
        if self.train_size is not None:
            tags[TAG_TRAIN_SIZE] = str(int(self.train_size))
        return tags

    @property
    def run_name(self) -> str:
        """The parent run's name in MLflow, e.g. ``irnet-fold0-seed0-n10000``."""
        size = "" if self.train_size is None else f"-n{self.train_size}"
        return f"{self.model}-fold{self.fold}-seed{self.seed}{size}"

    @property
    def study_name(self) -> str:
        """The Optuna study's name, e.g. ``formation_energy/irnet/fold0/seed0/quick/n10000``."""
        size = "" if self.train_size is None else f"/n{self.train_size}"
        return f"{self.task}/{self.model}/fold{self.fold}/seed{self.seed}/{self.preset}{size}"
