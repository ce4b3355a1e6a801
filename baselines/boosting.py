"""What the gradient-boosting models share: input checks, the stop reason, the per-round curve, and the
learning-rate range of their search spaces with the rule that ties it to the presets' round caps.

**Learning rate x rounds.** A smaller learning rate needs more rounds (LightGBM's "Parameters Tuning": "Use small
learning_rate with large num_iterations"), roughly in inverse proportion, so how far a fit must boost is counted
here as learning rate x best round. The project's tracked formation_energy refits, all ended by early stopping
(``docs/results/scaling/export``; docs/measurements.md "The boosters' round cap on the full
training part, measured"):

- 10,000 rows: LightGBM 47, 60, 118; XGBoost 70, 159, 174 (seeds 0-2; median 94);
- 30,000 rows: LightGBM 397-642; XGBoost 143-316;
- 239,190 rows: LightGBM 364 (79 leaves, lr 0.093, best round 3,918); XGBoost 970 (depth 9, lr 0.102, 9,536).

A preset's trial round cap times :data:`LEARNING_RATE_LOW` is at least :data:`TRIAL_RATE_ROUNDS` (the median at
the ``quick`` preset's 10,000 rows, so a trial at the lowest rate can reach its early stopping there), and its
refit cap times the same rate at least :data:`REFIT_RATE_ROUNDS` (the largest measured, at 239,190 rows, so the
refit of any selected rate reaches its early stopping). ``tests/test_booster_spaces.py`` holds the presets to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.contract import CurvePoint
from benchmarks.errors import UsageError

# The boosters' learning-rate range (log-uniform). TabArena's LightGBM, XGBoost and CatBoost spaces search
# [0.005, 0.1] (https://github.com/autogluon/tabarena, packages/tabarena/src/tabarena/models/
# {lightgbm,xgboost,catboost}/hpo.py, commit 84093d6), under AutoGluon's cap of 10,000 rounds (LightGBM:
# DEFAULT_NUM_BOOST_ROUND in autogluon/autogluon tabular/src/autogluon/tabular/models/lgb/hyperparameters/
# parameters.py). Here the lower end is 0.02, so that a trial at it can reach its early stopping under the
# presets' 5,000 rounds (the rule above), and the upper end 0.3, so that XGBoost's default (eta 0.3; trial 0) lies
# inside. rtdl's [1e-5, 1] (LightGBM [1e-3, 1]) held rates no 2,000-round trial could bring to early stopping.
LEARNING_RATE_LOW, LEARNING_RATE_HIGH = 0.02, 0.3
TRIAL_RATE_ROUNDS = 100  # learning rate x rounds a trial at LEARNING_RATE_LOW must be allowed (median at 10k rows)
REFIT_RATE_ROUNDS = 1_000  # learning rate x rounds a refit at LEARNING_RATE_LOW must be allowed (largest measured)
# The median pruner compares booster trials at equal learning rate x rounds (``ModelSearch.progress_param``) and
# prunes none before 5 units: 50 rounds at the default rate 0.1, as the 50-round warm-up before 2026-12-08.
PRUNING_WARMUP_PROGRESS = 5


def as_training_arrays(
    model: str, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies of the training and validation arrays, checked for matching, non-empty shapes."""
    X_train = np.asarray(X_train, dtype=np.float64)
    X_val = np.asarray(X_val, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.float64).ravel()
    y_val = np.asarray(y_val, dtype=np.float64).ravel()
    if X_train.ndim != 2 or len(X_train) != y_train.size or len(X_val) != y_val.size or y_val.size == 0:
        raise UsageError(f"{model}: need 2-D X and matching, non-empty y for training and validation")
    return X_train, y_train, X_val, y_val


def stop_reason(hit_time_limit: bool, n_done: int, n_rounds: int) -> str:
    """Why boosting ended: the time limit, early stopping, or the round cap."""
    if hit_time_limit:
        return "time_limit"
    return "early_stopping" if n_done < n_rounds else "max_steps"


def round_curve(
    train_mae: Sequence[float], val_mae: Sequence[float], seconds: Sequence[float], n_done: int
) -> list[CurvePoint]:
    """One curve point per boosting round (step = round, 1-based)."""
    return [
        CurvePoint(step=i + 1, train_mae=float(train_mae[i]), val_mae=float(val_mae[i]), seconds=seconds[i])
        for i in range(n_done)
    ]
