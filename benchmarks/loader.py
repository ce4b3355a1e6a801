"""Load a task's rows and splits, and hand out the fold views models and scoring see."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import archive
from benchmarks.errors import SourceUnavailable, UsageError
from benchmarks.registry import MATBENCH_N_FOLDS, MATBENCH_SPLIT_SEED, TaskSpec, get_task, matbench_ids
from benchmarks.splits import VALIDATION_FRACTION, Fold, TestData, TrainingData, carve_validation, subsample

log = logging.getLogger(__name__)

SOURCES = ("archive", "matminer")


@dataclass(frozen=True)
class TaskData:
    """A task's rows in source order, their ids and splits, and a checksum of the content."""

    spec: TaskSpec
    ids: np.ndarray  # str: Matbench ids for Matbench tasks, "<task>-<row>" otherwise
    formulas: np.ndarray  # str
    targets: np.ndarray  # float64
    folds: tuple[Fold, ...]
    sha256: str  # of ids, formulas, targets and folds together: keys the feature cache and tags every run
    structures: list[Any] | None = None  # pymatgen Structures where the source has them (matminer)

    @property
    def n_rows(self) -> int:
        return len(self.ids)


def content_sha256(ids: np.ndarray, formulas: np.ndarray, targets: np.ndarray, folds: tuple[Fold, ...]) -> str:
    """A checksum of what the benchmark reads, independent of file layout."""
    digest = hashlib.sha256()
    for column in (ids, formulas):
        digest.update("\n".join(map(str, column)).encode())
    digest.update(np.ascontiguousarray(targets, dtype=np.float64).tobytes())
    for fold in folds:
        for part in (fold.train, fold.val, fold.test):
            digest.update(b"|" if part is None else np.ascontiguousarray(part, dtype=np.int64).tobytes())
    return digest.hexdigest()


def matbench_folds(targets: np.ndarray, task_type: str) -> tuple[Fold, ...]:
    """The official Matbench v0.1 folds: KFold for regression, StratifiedKFold for classification."""
    # Imported here: the OQMD tasks (fixed splits) must load on a GPU node that has no scikit-learn.
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(targets)
    if task_type == "classification":
        splitter = StratifiedKFold(n_splits=MATBENCH_N_FOLDS, shuffle=True, random_state=MATBENCH_SPLIT_SEED)
        parts = splitter.split(np.zeros(n), targets.astype(int))
    else:
        splitter = KFold(n_splits=MATBENCH_N_FOLDS, shuffle=True, random_state=MATBENCH_SPLIT_SEED)
        parts = splitter.split(np.arange(n))
    return tuple(Fold(train=np.asarray(tr), test=np.asarray(te)) for tr, te in parts)


def _read_formula_target(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(path, keep_default_na=False, dtype={"formula": str})
    return frame["formula"].to_numpy(dtype=object), frame["target"].to_numpy(dtype=np.float64)


def _load_from_archive(spec: TaskSpec, cache_dir: Path | None) -> TaskData:
    paths = [archive.archive_file("crabnet", member, root=cache_dir) for member in spec.files]
    if spec.split_scheme == "fixed":
        parts = [_read_formula_target(p) for p in paths]  # train, val, test
        formulas = np.concatenate([f for f, _ in parts])
        targets = np.concatenate([t for _, t in parts])
        sizes = [len(f) for f, _ in parts]
        edges = np.cumsum([0, *sizes])
        fold = Fold(
            train=np.arange(edges[0], edges[1]),
            val=np.arange(edges[1], edges[2]),
            test=np.arange(edges[2], edges[3]),
        )
        ids = np.array([f"{spec.name}-{i}" for i in range(len(formulas))], dtype=object)
        folds: tuple[Fold, ...] = (fold,)
    else:
        formulas, targets = _read_formula_target(paths[0])
        ids = np.array(matbench_ids(spec.name, len(formulas)), dtype=object)
        folds = matbench_folds(targets, spec.task_type)
    return TaskData(spec, ids, formulas, targets, folds, content_sha256(ids, formulas, targets, folds))


def _check_matminer_cache(name: str) -> None:
    """matminer never hash-checks a file placed in its cache by hand ($MATMINER_DATA); check it here."""
    import json

    import matminer
    from matminer.datasets.utils import _get_data_home

    metadata = json.loads((Path(matminer.__file__).parent / "datasets" / "dataset_metadata.json").read_text())
    path = Path(_get_data_home()) / f"{name}.{metadata[name]['file_type']}"
    if path.is_file() and archive.sha256_of(path) != metadata[name]["hash"]:
        raise SourceUnavailable(
            f"{path} does not match the sha256 in matminer's dataset metadata; delete it so matminer fetches it again"
        )


def _load_from_matminer(spec: TaskSpec) -> TaskData:
    """Online path: matminer's official loader, with crystal structures for the structure tasks."""
    if not spec.is_matbench:
        raise UsageError(f"--source matminer serves the Matbench tasks only; {spec.name} comes from the archive")
    from matminer.datasets import load_dataset

    _check_matminer_cache(spec.name)
    try:
        frame = load_dataset(spec.name)
    except Exception as exc:  # requests' ConnectionError and friends, raised deep inside matminer
        raise SourceUnavailable(
            f"matminer could not load {spec.name} ({type(exc).__name__}); offline, use --source archive "
            "(the default, formula-only data from the pinned archive)"
        ) from None
    target_col = [c for c in frame.columns if c not in ("structure", "composition")][-1]
    targets = frame[target_col].to_numpy(dtype=np.float64)
    structures = list(frame["structure"]) if "structure" in frame else None
    if structures is not None:
        formulas = np.array([s.composition.formula.replace(" ", "") for s in structures], dtype=object)
    else:
        formulas = frame["composition"].astype(str).to_numpy(dtype=object)
    ids = np.array(matbench_ids(spec.name, len(frame)), dtype=object)
    folds = matbench_folds(targets, spec.task_type)
    online_spec = TaskSpec(**{**spec.__dict__, "source": "matminer"})
    sha = content_sha256(ids, formulas, targets, folds)
    return TaskData(online_spec, ids, formulas, targets, folds, sha, structures)


def load_task(name: str | TaskSpec, *, cache_dir: Path | None = None, source: str = "archive") -> TaskData:
    """Rows, ids and official splits of a registered task. ``source``: "archive" (offline) or "matminer"."""
    spec = name if isinstance(name, TaskSpec) else get_task(name)
    if source not in SOURCES:
        raise UsageError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    task = _load_from_matminer(spec) if source == "matminer" else _load_from_archive(spec, cache_dir)
    if task.n_rows != spec.n_rows:
        raise SourceUnavailable(f"{spec.name}: expected {spec.n_rows} rows, the source gave {task.n_rows}")
    return task


def fold_rows(
    task: TaskData, fold_index: int, *, val_seed: int = 0, max_train_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions (train, validation, test) of one fold: validation carved from the fold's training part
    with ``val_seed`` where the source fixes none; training and validation subsampled to ``max_train_rows``
    (validation in proportion); test rows never subsampled."""
    if not 0 <= fold_index < len(task.folds):
        raise UsageError(f"{task.spec.name} has folds 0..{len(task.folds) - 1}; fold {fold_index} does not exist")
    fold = task.folds[fold_index]
    if fold.val is not None:
        train_rows, val_rows = fold.train, fold.val
    else:
        train_rows, val_rows = carve_validation(fold.train, fraction=VALIDATION_FRACTION, seed=val_seed)
    if max_train_rows is not None and len(train_rows) > max_train_rows:
        n_val = max(1, round(max_train_rows * len(val_rows) / len(train_rows)))
        train_rows = subsample(train_rows, max_train_rows, seed=val_seed)
        val_rows = subsample(val_rows, n_val, seed=val_seed + 1)
    return train_rows, val_rows, fold.test


def training_size(task: TaskData, fold_index: int, *, val_seed: int = 0, max_train_rows: int | None = None) -> int:
    """The number of training rows (validation excluded) a fold gives under ``max_train_rows`` (None: all);
    rows whose formula cannot be featurised are counted (they are dropped later, and logged)."""
    return len(fold_rows(task, fold_index, val_seed=val_seed, max_train_rows=max_train_rows)[0])


def full_training_size(task: TaskData) -> int:
    """The smallest training part (validation excluded) over the task's folds: the largest train size every
    fold can give."""
    return min(training_size(task, fold) for fold in range(len(task.folds)))


def task_fold(
    task: TaskData,
    fold_index: int,
    *,
    featurizer: str = "magpie",
    val_seed: int = 0,
    max_train_rows: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> tuple[TrainingData, TestData]:
    """Featurise the rows one fold needs (cached) and build its training view and its sealed test view.

    Rows whose formula could not be featurised are dropped from every part; the count and examples are logged.
    """
    from benchmarks.features import featurize

    train_rows, val_rows, test_rows = fold_rows(task, fold_index, val_seed=val_seed, max_train_rows=max_train_rows)
    needed = np.concatenate([train_rows, val_rows, test_rows])
    features = featurize(task, featurizer, rows=needed, cache_dir=cache_dir, progress=progress)
    kept = []
    for part, rows in (("train", train_rows), ("validation", val_rows), ("test", test_rows)):
        ok = features.valid[rows]
        if not ok.all():
            log.warning("%s fold %d: %d %s rows dropped (formula not featurisable)", task.spec.name, fold_index,
                        int((~ok).sum()), part)  # fmt: skip
        kept.append(rows[ok])
    train_rows, val_rows, test_rows = kept
    X, y, ids = features.X, task.targets, task.ids
    training = TrainingData(
        task=task.spec.name,
        fold=fold_index,
        X_train=X[train_rows],
        y_train=y[train_rows],
        X_val=X[val_rows],
        y_val=y[val_rows],
        train_ids=ids[train_rows],
        val_ids=ids[val_rows],
        feature_names=features.names,
        val_seed=val_seed,
    )
    test = TestData(task=task.spec.name, fold=fold_index, X=X[test_rows], y=y[test_rows], ids=ids[test_rows])
    return training, test
