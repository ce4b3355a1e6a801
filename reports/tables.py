"""Tables over the finished parent runs (``Collected.finals``): the long results table and the console leaderboard.

The long table is the report's ``leaderboard.csv`` and the results CSV ``benchmarks.run`` writes beside its
stores; the console leaderboard is what ``benchmarks.run`` prints. Both read the same runs as the report
(:func:`reports.collect.read_finals`), so the console and the report never disagree about what is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.atomic import atomic_write
from benchmarks.metrics import METRICS
from reports.stats import TRIALS_HEADING, trial_breakdown
from studies import schema

CUT_SHORT = "cut short"  # beside a score whose refit hit its time cap (refit_stopped = time_limit)
KEPT = "trial kept"  # beside why the refit stopped, when the best trial's fitted model was kept (refit_reused)
# The long table (TabArena style): one row per (run, test metric).
LONG_COLUMNS = [
    "task", "model", "fold", "seed", "preset", "metric", "value",
    "train_seconds", "inference_seconds", "tuning_seconds", "device", "run_id",
    "train_size", "refit_stopped",  # why the refit stopped; cut short = time_limit
]  # fmt: skip


def select(finals: pd.DataFrame, keys: Iterable[schema.RunKey]) -> pd.DataFrame:
    """The runs of ``finals`` that are the parent runs of ``keys`` (matched on the recorded training rows)."""
    wanted = {(k.model, k.fold, k.seed, k.train_size) for k in keys}
    mask = [
        (m, f, s, n) in wanted
        for m, f, s, n in zip(finals["model"], finals["fold"], finals["seed"], finals["train_rows"], strict=True)
    ]
    return finals[np.asarray(mask, dtype=bool)] if len(finals) else finals


def long_table(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, test metric), sorted by task, model, training size, fold, seed and metric."""
    parts = [
        finals[[c for c in LONG_COLUMNS if c not in ("metric", "value")]].assign(
            metric=name, value=finals[schema.TEST_PREFIX + name]
        )
        for name in METRICS
    ]
    table = pd.concat(parts, ignore_index=True)[LONG_COLUMNS] if len(finals) else pd.DataFrame(columns=LONG_COLUMNS)
    return table.sort_values(["task", "model", "train_size", "fold", "seed", "metric"]).reset_index(drop=True)


def write_long_table(finals: pd.DataFrame, path: Path) -> Path:
    """Write :func:`long_table` as CSV (atomically)."""
    with atomic_write(path, "w") as handle:
        long_table(finals).to_csv(handle, index=False, lineterminator="\n", float_format="%.10g")
    return path


def refit_seconds_run(finals: pd.DataFrame) -> pd.Series:
    """Seconds each run's refit took after tuning: 0 where the refit kept the best trial's fitted model
    (``refit_reused``), whose fit seconds are already inside ``tuning_seconds``; a missing time counts as 0."""
    seconds = finals[schema.METRIC_TRAIN_SECONDS].fillna(0.0)
    return seconds.where(~finals["refit_reused"].astype(bool), 0.0) if "refit_reused" in finals else seconds


def leaderboard(finals: pd.DataFrame, *, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Test MAE per model, mean and (population) std over folds and seeds, ranked by the mean (ties in the
    order of ``models``); times are summed over the model's runs (tuning + refit + inference, a kept trial's
    fit counted once, in tuning), and the mean seconds of the refits that ran (0 for a kept trial's model);
    ``kept`` counts the runs that kept the best trial's model."""
    records = []
    refit_seconds = refit_seconds_run(finals) if len(finals) else pd.Series(dtype=float)
    for model, group in finals.groupby("model", sort=False):
        values = group[schema.TEST_MAE].to_numpy(dtype=np.float64)
        stopped = group["refit_stopped"]
        refit = refit_seconds.loc[group.index]
        total = (group[schema.METRIC_TUNING_SECONDS].fillna(0.0) + refit
                 + group[schema.METRIC_INFERENCE_SECONDS].fillna(0.0)).sum()  # fmt: skip
        records.append(
            {
                "model": model,
                "mae_mean": float(values.mean()),
                "mae_std": float(values.std(ddof=0)),
                "runs": len(values),
                "refit_s": float(refit.mean()),
                "total_s": float(total),
                "trials": trial_breakdown(group),
                "refit_stopped": ",".join(sorted({str(v) for v in stopped if v})),
                "cut_short": int((stopped == schema.REFIT_STOPPED_TIME_LIMIT).sum()),
                "kept": int(group["refit_reused"].astype(bool).sum()) if "refit_reused" in group else 0,
            }
        )
    columns = ["model", "mae_mean", "mae_std", "runs", "refit_s", "total_s", "trials", "refit_stopped", "cut_short",
               "kept"]  # fmt: skip
    board = pd.DataFrame(records, columns=columns)
    if board.empty:
        return board.assign(rank=pd.Series(dtype=int))
    order = {m: i for i, m in enumerate(models or [])}
    board["_order"] = board["model"].map(lambda m: order.get(m, len(order)))
    board = board.sort_values(["mae_mean", "_order"]).drop(columns="_order").reset_index(drop=True)
    board.insert(0, "rank", board["mae_mean"].rank(method="min").astype(int))
    return board


def format_leaderboard(board: pd.DataFrame, *, title: str, unit: str = "") -> str:
    """The leaderboard as an aligned text table; a score whose refit hit its time cap is marked "cut short"
    (with the count when only some of the model's runs were); runs that kept the best trial's model instead of
    a refit are said after why they stopped ("trial kept", with the count when only some did)."""
    unit_text = f" ({unit})" if unit else ""
    header = (f"{'rank':>4}  {'model':<10} {'test MAE' + unit_text:<36} {'runs':>4} {'refit s':>8} {'total s':>8}  "
              f"{TRIALS_HEADING:<40} refit stopped")  # fmt: skip
    lines = [title, header, "-" * len(header)]
    for row in board.itertuples(index=False):
        mae = f"{row.mae_mean:.4g} ± {row.mae_std:.2g}"
        if row.cut_short:
            mae += f" {CUT_SHORT}" + ("" if row.cut_short == row.runs else f" {row.cut_short}/{row.runs}")
        stopped = row.refit_stopped or "-"
        if row.kept:
            stopped += f" ({KEPT}" + ("" if row.kept == row.runs else f" {row.kept}/{row.runs}") + ")"
        lines.append(f"{row.rank:>4}  {row.model:<10} {mae:<36} {row.runs:>4} {row.refit_s:>8.1f} "
                     f"{row.total_s:>8.0f}  {row.trials:<40} {stopped}")  # fmt: skip
    if board.empty:
        lines.append("(no finished runs)")
    return "\n".join(lines)
