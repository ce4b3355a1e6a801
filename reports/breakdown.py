"""Where the errors are: per task, beside the MAE, the median absolute error, the MAE without unphysical targets and
the MAE by number of elements, for the suite's models, its ensembles and the published reference predictions.

Every figure here is over the test rows pooled across folds, each row's absolute error averaged over the seeds a
model ran (as the per-row comparison does), at the training size of the task's leaderboard. The number of
elements of a row is that of its formula as the featuriser reads it (:func:`benchmarks.features.parse_formulas`),
from the pinned archive (:func:`benchmarks.published.formulas_of_test_rows`); a task whose formulas are not in the
archive (user data) gets no element columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.features import parse_formulas
from benchmarks.published import formulas_of_test_rows


@dataclass(frozen=True)
class TargetRule:
    """Test targets left out of "MAE without unphysical targets": those with ``|y| > limit``."""

    limit: float
    text: str


# Per task; a task not listed has no rule (its column shows a dash).
UNPHYSICAL: dict[str, TargetRule] = {
    "formation_energy": TargetRule(
        5.0,
        "|y| > 5 eV/atom, the bound of the IRNet paper's own OQMD cleaning (it keeps -20 < ΔH_f < 5 eV/atom; Jha et "
        "al., KDD 2019), taken for both signs",
    ),
}
# Number of elements -> its group; 4 and more are one group.
GROUPS = ((1, "unary"), (2, "binary"), (3, "ternary"), (4, "quaternary+"))


def group_of(n_elements: int) -> str:
    return next(label for n, label in reversed(GROUPS) if n_elements >= n) if n_elements >= 1 else "unparsed"


def element_counts(task: str) -> pd.Series | None:
    """The number of elements of each test row's formula, indexed by row id; None without the task's formulas."""
    formulas = formulas_of_test_rows(task)
    if formulas is None:
        return None
    distinct, inverse = np.unique(formulas.to_numpy(dtype=str), return_inverse=True)
    counts = np.diff(parse_formulas(distinct.tolist()).start)
    return pd.Series(counts[inverse.ravel()], index=formulas.index, name="n_elements")


@dataclass(frozen=True)
class Breakdown:
    """One task's breakdown at one training size."""

    task: str
    train_size: int
    table: pd.DataFrame  # model, kind (ours/ensemble/published), rows, mae, median, mae_physical, one column per group
    groups: dict[str, int]  # element group -> test rows (pooled over folds), in GROUPS order
    rule: TargetRule | None
    n_unphysical: int  # test rows the rule leaves out


def row_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """``fold, id, y_true, error``: each test row's absolute error averaged over the seeds that predicted it."""
    errors = rows.assign(error=(rows["y_pred"] - rows["y_true"]).abs())
    return (
        errors.groupby(["fold", "id"], sort=True).agg(y_true=("y_true", "first"), error=("error", "mean")).reset_index()
    )


def breakdown(
    task: str, train_size: int, models: list[tuple[str, str, pd.DataFrame]], counts: pd.Series | None
) -> Breakdown:
    """The breakdown of ``models`` ((name, kind, predictions with ``fold, seed, id, y_true, y_pred``), in the
    order shown) at ``train_size``; ``counts`` the number of elements per row id (None: no element columns)."""
    rule = UNPHYSICAL.get(task)
    records = []
    groups: dict[str, int] = {}
    n_unphysical = 0
    for name, kind, rows in models:
        errors = row_errors(rows)
        error = errors["error"].to_numpy(dtype=np.float64)
        record: dict[str, object] = {"model": name, "kind": kind, "rows": len(errors), "mae": float(error.mean()),
                                     "median": float(np.median(error)), "mae_physical": math.nan}  # fmt: skip
        if rule is not None:
            physical = np.abs(errors["y_true"].to_numpy(dtype=np.float64)) <= rule.limit
            record["mae_physical"] = float(error[physical].mean()) if physical.any() else math.nan
            n_unphysical = max(n_unphysical, int((~physical).sum()))
        if counts is not None:
            labels = errors["id"].map(counts).fillna(0).astype(int).map(group_of)
            for _, label in GROUPS:
                chosen = (labels == label).to_numpy()
                record[label] = float(error[chosen].mean()) if chosen.any() else math.nan
                groups[label] = max(groups.get(label, 0), int(chosen.sum()))
        records.append(record)
    shown = {label: n for _, label in GROUPS if (n := groups.get(label, 0))}
    table = pd.DataFrame(records)
    table = table.drop(columns=[label for _, label in GROUPS if label in table and label not in shown])
    return Breakdown(task, train_size, table, shown, rule, n_unphysical)


def models_in_order(
    predictions: pd.DataFrame, ranked: list[str], ensembles: pd.DataFrame, references: pd.DataFrame
) -> list[tuple[str, str, pd.DataFrame]]:
    """(name, kind, predictions) of the suite's models in ``ranked`` order, then the ensembles, then the published
    references, each group after the first by its MAE; each frame has ``fold, seed, id, y_true, y_pred``."""
    out: list[tuple[str, str, pd.DataFrame]] = [
        (m, "ours", predictions[predictions["model"] == m]) for m in ranked if (predictions["model"] == m).any()
    ]
    for frame, kind in ((ensembles, "ensemble"), (references, "published")):
        if frame.empty:
            continue
        maes = (frame["y_pred"] - frame["y_true"]).abs().groupby(frame["model"]).mean().sort_values(kind="stable")
        out += [(str(m), kind, frame[frame["model"] == m]) for m in maes.index]
    return out
