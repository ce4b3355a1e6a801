"""Rankings and paired comparisons over the finished parent runs (``Collected.finals``).

Conventions, stated once:
- A model's score on a task is the mean over all its (fold, seed) runs; the spread is the population standard
  deviation (ddof=0) over the same runs, as Matbench (``np.std``) and ``benchmarks.run`` report it; NaN (no
  spread shown) with a single run.
- Within a task models are ranked by mean test MAE (1 = best, ties share the best rank).
- IRNet is compared with each other model on the runs both have for the same (fold, seed). The Wilcoxon
  signed-rank test (scipy defaults: two-sided, zero differences dropped) is run where there are at least
  :data:`MIN_PAIRS` pairs; p-values are also given Holm-adjusted over the baselines of one task.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

REFERENCE_MODEL = "irnet"
MIN_PAIRS = 5
NO_TEST_FEW = f"n<{MIN_PAIRS}, no test"
NO_TEST_TIED = "all pairs tied, no test"

_METRICS = {"mae": "test_mae", "rmse": "test_rmse", "r2": "test_r2", "max_error": "test_max_error"}


def summarize(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, model): counts, mean and std of each test metric, mean times, rank by MAE."""
    groups = finals.groupby(["task", "model"], sort=True)
    out = groups.agg(
        n_runs=("run_id", "size"),
        n_folds=("fold", "nunique"),
        n_seeds=("seed", "nunique"),
        train_seconds=("train_seconds", "mean"),
        tuning_seconds=("tuning_seconds", "mean"),
        inference_seconds=("inference_seconds", "mean"),
        n_trials=("n_trials", "mean"),
    )
    for short, column in _METRICS.items():
        out[f"{short}_mean"] = groups[column].mean()
        out[f"{short}_std"] = groups[column].std(ddof=0).where(out["n_runs"] > 1)
    out["depth"] = groups["depth"].agg(lambda s: ",".join(str(int(d)) for d in sorted(s.dropna().unique())))
    out = out.reset_index()
    out["rank"] = out.groupby("task")["mae_mean"].rank(method="min").astype(int)
    return out.sort_values(["task", "rank", "model"]).reset_index(drop=True)


def mean_ranks(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean rank of each model over the tasks it ran on (ranks are within each task's own models)."""
    out = summary.groupby("model").agg(
        mean_rank=("rank", "mean"), n_tasks=("task", "nunique"), wins=("rank", lambda r: int((r == 1).sum()))
    )
    return out.reset_index().sort_values(["mean_rank", "model"]).reset_index(drop=True)


@dataclass(frozen=True)
class PairedComparison:
    """IRNet against one baseline on one task, over runs paired by (fold, seed)."""

    task: str
    baseline: str
    n_pairs: int
    wins: int  # pairs where IRNet's test MAE is lower
    ties: int
    losses: int
    fold_wins: int  # folds where IRNet's seed-mean MAE is lower
    fold_ties: int
    fold_losses: int
    mean_diff: float  # mean of (baseline MAE - IRNet MAE); positive means IRNet is better
    statistic: float | None
    p_value: float | None
    p_holm: float | None
    note: str  # "" when a test was run, else why not

    @property
    def tested(self) -> bool:
        return self.p_value is not None


def paired_scores(finals: pd.DataFrame, task: str, baseline: str, reference: str = REFERENCE_MODEL) -> pd.DataFrame:
    """Columns ``fold, seed, reference, baseline``: test MAE of both models on the (fold, seed) they share."""
    rows = finals[finals["task"] == task]
    ref = rows[rows["model"] == reference].set_index(["fold", "seed"])["test_mae"].rename("reference")
    base = rows[rows["model"] == baseline].set_index(["fold", "seed"])["test_mae"].rename("baseline")
    return pd.concat([ref, base], axis=1, join="inner").sort_index().reset_index()


def _holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    m = len(tested)
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted


def compare_task(finals: pd.DataFrame, task: str, reference: str = REFERENCE_MODEL) -> list[PairedComparison]:
    """IRNet (``reference``) against every other model of ``task``; empty when IRNet did not run on it."""
    models = sorted(finals.loc[finals["task"] == task, "model"].unique())
    if reference not in models:
        return []
    raw: list[dict] = []
    for baseline in (m for m in models if m != reference):
        pairs = paired_scores(finals, task, baseline, reference)
        ref, base = pairs["reference"].to_numpy(), pairs["baseline"].to_numpy()
        by_fold = pairs.groupby("fold")[["reference", "baseline"]].mean()
        statistic = p_value = None
        if len(pairs) < MIN_PAIRS:
            note = NO_TEST_FEW
        elif np.all(ref == base):
            note = NO_TEST_TIED
        else:
            result = sps.wilcoxon(ref, base)
            statistic, p_value, note = float(result.statistic), float(result.pvalue), ""
        raw.append(
            dict(
                task=task,
                baseline=baseline,
                n_pairs=len(pairs),
                wins=int((ref < base).sum()),
                ties=int((ref == base).sum()),
                losses=int((ref > base).sum()),
                fold_wins=int((by_fold["reference"] < by_fold["baseline"]).sum()),
                fold_ties=int((by_fold["reference"] == by_fold["baseline"]).sum()),
                fold_losses=int((by_fold["reference"] > by_fold["baseline"]).sum()),
                mean_diff=float(np.mean(base - ref)) if len(pairs) else math.nan,
                statistic=statistic,
                p_value=p_value,
                note=note,
            )
        )
    adjusted = _holm([r["p_value"] for r in raw])
    return [PairedComparison(**r, p_holm=p) for r, p in zip(raw, adjusted)]


def running_best(trials: pd.DataFrame) -> pd.DataFrame:
    """Best ``trial_val_mae`` so far against trial number, per parent run, counting only COMPLETE trials.

    Returns columns ``task, model, fold, seed, parent_run_id, trial_number, best_so_far``.
    """
    done = trials[trials["trial_state"].astype(str).str.upper() == "COMPLETE"].sort_values(["parent_run_id", "trial_number"])
    # astype: a store without trials gives an empty object column, which cummin refuses.
    best = done["trial_val_mae"].astype(float).groupby(done["parent_run_id"]).cummin()
    return done.assign(best_so_far=best)[["task", "model", "fold", "seed", "parent_run_id", "trial_number", "best_so_far"]]
