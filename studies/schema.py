"""The shape of what a benchmark run leaves in MLflow: written by ``studies``, read by ``reports``.

One experiment per task (named after the task). Per (model, fold, seed) one parent run, and under it one
nested run per Optuna trial. Names here are the contract between writer and reader; change them in one place.
"""
from __future__ import annotations

# Tags on every run this suite writes.
TAG_TASK = "task"
TAG_MODEL = "model"  # irnet, srnet, plain, elemnet, rf, xgboost, lightgbm, dummy
TAG_FOLD = "fold"  # "0".."4" for Matbench, "0" for a fixed split
TAG_SEED = "seed"
TAG_PRESET = "preset"  # smoke, quick, paper
TAG_KIND = "run_kind"  # KIND_FINAL for the parent run, KIND_TRIAL for a nested trial run
TAG_CODE_VERSION = "code_version"  # git commit (with "+dirty" when the tree has changes) or package version
TAG_DATA_SHA256 = "data_sha256"
TAG_FEATURIZER = "featurizer"
TAG_COMPOSITION_ONLY = "composition_only"  # "true" where a structure task was run from formulas only
TAG_DEVICE = "device"
TAG_STATUS = "benchmark_status"  # STATUS_DONE once the refit, test scoring and artifacts are all logged
TAG_TRIAL_NUMBER = "trial_number"
TAG_TRIAL_STATE = "trial_state"  # COMPLETE, PRUNED, FAIL
TAG_STUDY_NAME = "study_name"
TAG_PACKAGE_PREFIX = "pkg."  # pkg.torch, pkg.xgboost, ...

KIND_FINAL = "final"
KIND_TRIAL = "trial"
STATUS_DONE = "done"

# Metrics on the parent run (scored once, on the fold's test part, by the refitted best configuration).
TEST_METRICS = ("test_mae", "test_rmse", "test_r2", "test_max_error")
METRIC_BEST_VAL_MAE = "best_val_mae"  # validation MAE of the refit
METRIC_TRAIN_SECONDS = "train_seconds"
METRIC_INFERENCE_SECONDS = "inference_seconds"  # predicting the whole test part
METRIC_TUNING_SECONDS = "tuning_seconds"
METRIC_N_TRIALS = "n_trials"
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
ARTIFACT_PARITY = "parity.png"
ARTIFACT_CONVERGENCE = "convergence.png"
ARTIFACT_MODEL = "model.pkl"
ARTIFACT_BEST_PARAMS = "best_params.json"

# Parameters of the parent run are the tuned configuration, logged as-is (mlflow params), plus these:
PARAM_TASK_UNIT = "task_unit"
