"""The published models' own test predictions as reference rows of a report.

Where a task has published per-row predictions on its split (:mod:`benchmarks.published`: CrabNet, HotCrab,
Roost, ElemNet and the CrabNet paper's random forest on the four OQMD tasks; Wang et al., npj Comput. Mater. 7,
77 (2021), Table 2) and the report's runs at some training size used the whole training part of that split
(their training-row cap is ``all``), those predictions join the report at that size as reference rows: scored on
the test rows our runs were scored on, with our runs' targets, paired row by row with IRNet and the best of the
suite's models. They are never ranked among the suite's models (they were not trained by it), and never shown
beside runs that trained on fewer rows than they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmarks import published
from reports.collect import PREDICTION_COLUMNS as COLUMNS
from reports.collect import Collected
from reports.stats import NO_SEED, RowComparison, compare_prediction_sets

PREFIX = "published:"  # a reference row's run_id: published:<column of the reference file>
LABEL = "published predictions, same split"


@dataclass(frozen=True)
class ReferenceSet:
    """Reference predictions of a report: rows like ``Collected.predictions`` (``seed`` is :data:`NO_SEED`,
    ``model`` the published name), at each (task, training size) where they are comparable."""

    predictions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))

    def of(self, task: str, train_size: int) -> pd.DataFrame:
        p = self.predictions
        return p[(p["task"] == task) & (p["train_size"] == train_size)]

    def models(self, task: str, train_size: int) -> list[str]:
        """The reference models at (task, size), best (lowest MAE on these rows) first."""
        rows = self.of(task, train_size)
        if rows.empty:
            return []
        maes = (rows["y_pred"] - rows["y_true"]).abs().groupby(rows["model"]).mean()
        return [str(m) for m in maes.sort_values(kind="stable").index]


def full_training_sizes(finals: pd.DataFrame, task: str) -> list[int]:
    """The training sizes of ``task`` at which runs used the whole training part (training-row cap ``all``)."""
    rows = finals[(finals["task"] == task) & (finals["max_train_rows"] == "all")]
    return sorted(int(s) for s in rows["train_size"].unique())


def build_references(collected: Collected) -> ReferenceSet:
    """The reference rows of ``collected``'s tasks that have published predictions, at every training size where
    our runs used the whole training part; targets are our runs' (rounded to float32, as an export keeps them)."""
    frames = []
    available = set(published.tasks_with_references())
    names = published.model_names()
    for task in collected.tasks:
        if task not in available:
            continue
        for size in full_training_sizes(collected.finals, task):
            ours = collected.predictions[(collected.predictions["task"] == task)
                                         & (collected.predictions["train_size"] == size)]  # fmt: skip
            truth = ours.drop_duplicates("id")[["id", "fold", "y_true"]]
            truth = truth.assign(y_true=np.asarray(truth["y_true"], dtype=np.float32).astype(np.float64))
            rows = published.reference_predictions(task).merge(truth, on="id", how="inner")
            if rows.empty:
                continue
            frames.append(
                rows.assign(
                    run_id=PREFIX + rows["model"],
                    model=rows["model"].map(names),
                    task=task,
                    seed=NO_SEED,
                    train_size=size,
                )[COLUMNS]
            )
    return ReferenceSet(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS))


def best_single(summary: pd.DataFrame, task: str) -> str | None:
    """The suite's model with the lowest mean test MAE on ``task`` in ``summary`` (the leaderboard's first; ties:
    the first by name), None when the task has none."""
    rows = summary[summary["task"] == task].sort_values(["rank", "model"])
    return None if rows.empty else str(rows["model"].iloc[0])


def compare_beside(
    task: str,
    train_size: int,
    ours: dict[str, pd.DataFrame],
    others: list[tuple[str, pd.DataFrame]],
) -> list[RowComparison]:
    """Each of ``others`` (name, predictions: the reference rows, the ensembles) against each of ``ours`` (name ->
    predictions: IRNet, the best of the suite), row by row at one training size (:func:`compare_prediction_sets`;
    the difference is the other's MAE minus ours)."""
    out = []
    for other, other_rows in others:
        for name, rows in ours.items():
            comparison = compare_prediction_sets(task, train_size, name, rows, other, other_rows)
            if comparison is not None:
                out.append(comparison)
    return out
