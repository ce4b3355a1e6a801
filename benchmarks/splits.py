"""Fold views handed to models and to scoring.

Training code receives a :class:`TrainingData` (train and validation rows only). The test rows live in a
separate :class:`TestData` that only the final scoring step of a study receives, so no model, trial or
early-stopping rule can reach them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from benchmarks.metrics import regression_metrics

VALIDATION_FRACTION = 0.1  # carved from each fold's training part when the source gives no validation set


@dataclass(frozen=True)
class Fold:
    """Row positions (into a task's arrays) of one fold. ``val`` is set when the source fixes it (OQMD)."""

    train: np.ndarray
    test: np.ndarray
    val: np.ndarray | None = None


@dataclass(frozen=True)
class TrainingData:
    """What models and tuning may see: training rows and validation rows of one fold."""

    task: str
    fold: int
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    train_ids: np.ndarray
    val_ids: np.ndarray
    feature_names: tuple[str, ...]
    val_seed: int  # seed that carved the validation rows (recorded; unused where the split is fixed)

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def with_training_rows(self, n_rows: int, *, seed: int) -> TrainingData:
        """The view with ``n_rows`` of its training rows (:func:`subsample`: nested, seeded) and all of its
        validation rows, so that fits on different numbers of rows are compared on the same validation rows."""
        if not 1 <= n_rows <= len(self.y_train):
            raise ValueError(f"{n_rows} training rows asked for, the view has {len(self.y_train)}")
        keep = subsample(np.arange(len(self.y_train)), n_rows, seed=seed)
        return replace(self, X_train=self.X_train[keep], y_train=self.y_train[keep], train_ids=self.train_ids[keep])


@dataclass(frozen=True)
class TestData:
    """The held-out rows of one fold, used once per (model, fold, seed) after the refit."""

    task: str
    fold: int
    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray

    def score(self, y_pred: np.ndarray) -> dict[str, float]:
        return regression_metrics(self.y, y_pred)


def carve_validation(train_rows: np.ndarray, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training rows into (train, validation) with a seeded permutation."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train_rows)
    n_val = max(1, round(fraction * len(train_rows)))
    return np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val])


def subsample(rows: np.ndarray, max_rows: int | None, *, seed: int) -> np.ndarray:
    """At most ``max_rows`` of ``rows`` (all of them when None): the first ``max_rows`` of one seeded
    permutation, sorted. Nested: with the same rows and seed, a smaller sample lies inside a larger one (the
    scaling study's 1,000 rows are inside its 3,000)."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    order = np.random.default_rng(seed).permutation(len(rows))
    return np.sort(np.asarray(rows)[order[:max_rows]])


def kfold_folds(n_rows: int, n_folds: int, *, seed: int) -> tuple[Fold, ...]:
    """K-fold over shuffled rows (Matbench's convention: scikit-learn ``KFold(shuffle=True)``, seeded)."""
    from sklearn.model_selection import KFold

    splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return tuple(Fold(train=np.asarray(tr), test=np.asarray(te)) for tr, te in splitter.split(np.arange(n_rows)))


def grouped_folds(groups: np.ndarray, n_folds: int, *, seed: int) -> tuple[Fold, ...]:
    """K folds in which every group lies in exactly one test part (leave-cluster-out cross-validation).

    Like scikit-learn's ``GroupKFold`` (largest group first, each to the fold with the fewest rows so far) but
    seeded: groups of equal size are taken in a seeded random order, so ``seed`` changes which groups share
    a fold while the fold sizes stay balanced. Needs at least ``n_folds`` distinct groups.
    """
    names, inverse, sizes = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    if len(names) < n_folds:
        raise ValueError(f"{len(names)} groups cannot fill {n_folds} folds")
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]  # largest first; ties in seeded order
    fold_of_group = np.empty(len(names), dtype=np.int64)
    fold_rows = np.zeros(n_folds, dtype=np.int64)
    for group in order:
        target = int(np.argmin(fold_rows))
        fold_of_group[group] = target
        fold_rows[target] += sizes[group]
    fold_of_row = fold_of_group[inverse]
    rows = np.arange(len(groups))
    return tuple(Fold(train=rows[fold_of_row != k], test=rows[fold_of_row == k]) for k in range(n_folds))
