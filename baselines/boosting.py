"""What the two gradient-boosting models share: input checks, the stop reason and the per-round curve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.contract import CurvePoint
from benchmarks.errors import UsageError


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
