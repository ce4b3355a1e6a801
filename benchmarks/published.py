"""Other models' published per-row test predictions on this suite's splits, shipped in ``benchmarks/reference/``,
and the test formulas of the archive tasks (what a report needs to break errors down by composition).

The CrabNet authors published every model's test predictions on the CrabNet benchmark archive's OQMD splits,
the very splits of this suite's four OQMD tasks (Wang, Murdock, Kauwe and Sparks, "Compositionally restricted
attention-based network for materials property predictions", npj Comput. Mater. 7, 77 (2021), Table 2;
anthony-wang/CrabNet, ``publication_predictions/``, MIT licence: ``benchmarks/reference/LICENSE-CrabNet.txt``).
``benchmarks/reference/oqmd_published_predictions.parquet`` holds them compactly: ``task``, ``row`` (the 0-based
line of the archive's ``test.csv``), one float32 column per model (CrabNet, HotCrab, Roost, ElemNet and the
paper's random forest; null where a model gave no prediction: ElemNet misses one row per task). Its manifest
(``oqmd_published_predictions.json``) names the source and pins the file's sha256, each task's rows and the
sha256 of its formulas in row order (checked against the archive in ``tests/test_reference_predictions.py``).

Every load checks the file: a sha256 or a task's row count that differs from the manifest, or a row count that
differs from the archive's ``test.csv`` (``benchmarks/sources.json``), is refused with one line naming the file.
A reference row's id is the suite's id of that test row: ``<task>-<train rows + validation rows + row>``.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.errors import DataError

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
MANIFEST_FILE = "oqmd_published_predictions.json"


class ReferenceDataError(DataError):
    """A shipped reference file that does not match its manifest or the archive (exit 2)."""


@cache
def manifest(folder: Path = REFERENCE_DIR) -> dict[str, Any]:
    """The manifest of the reference predictions in ``folder``."""
    path = folder / MANIFEST_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ReferenceDataError(
            f"{path}: cannot be read ({type(exc).__name__}); restore it from the repository"
        ) from None


def model_names(folder: Path = REFERENCE_DIR) -> dict[str, str]:
    """Column of the reference file -> the model's published name (CrabNet, HotCrab, ...), in the file's order."""
    return dict(manifest(folder)["models"])


def tasks_with_references(folder: Path = REFERENCE_DIR) -> tuple[str, ...]:
    """The tasks whose test rows have published predictions."""
    return tuple(sorted(manifest(folder)["tasks"]))


def _archive_rows(task: str) -> tuple[int, int]:
    """(rows before the test part, test rows) of an archive task with a fixed split, from the pinned sources."""
    from benchmarks.archive import sources
    from benchmarks.registry import get_task

    spec = get_task(task)
    files = sources()["archives"]["crabnet"]["files"]
    train, val, test = (int(files[member]["rows"]) for member in spec.files)
    return train + val, test


def first_test_row(task: str) -> int:
    """The row position of a fixed-split task's first test row (its id is ``<task>-<offset>``)."""
    return _archive_rows(task)[0]


@cache
def load(folder: Path = REFERENCE_DIR) -> pd.DataFrame:
    """The reference predictions (``task, row`` and one float32 column per model), checked: refused with one line
    naming the file where its sha256 or a task's row count differs from the manifest, or a row count from the
    archive's ``test.csv``."""
    meta = manifest(folder)
    path = folder / str(meta["file"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReferenceDataError(
            f"{path}: cannot be read ({type(exc).__name__}); restore it from the repository"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise ReferenceDataError(
            f"{path}: sha256 {digest[:16]}... is not the {str(meta['sha256'])[:16]}... its manifest {MANIFEST_FILE} "
            "pins (edited or half-copied); restore it from the repository"
        )
    import io

    frame = pd.read_parquet(io.BytesIO(data))
    models = list(meta["models"])
    if list(frame.columns) != ["task", "row", *models]:
        raise ReferenceDataError(f"{path}: columns {list(frame.columns)}, expected task, row, {', '.join(models)}")
    counts = frame.groupby("task")["row"].agg(["size", "nunique", "min", "max"])
    for task, expected in meta["tasks"].items():
        n_archive = _archive_rows(task)[1]
        got = int(counts.at[task, "size"]) if task in counts.index else 0
        if got != int(expected["rows"]) or got != n_archive:
            raise ReferenceDataError(
                f"{path}: {got} rows for {task}, its manifest says {expected['rows']} and the archive's test.csv has "
                f"{n_archive}; restore the file from the repository"
            )
        if (
            int(counts.at[task, "nunique"]) != got
            or int(counts.at[task, "min"]) != 0
            or int(counts.at[task, "max"]) != got - 1
        ):
            raise ReferenceDataError(f"{path}: the rows of {task} are not each test row once (0..{got - 1})")
    extra = sorted(set(counts.index) - set(meta["tasks"]))
    if extra:
        raise ReferenceDataError(f"{path}: rows of task(s) {', '.join(extra)} its manifest does not list")
    return frame.astype({"task": str, "row": np.int64})


def reference_predictions(task: str, folder: Path = REFERENCE_DIR) -> pd.DataFrame:
    """The published predictions of ``task``'s test rows, long: ``model`` (the file's column, e.g. ``crabnet``),
    ``id`` (the suite's row id), ``y_pred`` (float64 of the float32 value); rows a model did not predict are left
    out. Empty for a task without references."""
    if task not in manifest(folder)["tasks"]:
        return pd.DataFrame({"model": pd.Series(dtype=str), "id": pd.Series(dtype=str),
                             "y_pred": pd.Series(dtype=np.float64)})  # fmt: skip
    rows = load(folder)
    rows = rows[rows["task"] == task].sort_values("row")
    ids = np.array([f"{task}-{first_test_row(task) + r}" for r in rows["row"]], dtype=object)
    parts = []
    for model in manifest(folder)["models"]:
        values = rows[model].to_numpy(dtype=np.float64)
        keep = np.isfinite(values)
        parts.append(pd.DataFrame({"model": model, "id": ids[keep], "y_pred": values[keep]}))
    return pd.concat(parts, ignore_index=True)


@cache
def formulas_of_test_rows(task: str) -> pd.Series | None:
    """The formula of each test row of a registered archive task, indexed by the suite's row id (a Matbench task:
    every row, each is a test row of one fold); None for a task this suite does not load from the archive (user
    data). Read from the pinned archive (:func:`benchmarks.archive.archive_file`: the cache, else fetched
    through pip and checked against its sha256)."""
    from benchmarks.archive import archive_file
    from benchmarks.registry import TASKS, matbench_ids

    spec = TASKS.get(task)
    if spec is None or spec.source != "crabnet":
        return None
    if spec.split_scheme == "fixed":
        frame = _read_formulas(archive_file("crabnet", spec.files[2]))
        ids = [f"{task}-{first_test_row(task) + i}" for i in range(len(frame))]
    else:
        frame = _read_formulas(archive_file("crabnet", spec.files[0]))
        ids = matbench_ids(task, len(frame))
    return pd.Series(frame.to_numpy(dtype=object), index=pd.Index(ids, dtype=object), name="formula")


def _read_formulas(path: Path) -> pd.Series:
    return pd.read_csv(path, keep_default_na=False, dtype={"formula": str})["formula"]
