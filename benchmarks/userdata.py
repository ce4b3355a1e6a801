"""A user's own data as a task: a CSV or parquet file with a formula column and a target column."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.errors import DataError
from benchmarks.loader import TaskData, content_sha256
from benchmarks.registry import TaskSpec
from benchmarks.splits import Fold

SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
DEFAULT_TEST_FRACTION = 0.2


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; give the path of a CSV or parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {exc}); give a CSV or parquet file") from None
    if frame.empty:
        raise DataError(f"data file {path} has no rows")
    return frame


def load_data_file(
    path: str | Path,
    *,
    formula_column: str = "formula",
    target_column: str = "target",
    split_column: str | None = None,
    structure_column: str | None = None,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    name: str | None = None,
    unit: str = "",
) -> TaskData:
    """Load a user's data file as a task with one fold.

    With ``split_column`` (values train / val / test) the split is the file's; without it, a random
    ``test_fraction`` of rows seeded by ``seed`` is the test part (validation is then carved from the rest).
    """
    path = Path(path)
    frame = _read(path)
    for flag, column in (("--formula-column", formula_column), ("--target-column", target_column),
                         ("--split-column", split_column), ("--structure-column", structure_column)):  # fmt: skip
        if column is not None and column not in frame.columns:
            raise DataError(f"{path.name} has no column {column!r} (set {flag}); columns are {list(frame.columns)}")
    targets = pd.to_numeric(frame[target_column], errors="coerce")
    non_numeric = targets.isna() & frame[target_column].notna()
    if non_numeric.any():
        row = int(np.flatnonzero(non_numeric.to_numpy())[0])
        raise DataError(f"{path.name}: target column {target_column!r} is not numeric (row {row}: "
                        f"{frame[target_column].iloc[row]!r}); give a numeric target")  # fmt: skip
    missing = targets.isna() | frame[formula_column].isna()
    if missing.any():
        raise DataError(f"{path.name}: {int(missing.sum())} rows have an empty formula or target (first at row "
                        f"{int(np.flatnonzero(missing.to_numpy())[0])}); remove or fill them")  # fmt: skip
    formulas = frame[formula_column].astype(str).to_numpy(dtype=object)
    y = targets.to_numpy(dtype=np.float64)
    n = len(frame)
    if split_column is not None:
        labels = frame[split_column].astype(str).str.lower().map(SPLIT_VALUES)
        if labels.isna().any():
            bad = frame[split_column][labels.isna()].iloc[0]
            raise DataError(f"{path.name}: split column {split_column!r} has value {bad!r}; use train, val or test")
        parts = {part: np.flatnonzero(labels.to_numpy() == part) for part in ("train", "val", "test")}
        if not len(parts["train"]) or not len(parts["test"]):
            raise DataError(f"{path.name}: split column {split_column!r} needs train and test rows")
        fold = Fold(train=parts["train"], test=parts["test"], val=parts["val"] if len(parts["val"]) else None)
        scheme = "column"
    else:
        if n < 10:
            raise DataError(f"{path.name} has {n} rows; a random split needs at least 10")
        order = np.random.default_rng(seed).permutation(n)
        n_test = max(1, round(test_fraction * n))
        fold = Fold(train=np.sort(order[n_test:]), test=np.sort(order[:n_test]))
        scheme = "random"
    structures = None
    if structure_column is not None:
        from pymatgen.core import Structure

        try:
            structures = [s if isinstance(s, Structure) else Structure.from_str(str(s), fmt="cif")
                          for s in frame[structure_column]]  # fmt: skip
        except Exception as exc:
            raise DataError(f"{path.name}: column {structure_column!r} does not hold CIF structures ({exc})") from None
    task_name = name or path.stem
    ids = np.array([f"{task_name}-{i}" for i in range(n)], dtype=object)
    spec = TaskSpec(
        name=task_name,
        property=target_column,
        unit=unit,
        input_kind="structure" if structures is not None else "composition",
        metric="mae",
        source="user",
        split_scheme=scheme,
        n_rows=n,
        files=(str(path),),
        description=f"user data {path.name} ({scheme} split{'' if split_column else f', seed {seed}'})",
    )
    folds = (fold,)
    return TaskData(spec, ids, formulas, y, folds, content_sha256(ids, formulas, y, folds), structures)
