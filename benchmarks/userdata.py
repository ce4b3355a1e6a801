"""A user's own data as a task: a CSV or parquet file with a formula column and a target column.

Splits: the file's own split column, a seeded random hold-out, K-fold (``cv``) or K-fold by chemical system
(``cv`` with ``group_by="chemsys"``). Every check on the file runs here, before any feature is computed or
any store is touched, and fails with one line naming the problem and the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmarks.compositions import CompositionKeys, composition_keys, duplicate_rows
from benchmarks.errors import DataError, UsageError
from benchmarks.features import parse_structures
from benchmarks.loader import TaskData, content_sha256
from benchmarks.registry import TaskSpec
from benchmarks.splits import Fold, grouped_folds, kfold_folds

if TYPE_CHECKING:
    from pymatgen.core.structure import Structure

log = logging.getLogger(__name__)

SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
DEFAULT_TEST_FRACTION = 0.2
GROUP_BY = ("chemsys",)  # what --group-by accepts: the chemical system (sorted set of elements)
DEDUPE = ("none", "first", "mean")  # --dedupe: keep every row (report only), keep the first, average targets
MIN_ROWS_PER_FOLD = 2  # a test part of one row gives no MAE spread and leaves validation nothing to carve
MIN_RANDOM_ROWS = 10


def _columns_in_file(path: Path, parquet: bool) -> list[str]:
    """Column names as the file has them (pandas renames a repeated CSV header to ``name.1``)."""
    if parquet:
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        nested = [f.name for f in schema if _is_nested(f.type)]
        if nested:
            raise DataError(f"{path.name}: column {nested[0]!r} holds nested values ({schema.field(nested[0]).type}); "
                            "give one plain value per cell (flatten it, or drop the column)")  # fmt: skip
        return list(schema.names)
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    return [str(v) for v in header.iloc[0].tolist()] if len(header) else []


def _is_nested(arrow_type: Any) -> bool:  # a pyarrow DataType
    import pyarrow as pa

    return pa.types.is_nested(arrow_type) or (
        pa.types.is_dictionary(arrow_type) and pa.types.is_nested(arrow_type.value_type)
    )


def _read(path: Path) -> pd.DataFrame:
    if path.is_dir():
        raise DataError(f"--data-file {path} is a directory; give the path of a CSV or parquet file inside it")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; give the path of a CSV or parquet file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        columns = _columns_in_file(path, parquet)
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise DataError(f"{path.name} has the column name {repeated[0]!r} more than once; give every column a "
                            "distinct name")  # fmt: skip
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except DataError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types for unreadable files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {detail}); give a CSV or parquet file") from None
    if frame.empty:
        raise DataError(f"data file {path} has no rows")
    return frame


def split_suffix(n_folds: int | None, group_by: str | None, seed: int) -> str:
    """What a split adds to a task name, so results of different splits never share an experiment:
    ``@cv5``, ``@chemsys5``, ``@chemsys5-seed1`` (nothing for a task's own split)."""
    if n_folds is None:
        return ""
    return f"@{group_by or 'cv'}{n_folds}" + (f"-seed{seed}" if seed else "")


def check_cv(n_folds: int | None, group_by: str | None) -> None:
    """The --cv / --group-by arguments on their own."""
    if group_by is not None and n_folds is None:
        raise UsageError(f"--group-by {group_by} needs --cv K (the number of folds)")
    if group_by is not None and group_by not in GROUP_BY:
        raise UsageError(f"--group-by {group_by!r} is unknown; use {', '.join(GROUP_BY)}")
    if n_folds is not None and n_folds < 2:
        raise UsageError(f"--cv needs at least 2 folds, got {n_folds}")


def cv_folds(keys: CompositionKeys, n_folds: int, group_by: str | None, seed: int, *, label: str) -> tuple[Fold, ...]:
    """K folds over all rows: shuffled K-fold, or grouped by chemical system; a UsageError where the rows
    cannot fill the folds. ``label`` names the data in messages."""
    n = len(keys.composition)
    if n < MIN_ROWS_PER_FOLD * n_folds:
        raise DataError(f"{label} has {n} rows; --cv {n_folds} needs at least {MIN_ROWS_PER_FOLD * n_folds} "
                        f"({MIN_ROWS_PER_FOLD} per fold): use fewer folds")  # fmt: skip
    if group_by is None:
        return kfold_folds(n, n_folds, seed=seed)
    # A formula that does not parse is its own group (its rows are dropped when featurised anyway).
    groups = np.where(keys.parsed, keys.chemsys, np.array([f"?{i}" for i in range(n)], dtype=object))
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise DataError(f"{label} has {n_groups} chemical systems; --cv {n_folds} --group-by {group_by} would "
                        f"leave a fold empty: use --cv {n_groups} or fewer, or no --group-by")  # fmt: skip
    folds = grouped_folds(groups, n_folds, seed=seed)
    small = [i for i, f in enumerate(folds) if len(f.test) < MIN_ROWS_PER_FOLD]
    if small:
        raise DataError(f"{label}: --cv {n_folds} --group-by {group_by} leaves fold {small[0]} with "
                        f"{len(folds[small[0]].test)} test row(s); use fewer folds")  # fmt: skip
    return folds


def regroup_task(task: TaskData, n_folds: int, group_by: str, seed: int) -> TaskData:
    """A registered task with extra folds grouped by ``group_by`` over all its rows, under its own name
    (``matbench_expt_gap@chemsys5``) so its results never mix with those of the official folds."""
    keys = composition_keys(task.formulas)
    folds = cv_folds(keys, n_folds, group_by, seed, label=task.spec.name)
    name = task.spec.name + split_suffix(n_folds, group_by, seed)
    spec = TaskSpec(**{**task.spec.__dict__, "name": name, "split_scheme": f"{group_by} {n_folds}-fold, seed {seed}",
                       "description": f"{task.spec.description}; regrouped: {n_folds} folds by "
                                      f"{group_by}"})  # fmt: skip
    sha = content_sha256(task.ids, task.formulas, task.targets, folds)
    return TaskData(spec, task.ids, task.formulas, task.targets, folds, sha, task.structures)


def _dedupe(keys: CompositionKeys, y: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Row positions kept and their targets: ``first`` keeps the first row of each composition with its
    target, ``mean`` keeps it with the mean target of all its rows; rows that do not parse stay as they are."""
    group = pd.Series(np.where(keys.parsed, keys.composition, [f"?{i}" for i in range(len(y))]))
    kept = np.flatnonzero(~group.duplicated(keep="first").to_numpy())
    targets = y[kept]
    if how == "mean":
        means = pd.Series(y).groupby(group.to_numpy()).mean()
        targets = means.loc[group.to_numpy()[kept]].to_numpy(dtype=np.float64)
    return kept, targets


def load_data_file(
    path: str | Path,
    *,
    formula_column: str = "formula",
    target_column: str = "target",
    split_column: str | None = None,
    structure_column: str | None = None,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_folds: int | None = None,
    group_by: str | None = None,
    dedupe: str = "none",
    name: str | None = None,
    unit: str = "",
) -> TaskData:
    """Load and check a user's data file as a task.

    Splits: with ``split_column`` (values train / val / test) the file's; with ``n_folds`` K folds over all
    rows, shuffled with ``seed`` (``group_by="chemsys"``: every chemical system in one fold); otherwise one
    random hold-out of ``test_fraction`` of the rows, seeded by ``seed``. Validation is carved later from each
    fold's training part. ``dedupe`` ("first" or "mean") merges rows of one composition before splitting.
    """
    path = Path(path)
    check_cv(n_folds, group_by)
    if dedupe not in DEDUPE:
        raise UsageError(f"--dedupe {dedupe!r} is unknown; use {', '.join(DEDUPE)}")
    if n_folds is not None and split_column is not None:
        raise UsageError("give either --split-column or --cv, not both")
    if dedupe != "none" and structure_column is not None:
        raise UsageError("--dedupe merges rows by composition, but with --structure-column polymorphs are different "
                         "inputs: drop --dedupe")  # fmt: skip
    frame = _read(path)
    for flag, column in (("--formula-column", formula_column), ("--target-column", target_column),
                         ("--split-column", split_column), ("--structure-column", structure_column)):  # fmt: skip
        if column is not None and column not in frame.columns:
            raise DataError(f"{path.name} has no column {column!r} (set {flag}); columns are {list(frame.columns)}")
    y = _targets(frame, target_column, formula_column, path)
    formulas = frame[formula_column].astype(str).to_numpy(dtype=object)
    keys = composition_keys(formulas)
    if not keys.parsed.any():
        raise DataError(f"{path.name}: no formula in column {formula_column!r} can be parsed (first: {formulas[0]!r}); "
                        "give chemical formulas such as Fe2O3 (or set --formula-column)")  # fmt: skip
    rows = np.arange(len(frame))  # the file's row of each kept row
    n_repeated = duplicate_rows(keys)
    if dedupe != "none" and n_repeated:
        rows, y = _dedupe(keys, y, dedupe)
        formulas = formulas[rows]
        keys = CompositionKeys(keys.chemsys[rows], keys.composition[rows])
    if np.ptp(y) == 0:
        raise DataError(f"{path.name}: target column {target_column!r} has the same value ({y[0]:g}) in every row; "
                        "a constant target cannot be learned or scored: check --target-column")  # fmt: skip
    n = len(rows)
    if split_column is not None:
        fold = _column_fold(frame[split_column].iloc[rows], split_column, path)
        folds: tuple[Fold, ...] = (fold,)
        scheme = "column"
    elif n_folds is not None:
        folds = cv_folds(keys, n_folds, group_by, seed, label=path.name)
        scheme = f"{group_by} {n_folds}-fold" if group_by else f"{n_folds}-fold"
    else:
        if n < MIN_RANDOM_ROWS:
            raise DataError(f"{path.name} has {n} rows; a random split needs at least {MIN_RANDOM_ROWS}")
        order = np.random.default_rng(seed).permutation(n)
        n_test = max(1, round(test_fraction * n))
        folds = (Fold(train=np.sort(order[n_test:]), test=np.sort(order[:n_test])),)
        scheme = "random"
    structures = _structures(frame, structure_column, path) if structure_column is not None else None
    if n_repeated:  # logged once every check has passed: a refused file gets its one line and nothing else
        done = (
            f"--dedupe {dedupe} kept {n} of {len(frame)} rows"
            if dedupe != "none"
            else "--dedupe first|mean merges them"
        )
        log.info("%s: %d rows repeat the composition of an earlier row (%s)", path.name, n_repeated, done)
    base_name = name or path.stem
    task_name = base_name + split_suffix(n_folds, group_by, seed)
    ids = np.array([f"{base_name}-{i}" for i in rows], dtype=object)  # the file's row number, also after --dedupe
    seeded = "" if split_column else f", seed {seed}"
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
        description=f"user data {path.name} ({scheme} split{seeded}"
        + (f", dedupe {dedupe})" if dedupe != "none" else ")"),
    )
    return TaskData(spec, ids, formulas, y, folds, content_sha256(ids, formulas, y, folds), structures)


def _targets(frame: pd.DataFrame, column: str, formula_column: str, path: Path) -> np.ndarray:
    """The target column as finite float64, or a DataError naming the first bad row."""
    raw = frame[column]
    # Python's float reads what pandas leaves as text: "1e999" (beyond float64) becomes inf, caught below.
    targets = pd.to_numeric(raw, errors="coerce") if raw.dtype != object else pd.Series(
        [_to_float(v) for v in raw], index=raw.index, dtype=np.float64)  # fmt: skip
    non_numeric = (targets.isna() & raw.notna()).to_numpy()
    if non_numeric.any():
        row = int(np.flatnonzero(non_numeric)[0])
        raise DataError(f"{path.name}: target column {column!r} is not numeric (row {row}: {raw.iloc[row]!r}); "
                        "give a numeric target")  # fmt: skip
    missing = (targets.isna() | frame[formula_column].isna()).to_numpy()
    if missing.any():
        raise DataError(f"{path.name}: {int(missing.sum())} rows have an empty formula or target (first at row "
                        f"{int(np.flatnonzero(missing)[0])}); remove or fill them")  # fmt: skip
    y = targets.to_numpy(dtype=np.float64)
    infinite = ~np.isfinite(y)
    if infinite.any():  # "inf", "-inf", and numbers beyond float64 such as 1e999, which parse as inf
        row = int(np.flatnonzero(infinite)[0])
        raise DataError(f"{path.name}: target column {column!r} holds {int(infinite.sum())} infinite value(s) (row "
                        f"{row}: {raw.iloc[row]}; inf, -inf or a number beyond float64's range); remove or correct "
                        "them")  # fmt: skip
    return y


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _column_fold(labels_raw: pd.Series, column: str, path: Path) -> Fold:
    labels = labels_raw.astype(str).str.lower().map(SPLIT_VALUES)
    if labels.isna().any():
        bad = labels_raw[labels.isna()].iloc[0]
        raise DataError(f"{path.name}: split column {column!r} has value {bad!r}; use train, val or test")
    parts = {part: np.flatnonzero(labels.to_numpy() == part) for part in ("train", "val", "test")}
    if not len(parts["train"]) or not len(parts["test"]):
        present = sorted(p for p in parts if len(parts[p]))
        raise DataError(f"{path.name}: split column {column!r} holds only {'/'.join(present)} rows; it needs train "
                        "and test rows (or drop --split-column for a random split or --cv)")  # fmt: skip
    return Fold(train=parts["train"], test=parts["test"], val=parts["val"] if len(parts["val"]) else None)


def _structures(frame: pd.DataFrame, column: str, path: Path) -> list[Structure]:
    try:
        return parse_structures(frame[column])
    except ValueError as exc:
        raise DataError(f"{path.name}: column {column!r} does not hold CIF structures ({exc})") from None
