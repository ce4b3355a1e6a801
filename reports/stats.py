"""Rankings and paired comparisons over the finished parent runs (``Collected.finals``).

Conventions, stated once:
- A model's score on a task is the mean over all its (fold, seed) runs; the spread is the population standard
  deviation (ddof=0) over the same runs, as Matbench (``np.std``) and ``benchmarks.run`` report it; NaN (no
  spread shown) with a single run.
- Within a task models are ranked by mean test MAE (1 = best, ties share the best rank).
- IRNet is compared with each other model on the runs both have for the same (fold, seed). The Wilcoxon
  signed-rank test (scipy defaults: two-sided, zero differences dropped) is run where there are at least
  :data:`MIN_PAIRS` pairs; p-values are also given Holm-adjusted over the baselines of one task. With n pairs
  the exact two-sided test cannot go below 2/2^n (5 folds: 0.0625), so that floor is shown beside it.
- The per-row comparison pairs the two models' absolute errors on the same test rows (same task, fold, seed
  and training size), averages each row's errors over the seeds both models ran, pools the folds, and gives a
  paired bootstrap interval of the MAE difference and a sign-flip permutation p-value, both seeded. The same
  comparison pairs any two sets of predictions (:func:`compare_prediction_sets`: a published model's own
  predictions or a post-hoc ensemble against IRNet or the best of the suite); a set without seeds of its own
  (:data:`NO_SEED`) is paired with the other's errors averaged over its seeds.
- A task with runs at several training sizes (a scaling study) is ranked and compared at its headline size: the
  largest size at which the most models ran (:func:`headline_size`), so a study whose largest size is still in
  progress (one model there so far) keeps its complete leaderboard one size down.
- Across tasks, models are ranked within each task (ties share the mean rank) and compared by the Friedman test
  and the Nemenyi critical difference (Demšar, JMLR 7, 2006), as automlbenchmark and TabArena draw it: two
  models whose mean ranks differ by less than the critical difference are not told apart at level
  :data:`RANK_TEST_ALPHA`. A model counts on a task where it has as many folds as the task's most complete
  model; the test takes every model over the tasks where all of them count, or, where fewer than two such
  tasks exist (a study in progress), the models that count on every task.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchmarks.metrics import METRICS
from studies import schema
from studies.registry import FOCUS_MODEL

REFERENCE_MODEL = FOCUS_MODEL
MIN_PAIRS = 5
NO_TEST_FEW = f"n<{MIN_PAIRS}, no test"
NO_TEST_TIED = "all pairs tied, no test"

_METRICS = {name: schema.TEST_PREFIX + name for name in METRICS}


CUT_SHORT = schema.REFIT_STOPPED_TIME_LIMIT  # a refit that hit its time limit before its own stopping rule


def stop_counts(reasons: pd.Series) -> str:
    """Why the refits stopped, counted: "early_stopping 3, time_limit 2" ("not recorded" for older stores)."""
    counts = reasons.replace("", "not recorded").value_counts()
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


TRIAL_COUNTS = (schema.METRIC_N_TRIALS, schema.METRIC_N_COMPLETE, schema.METRIC_N_PRUNED, schema.METRIC_N_CUT_BY_BUDGET)
TRIALS_HEADING = "trials: tried (complete / pruned / cut)"  # what trial_breakdown shows


def trial_breakdown(runs: pd.DataFrame) -> str:
    """Configurations tried per study, mean over ``runs``, and how they ended: run to their own stopping rule,
    pruned, cut by the budget ("33 (33 / 0 / 0)"; only the total for stores written before the breakdown),
    then which trials were resumed, if any (:func:`resumed_note`), and a study's row rungs, if it had them."""
    notes = [resumed_note(runs), *_rung_notes(runs)]
    return _trial_counts(runs) + "".join(f", {note}" for note in notes if note)


def _rung_notes(runs: pd.DataFrame) -> list[str]:
    """The row rungs of the studies of ``runs`` (``reports.collect.rung_summary``), each once."""
    texts = runs.get("rungs", [])
    return list(dict.fromkeys(t for t in texts if isinstance(t, str) and t))


def _trial_counts(runs: pd.DataFrame) -> str:
    means = [runs[c].mean() if c in runs else math.nan for c in TRIAL_COUNTS]

    def text(v: float) -> str:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"

    if math.isnan(means[0]):
        return "?"
    if any(math.isnan(v) for v in means[1:]):
        return text(means[0])
    return f"{text(means[0])} ({' / '.join(text(v) for v in means[1:])})"


def resumed_note(runs: pd.DataFrame) -> str:
    """Which trials of the studies of ``runs`` were interrupted (a kill, a dead worker, Ctrl-C) and run again,
    "" if none: "resumed 2× (trials 0, 7)"; over several runs, each one's by fold and seed ("resumed 3× in 2
    of 5 runs (fold 0 seed 0: trial 0 (2×); fold 3 seed 0: trial 7)"). A resumed study searches as it would have
    left alone; the note says that it was resumed, so that a reader can tell."""
    resumed = [(r, _resumed_trials(r)) for r in runs.itertuples() if _resumed_trials(r)]
    if not resumed:
        return ""
    count = sum(len(numbers) for _, numbers in resumed)
    if len(runs) == 1:
        return f"resumed {count}× ({_trial_list(resumed[0][1])})"
    each = "; ".join(f"fold {r.fold} seed {r.seed}: {_trial_list(numbers)}" for r, numbers in resumed)
    return f"resumed {count}× in {len(resumed)} of {len(runs)} runs ({each})"


def _resumed_trials(run: Any) -> list[str]:
    """A run's resumed trials (its ``resumed_trials``, "0,0,7"), none where not recorded (NaN or no column)."""
    text = getattr(run, "resumed_trials", "")
    return text.split(",") if isinstance(text, str) and text else []


def _trial_list(numbers: list[str]) -> str:
    """["0", "0", "7"] -> "trials 0 (2×), 7"; ["3"] -> "trial 3"."""
    times = Counter(numbers)
    listed = ", ".join(n if k == 1 else f"{n} ({k}×)" for n, k in times.items())
    return ("trial " if len(times) == 1 else "trials ") + listed


def summarize(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, model): counts, mean and std of each test metric, mean times, rank by MAE.

    Also ``refit_stopped`` (see :func:`stop_counts`) and ``n_cut_short``, the runs whose refit hit its time limit.
    """
    groups = finals.assign(cut_short=finals["refit_stopped"] == CUT_SHORT).groupby(["task", "model"], sort=True)
    out = groups.agg(
        n_runs=("run_id", "size"),
        n_folds=("fold", "nunique"),
        n_seeds=("seed", "nunique"),
        train_seconds=("train_seconds", "mean"),
        tuning_seconds=("tuning_seconds", "mean"),
        inference_seconds=("inference_seconds", "mean"),
        n_trials=("n_trials", "mean"),
        refit_stopped=("refit_stopped", stop_counts),
        n_cut_short=("cut_short", "sum"),
    )
    for short, column in _METRICS.items():
        out[f"{short}_mean"] = groups[column].mean()
        out[f"{short}_std"] = groups[column].std(ddof=0).where(out["n_runs"] > 1)
    out["trials"] = [trial_breakdown(group) for _, group in groups]
    out["depth"] = groups["depth"].agg(lambda s: ",".join(str(int(d)) for d in sorted(s.dropna().unique())))
    out = out.reset_index()
    out["rank"] = out.groupby("task")["mae_mean"].rank(method="min").astype(int)
    return out.sort_values(["task", "rank", "model"]).reset_index(drop=True)


RANK_TEST_ALPHA = 0.05


@dataclass(frozen=True)
class RankTest:
    """The Friedman test over tasks and the Nemenyi critical difference of the mean ranks (Demšar 2006)."""

    mean_ranks: dict[str, float]  # model -> mean rank over ``tasks`` (1 = best), best first
    tasks: tuple[str, ...]
    left_out: tuple[str, ...]  # models of the report that do not count on every task of ``tasks``
    tasks_left_out: tuple[str, ...]  # tasks of the report where some model of ``mean_ranks`` does not count
    statistic: float  # Friedman's chi-square
    p_value: float
    critical_difference: float  # Nemenyi, at ``alpha``
    alpha: float = RANK_TEST_ALPHA

    def groups(self) -> list[tuple[str, ...]]:
        """The maximal runs of models (in mean-rank order) whose extreme ranks differ by less than the critical
        difference: the bars of the diagram. Single models are left out."""
        models = list(self.mean_ranks)
        ranks = list(self.mean_ranks.values())
        spans: list[tuple[int, int]] = []
        for start in range(len(models)):
            end = start
            while end + 1 < len(models) and ranks[end + 1] - ranks[start] < self.critical_difference:
                end += 1
            if end > start and not any(s <= start and end <= e for s, e in spans):
                spans.append((start, end))
        return [tuple(models[s : e + 1]) for s, e in spans]


def rank_test(summary: pd.DataFrame, alpha: float = RANK_TEST_ALPHA) -> RankTest | None:
    """:class:`RankTest` over ``summary`` (one row per task and model: ``mae_mean``, ``n_folds``): every model
    over the tasks where all of them count, else the models that count on every task (see the module's
    conventions); None with fewer than 2 tasks or 2 models to compare."""
    complete = summary[summary["n_folds"] == summary.groupby("task")["n_folds"].transform("max")]
    every_task = sorted(summary["task"].unique())
    all_models = sorted(summary["model"].unique())
    per_task = complete.groupby("task")["model"].nunique()
    tasks = sorted(per_task[per_task == len(all_models)].index)
    models = all_models
    if len(tasks) < 2:
        per_model = complete.groupby("model")["task"].nunique()
        tasks, models = every_task, sorted(per_model[per_model == len(every_task)].index)
    if len(tasks) < 2 or len(models) < 2:
        return None
    chosen = summary[summary["model"].isin(models) & summary["task"].isin(tasks)]
    scores = chosen.pivot(index="task", columns="model", values="mae_mean")
    ranks = scores.rank(axis=1, method="average")  # ties share the mean rank, as Friedman's test assumes
    n, k = len(tasks), len(models)
    mean = ranks.mean(axis=0).sort_values(kind="stable")
    statistic = 12.0 * n / (k * (k + 1)) * float((mean**2).sum() - k * (k + 1) ** 2 / 4.0)
    q_alpha = float(sps.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    return RankTest(
        mean_ranks={str(m): float(r) for m, r in mean.items()},
        tasks=tuple(tasks),
        left_out=tuple(sorted(set(all_models) - set(models))),
        tasks_left_out=tuple(sorted(set(every_task) - set(tasks))),
        statistic=statistic,
        p_value=float(sps.chi2.sf(statistic, k - 1)),
        critical_difference=q_alpha * math.sqrt(k * (k + 1) / (6.0 * n)),
        alpha=alpha,
    )


def depth_table(finals: pd.DataFrame, task: str) -> pd.DataFrame:
    """Test MAE against depth per network architecture at the task's headline training size: one row per
    (``arch``, ``depth``) with ``runs``, ``mae_mean``, ``mae_std``, ``models`` (which runs they are, e.g.
    "irnet-24"); only architectures with runs at two depths or more. Empty when there are none."""
    rows = at_headline_size(finals[finals["task"] == task])
    rows = rows[(rows.get("arch", pd.Series("", index=rows.index)) != "") & rows["depth"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["arch", "depth", "runs", "mae_mean", "mae_std", "models"])
    deep = rows.groupby("arch")["depth"].nunique()
    rows = rows[rows["arch"].isin(deep[deep >= 2].index)]
    out = rows.groupby(["arch", "depth"]).agg(
        runs=("run_id", "size"),
        mae_mean=(schema.TEST_MAE, "mean"),
        mae_std=(schema.TEST_MAE, lambda s: s.std(ddof=0) if len(s) > 1 else math.nan),
        models=("model", lambda s: ", ".join(sorted(set(s)))),
    )
    out = out.reset_index()
    out["depth"] = out["depth"].astype(int)
    return out.sort_values(["arch", "depth"]).reset_index(drop=True)


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
    p_floor: float | None = None  # smallest two-sided p the exact test can give with these pairs (2 / 2^n)

    @property
    def tested(self) -> bool:
        return self.p_value is not None


def paired_scores(finals: pd.DataFrame, task: str, baseline: str, reference: str = REFERENCE_MODEL) -> pd.DataFrame:
    """Columns ``fold, seed, reference, baseline``: test MAE of both models on the (fold, seed) they share."""
    rows = finals[finals["task"] == task]
    ref = rows[rows["model"] == reference].set_index(["fold", "seed"])[schema.TEST_MAE].rename("reference")
    base = rows[rows["model"] == baseline].set_index(["fold", "seed"])[schema.TEST_MAE].rename("baseline")
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


def wilcoxon_floor(n_pairs: int) -> float:
    """The smallest two-sided p-value of the exact Wilcoxon signed-rank test on ``n_pairs`` non-tied pairs.

    Reached when every pair falls on one side: 2 * (1/2)^n, e.g. 0.0625 with 5 folds.
    """
    return 2.0 / 2.0**n_pairs


def headline_size(runs: pd.DataFrame) -> int:
    """The training size of one task's runs at which the most models ran, the largest of those if several.

    Every model is then on the leaderboard; a larger size that only some models reached yet (a scaling study
    in progress) shows in the scaling study, not in place of the complete comparison one size down.
    """
    models_at = runs.groupby("train_size")["model"].nunique()
    return int(models_at[models_at == models_at.max()].index.max())


def at_headline_size(finals: pd.DataFrame) -> pd.DataFrame:
    """The runs of each task at its :func:`headline_size` (a task without a scaling study: all its runs)."""
    if finals.empty:
        return finals
    size = finals.groupby("task")[["train_size", "model"]].apply(headline_size)
    return finals[finals["train_size"] == finals["task"].map(size)]


def compare_task(finals: pd.DataFrame, task: str, reference: str = REFERENCE_MODEL) -> list[PairedComparison]:
    """IRNet (``reference``) against every other model of ``task``; empty when IRNet did not run on it."""
    models = sorted(finals.loc[finals["task"] == task, "model"].unique())
    if reference not in models:
        return []
    raw: list[dict[str, Any]] = []
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
        n_nonzero = int((ref != base).sum())
        raw.append(
            {
                "task": task,
                "baseline": baseline,
                "n_pairs": len(pairs),
                "wins": int((ref < base).sum()),
                "ties": int((ref == base).sum()),
                "losses": int((ref > base).sum()),
                "fold_wins": int((by_fold["reference"] < by_fold["baseline"]).sum()),
                "fold_ties": int((by_fold["reference"] == by_fold["baseline"]).sum()),
                "fold_losses": int((by_fold["reference"] > by_fold["baseline"]).sum()),
                "mean_diff": float(np.mean(base - ref)) if len(pairs) else math.nan,
                "statistic": statistic,
                "p_value": p_value,
                "note": note,
                "p_floor": wilcoxon_floor(n_nonzero) if p_value is not None else None,
            }
        )
    adjusted = _holm([r["p_value"] for r in raw])
    return [PairedComparison(**r, p_holm=p) for r, p in zip(raw, adjusted, strict=True)]


def running_best(trials: pd.DataFrame) -> pd.DataFrame:
    """Best ``trial_val_mae`` so far against trial number, per parent run, counting only COMPLETE trials.

    Returns columns ``task, model, fold, seed, parent_run_id, trial_number, best_so_far``.
    """
    done = trials[trials["trial_state"].astype(str).str.upper() == "COMPLETE"].sort_values(
        ["parent_run_id", "trial_number"]
    )
    # astype: a store without trials gives an empty object column, which cummin refuses.
    best = done["trial_val_mae"].astype(float).groupby(done["parent_run_id"]).cummin()
    return done.assign(best_so_far=best)[
        ["task", "model", "fold", "seed", "parent_run_id", "trial_number", "best_so_far"]
    ]


# ------------------------------------------------------------------------------- per-row paired comparison

N_RESAMPLES = 2000  # bootstrap resamples and sign-flip permutations of the per-row comparison
RESAMPLE_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class RowComparison:
    """IRNet against one baseline on the same test rows of one task and training size."""

    task: str
    baseline: str
    train_size: int
    n_rows: int  # distinct (fold, test row) pairs, pooled over folds
    n_seeds: int  # seeds both models ran, averaged per row
    mae_reference: float
    mae_baseline: float
    diff: float  # baseline MAE - IRNet MAE on these rows; positive means IRNet is better
    ci_low: float
    ci_high: float
    p_value: float  # two-sided sign-flip permutation p-value of diff = 0; at least 1 / (n_resamples + 1)
    n_resamples: int
    reference: str = REFERENCE_MODEL  # the model whose errors are subtracted (IRNet, or the best of the suite)


def paired_difference_test(
    reference_errors: np.ndarray,
    baseline_errors: np.ndarray,
    n_resamples: int = N_RESAMPLES,
    seed: int = RESAMPLE_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float, float]:
    """(mean difference, CI low, CI high, p) of baseline minus reference errors, paired row by row.

    The interval is the percentile interval of the mean difference over ``n_resamples`` paired bootstrap
    resamples of the rows (Efron & Tibshirani 1993, ch. 13). The p-value is the two-sided sign-flip permutation
    test of a zero mean difference: each row's difference keeps its size and gets a random sign (the null is
    that the two models' errors are exchangeable on every row), p = (1 + #{|perm| >= |observed|}) / (1 + n).
    """
    d = np.asarray(baseline_errors, dtype=np.float64) - np.asarray(reference_errors, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no paired rows")
    observed = float(d.mean())
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    flipped = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // d.size)  # bounded memory: a (chunk, rows) matrix at a time
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        boot[start : start + k] = d[rng.integers(0, d.size, size=(k, d.size))].mean(axis=1)
        signs = rng.integers(0, 2, size=(k, d.size), dtype=np.int8) * 2 - 1
        flipped[start : start + k] = (signs * d).mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    # A tolerance so that an all-zero difference (or a flip that reproduces it exactly) counts as extreme.
    extreme = int((np.abs(flipped) >= abs(observed) - 1e-12 * max(1.0, abs(observed))).sum())
    p_value = (1 + extreme) / (1 + n_resamples)
    return observed, float(low), float(high), float(p_value)


def compare_rows(
    predictions: pd.DataFrame,
    task: str,
    reference: str = REFERENCE_MODEL,
    n_resamples: int = N_RESAMPLES,
    seed: int = RESAMPLE_SEED,
) -> list[RowComparison]:
    """IRNet against every other model of ``task``, per training size, on the test rows they share."""
    rows = predictions[predictions["task"] == task]
    out: list[RowComparison] = []
    for train_size in sorted(rows["train_size"].unique()):
        at_size = rows[rows["train_size"] == train_size]
        models = sorted(at_size["model"].unique())
        if reference not in models:
            continue
        reference_rows = at_size[at_size["model"] == reference]
        for baseline in (m for m in models if m != reference):
            comparison = compare_prediction_sets(task, int(train_size), reference, reference_rows, baseline,
                                                 at_size[at_size["model"] == baseline], n_resamples, seed)  # fmt: skip
            if comparison is not None:
                out.append(comparison)
    return out


# A row of predictions without a seed of its own: published predictions, a mean over seeds (reports.ensembles).
# Paired with one of those, the other side's errors are averaged over all its seeds first.
NO_SEED = -1


def paired_prediction_errors(reference: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Columns ``fold, id, reference, baseline, n_seeds``: each side's absolute error per test row, for two sets of
    predictions (columns ``fold, seed, id, y_true, y_pred``) of one task and training size.

    Where both sides have seeds, rows are joined on (fold, seed, id), so only the seeds both ran count, and a row's
    errors are averaged over those seeds (seeds share the row, so they are not independent samples); where a side
    has no seed (:data:`NO_SEED`), each side's errors are first averaged over its own seeds and the rows joined on
    (fold, id); ``n_seeds`` is then the seeds the other side averaged.
    """
    key = ["fold", "seed", "id"]
    sides = {
        name: frame.assign(error=(frame["y_pred"] - frame["y_true"]).abs())[[*key, "error"]]
        for name, frame in (("reference", reference), ("baseline", baseline))
    }
    if all((frame["seed"] != NO_SEED).all() for frame in sides.values()):
        joined = pd.concat([f.set_index(key)["error"].rename(n) for n, f in sides.items()], axis=1, join="inner")
        out = (
            joined.reset_index()
            .groupby(["fold", "id"])
            .agg(reference=("reference", "mean"), baseline=("baseline", "mean"), n_seeds=("seed", "nunique"))
        )
        return out.reset_index()
    means = [f.groupby(["fold", "id"])["error"].mean().rename(n) for n, f in sides.items()]
    seeds = max(int(f.loc[f["seed"] != NO_SEED, "seed"].nunique()) for f in sides.values())
    out = pd.concat(means, axis=1, join="inner").reset_index()
    return out.assign(n_seeds=max(1, seeds))


def compare_prediction_sets(
    task: str,
    train_size: int,
    reference: str,
    reference_rows: pd.DataFrame,
    baseline: str,
    baseline_rows: pd.DataFrame,
    n_resamples: int = N_RESAMPLES,
    seed: int = RESAMPLE_SEED,
) -> RowComparison | None:
    """``reference`` against ``baseline`` on the test rows both predicted (:func:`paired_prediction_errors`), with
    the paired bootstrap interval and sign-flip p of :func:`paired_difference_test`; None when they share no row."""
    pairs = paired_prediction_errors(reference_rows, baseline_rows)
    if pairs.empty:
        return None
    diff, low, high, p = paired_difference_test(
        pairs["reference"].to_numpy(), pairs["baseline"].to_numpy(), n_resamples, seed
    )
    return RowComparison(
        task=task,
        baseline=baseline,
        train_size=int(train_size),
        n_rows=len(pairs),
        n_seeds=int(pairs["n_seeds"].max()),
        mae_reference=float(pairs["reference"].mean()),
        mae_baseline=float(pairs["baseline"].mean()),
        diff=diff,
        ci_low=low,
        ci_high=high,
        p_value=p,
        n_resamples=n_resamples,
        reference=reference,
    )
