"""What the leaderboard says: the sections, tables and figures, assembled as render blocks."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from benchmarks.metrics import regression_metrics
from reports import declared, plots
from reports.breakdown import Breakdown
from reports.collect import Collected
from reports.ensembles import SEED_AVERAGE, Ensemble
from reports.matbench_export import MatbenchExport
from reports.references import LABEL as REFERENCE_LABEL
from reports.render import Block, Figure, Heading, Para, Table
from reports.scaling import CONFIDENCE, ScalingStudy, measured_leaders
from reports.stats import (
    CUT_SHORT,
    MIN_PAIRS,
    NO_SEED,
    REFERENCE_MODEL,
    TRIALS_HEADING,
    PairedComparison,
    RowComparison,
    at_headline_size,
    depth_table,
    rank_test,
    running_best,
    wilcoxon_floor,
)
from studies.ensembling import ROUNDS

PUBLISHED_FILE = "published_matbench_v0.1.csv"
PUBLISHED_SOURCE = "materialsproject/matbench, docs_src Leaderboards Per-Task (Matbench v0.1)"
PUBLISHED_TAG = "published, not rerun"
# Column of the published file -> name shown.
PUBLISHED_MODELS = {
    "rf_scm_magpie": "RF-SCM/Magpie",
    "dummy": "Dummy",
    "modnet_0_1_12": "MODNet v0.1.12",
    "crabnet": "CrabNet",
    "alignn": "ALIGNN",
    "cogn": "coGN",
    "automatminer_express": "Automatminer Express",
}
# Published entries that read the formula alone on every task (CrabNet: the composition; Dummy: nothing), so on a
# structure task they are the published composition-only figures ours compare with; the rest read the structure.
COMPOSITION_ONLY_ENTRIES = frozenset({"crabnet", "dummy"})
# The published entries read across tasks: the composition-only network (CrabNet), the Magpie forest that is our
# tree ensembles' published twin (RF-SCM/Magpie), and MODNet, the best entry that also starts from Magpie-like
# attributes.
OVERVIEW_PUBLISHED = ("crabnet", "rf_scm_magpie", "modnet_0_1_12")
DASH = "—"
# Published OQMD/AFLOW figures: CrabNet paper Table 2 (same split as ours) and the IRNet paper (its own split).
PUBLISHED_OQMD_FILE = "published_oqmd.csv"
PUBLISHED_OQMD_SOURCES = (
    "CrabNet paper, Table 2 (Wang et al., npj Comput. Mater. 7, 77 (2021); anthony-wang/CrabNet "
    "metrics/all_metrics.csv), on the CrabNet archive split this suite uses; IRNet paper (Jha et al., KDD 2019), "
    "OQMD-C on the paper's own split"
)
SAME_SPLIT = "published, same split"  # published_oqmd.csv's split of the CrabNet paper's figures
CUT_SHORT_MARK = "†"
CUT_SHORT_LEGEND = (
    f"{CUT_SHORT_MARK} cut short: at least one refit behind this score hit its time limit "
    f"(refit_stopped={CUT_SHORT}) before its own stopping rule, so the model may not have converged."
)


REFERENCE_NOTE = (
    f'Rows marked "{REFERENCE_LABEL}" (grey in the HTML) are scored here from the published models\' own test '
    "predictions on this split (Wang, Murdock, Kauwe and Sparks, npj Comput. Mater. 7, 77 (2021), Table 2; "
    "anthony-wang/CrabNet publication_predictions/, MIT licence; shipped in benchmarks/reference/ with its sha256), on "
    "the test rows and targets of our runs: their MAEs are the paper's. Shown only where our runs used the whole "
    "training part of the split, as those models did; not ranked."
)


@dataclass(frozen=True)
class TaskExtras:
    """What a task's section shows beside its runs: its ensembles and reference rows at the leaderboard's training
    size, their row-by-row comparisons with IRNet and the best of the suite, the breakdown of errors, and notes."""

    ensembles: list[Ensemble] = field(default_factory=list)
    references: pd.DataFrame | None = None
    beside: list[RowComparison] = field(default_factory=list)
    breakdown: Breakdown | None = None
    notes: tuple[str, ...] = ()


def load_published() -> pd.DataFrame:
    """The published Matbench v0.1 figures copied into this package (see the file's source line)."""
    with resources.files("reports").joinpath(PUBLISHED_FILE).open("r", encoding="utf-8") as handle:
        # Strings, so each figure is shown exactly as published ("0.0670" stays "0.0670").
        return pd.read_csv(handle, comment="#", dtype=str, keep_default_na=False).set_index("task")


def load_published_oqmd() -> pd.DataFrame:
    """Published OQMD/AFLOW test MAEs copied into this package (sources in the file's header), as strings."""
    with resources.files("reports").joinpath(PUBLISHED_OQMD_FILE).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, comment="#", dtype=str, keep_default_na=False)


def decimals(values: Iterable[float], significant: int = 4) -> int:
    """Decimals that give ``significant`` digits to the smallest non-zero magnitude (one format per column)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 3
    return max(0, min(8, significant - 1 - math.floor(math.log10(min(finite)))))


def _f(value: float | None, decimals: int) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


def _pm(mean: float, std: float, decimals: int) -> str:
    return _f(mean, decimals) if not math.isfinite(std) else f"{_f(mean, decimals)} ± {_f(std, decimals)}"


def _p(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3g}"


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return DASH
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def mean_rank_blocks(ranks: pd.DataFrame, n_tasks: int) -> list[Block]:
    rows = [[r.model, f"{r.mean_rank:.2f}", str(r.n_tasks), str(r.wins)] for r in ranks.itertuples()]
    return [
        Heading("Across tasks: mean rank", 2, "mean-rank"),
        Para(
            f"Rank 1 is the lowest mean test MAE on a task. Mean over the {n_tasks} task(s) each model ran on; "
            "ranks count only the models of this suite (published figures are not ranked).",
            note=True,
        ),
        Table(["model", "mean rank", "tasks", "first places"], rows, align_right=frozenset({1, 2, 3})),
    ]


def rank_test_blocks(summary: pd.DataFrame) -> list[Block]:
    """The Friedman test and the critical-difference diagram over the report's tasks (none with fewer than 2)."""
    test = rank_test(summary)
    if test is None:
        return []
    told_apart = "the models' mean ranks differ" if test.p_value < test.alpha else "no difference among the models"
    left_out = f" Left out (not run on every task): {', '.join(test.left_out)}." if test.left_out else ""
    if test.tasks_left_out:
        left_out += f" Tasks left out (not every model has all its folds there): {', '.join(test.tasks_left_out)}."
    text = (
        f"Friedman test over the {len(test.tasks)} tasks, {len(test.mean_ranks)} models ranked within each task "
        f"(ties share the mean rank): chi-square {test.statistic:.2f}, p = {test.p_value:.3g}: {told_apart} at "
        f"level {test.alpha:g}. Nemenyi critical difference {test.critical_difference:.2f}: models joined by a bar "
        f"are not told apart (Demšar, JMLR 7, 2006). With few tasks the test is weak: a model must differ by "
        f"{test.critical_difference:.2f} ranks to be told apart.{left_out}"
    )
    caption = "Critical-difference diagram: mean rank over the tasks (1 = best); a bar joins models not told apart."
    return [Para(text, note=True), Figure("plots/critical_difference.png", plots.critical_difference(test), caption)]


def task_overview_blocks(summary: pd.DataFrame, ranks: pd.DataFrame, published: pd.DataFrame) -> list[Block]:
    """Every task beside every other: our models' mean ± std test MAE with their rank on the task, then the
    published reference entries of the tasks that have them (Matbench's per-task leaderboards read across). Only
    with two tasks or more; each task's own section has the full table."""
    tasks = sorted(summary["task"].unique())
    if len(tasks) < 2:
        return []
    header = [f"{t} ({published.at[t, 'unit']})" if t in published.index else t for t in tasks]
    cells = summary.set_index(["task", "model"])
    digits = {t: decimals(summary.loc[summary["task"] == t, "mae_mean"]) for t in tasks}
    most_runs = summary.groupby("task")["n_runs"].max()  # a model with fewer (a study in progress) says so
    rows = []
    for model in ranks["model"]:
        row = [str(model)]
        for task in tasks:
            if (task, model) not in cells.index:
                row.append(DASH)
                continue
            r = cells.loc[(task, model)]
            text = _cut(_pm(float(r["mae_mean"]), float(r["mae_std"]), digits[task]), int(r["n_cut_short"]) > 0)
            partial = f"; {int(r['n_runs'])} of {int(most_runs[task])} runs" if r["n_runs"] < most_runs[task] else ""
            row.append(f"{text} ({int(r['rank'])}{partial})")
        rows.append(row)
    muted: set[int] = set()
    shown = [(col, PUBLISHED_MODELS[col]) for col in OVERVIEW_PUBLISHED] + [("best_value", "best on leaderboard")]
    for col, name in shown:
        row = [f"{name} ({PUBLISHED_TAG})"]
        for task in tasks:
            if task not in published.index or not published.at[task, col]:
                row.append(DASH)
                continue
            ref = published.loc[task]
            value = ref[col]
            if col == "best_value":
                value = f"{value} ({ref['best_model']})"
            elif ref["input"] == "structure":
                value += " (composition only)" if col in COMPOSITION_ONLY_ENTRIES else " (structure)"
            row.append(value)
        if any(c != DASH for c in row[1:]):
            muted.add(len(rows))
            rows.append(row)
    return [
        Heading("Across tasks: test MAE", 2, "across-tasks"),
        Para(
            "Mean ± std test MAE over each model's runs of the task (its rank there in brackets; 1 = best of this "
            "suite's models; a model with fewer runs than the task's most says how many), at the task's largest "
            "training size, models in order of mean rank. "
            f'Rows marked "{PUBLISHED_TAG}": mean MAE over the 5 official folds as published ({PUBLISHED_SOURCE}); '
            "on a structure task only the composition-only entries read what ours read.",
            note=True,
        ),
        Table(
            ["model", *header],
            rows,
            muted_rows=frozenset(muted),
            align_right=frozenset(range(1, len(tasks) + 1)),
        ),
    ]


def wall_time_blocks(finals: pd.DataFrame) -> list[Block]:
    """Per task, the wall-clock minutes its parent runs took (tuning, refit and scoring), summed per model
    family and in all: what reproducing each task costs on the machines that ran it. Only with two tasks or more."""
    if finals["task"].nunique() < 2:
        return []
    runs = finals.assign(
        minutes=(finals["end_time"] - finals["start_time"]) / 60_000.0,
        family=[declared.family(str(m)) or "other" for m in finals["model"]],
    )
    families = sorted(runs["family"].unique())
    table = runs.pivot_table(index="task", columns="family", values="minutes", aggfunc="sum").reindex(columns=families)
    counts = runs.groupby("task")["run_id"].size()
    rows = [
        [str(task), str(int(counts[task])), *(_seconds(float(table.at[task, f])) for f in families),
         _seconds(float(table.loc[task].sum()))]
        for task in table.index
    ]  # fmt: skip
    rows.append(["all", str(len(runs)), *(_seconds(float(table[f].sum())) for f in families),
                 _seconds(float(runs["minutes"].sum()))])  # fmt: skip
    return [
        Heading("Wall time per task", 2, "wall-time"),
        Para(
            "Minutes of wall clock of each task's parent runs (tuning, refit and the one test scoring), summed over "
            "its runs per model family; runs of different workers overlap in time, so this is the compute a rerun "
            "needs on one such core, not the calendar time it took. Each run's machine is in Provenance.",
            note=True,
        ),
        Table(
            ["task", "runs", *(f"{f} min" for f in families), "all min"],
            rows,
            align_right=frozenset(range(1, len(families) + 3)),
        ),
    ]


def _cut(text: str, cut_short: bool) -> str:
    return f"{text} {CUT_SHORT_MARK}" if cut_short else text


def leaderboard_table(
    task: str,
    summary: pd.DataFrame,
    published: pd.DataFrame,
    composition_only: bool,
    published_oqmd: pd.DataFrame | None = None,
    ensembles: list[Ensemble] | None = None,
    references: pd.DataFrame | None = None,
) -> Table:
    """Ranked models of one task, then its post-hoc ensembles (not ranked: they are made of the ranked models),
    then the published reference rows where the task has them: the published models' own predictions on these
    test rows (``references``) and figures copied from papers and leaderboards.

    Each score shows why its refits stopped; one whose refit hit its time limit is marked cut short (†).
    """
    rows_df = summary[summary["task"] == task].sort_values(["rank", "model"])
    d_mae = decimals(rows_df["mae_mean"])
    d_rmse = decimals(rows_df["rmse_mean"])
    rows: list[list[str]] = []
    for r in rows_df.itertuples():
        rows.append(
            [
                str(r.rank),
                r.model,
                _cut(_pm(r.mae_mean, r.mae_std, d_mae), r.n_cut_short > 0),
                _pm(r.rmse_mean, r.rmse_std, d_rmse),
                _pm(r.r2_mean, r.r2_std, 3),
                f"{r.n_runs} ({r.n_folds}×{r.n_seeds})",
                r.depth or DASH,
                _seconds(r.train_seconds),
                _seconds(r.tuning_seconds),
                r.trials,
                r.refit_stopped,
            ]
        )
    rows += ensemble_rows(ensembles or [], d_mae, d_rmse)
    muted: set[int] = set()
    shown_references: set[str] = set()
    if references is not None and not references.empty:
        for model, part in sorted(references.groupby("model"), key=lambda kv: _mae_of(kv[1])):
            scores = regression_metrics(part["y_true"].to_numpy(), part["y_pred"].to_numpy())
            muted.add(len(rows))
            shown_references.add(str(model))
            rows.append([DASH, f"{model} ({REFERENCE_LABEL})", _f(scores["mae"], d_mae), _f(scores["rmse"], d_rmse),
                         _f(scores["r2"], 3), f"{len(part):,} test rows", DASH, DASH, DASH, DASH, DASH])  # fmt: skip
    if task in published.index:
        ref = published.loc[task]
        task_input = f"{ref['input']} input"
        formula_alone = ref["input"] == "structure"  # on a composition task every entry reads the formula alone

        def reads(col: str) -> str:
            return "composition only" if formula_alone and col in COMPOSITION_ONLY_ENTRIES else task_input

        entries = [(f"{ref['best_model']}, best on leaderboard", ref["best_value"], task_input)]
        entries += [(name, ref[col], reads(col)) for col, name in PUBLISHED_MODELS.items() if ref[col]]
        for name, value, kind in sorted(entries, key=lambda e: float(e[1])):
            muted.add(len(rows))
            label = f"{name} ({PUBLISHED_TAG}; {kind})"
            rows.append([DASH, label, value, DASH, DASH, "5 official folds", DASH, DASH, DASH, DASH, DASH])
    if published_oqmd is not None:
        for r in (
            published_oqmd[published_oqmd["task"] == task]
            .sort_values("test_mae", key=lambda v: v.astype(float))
            .itertuples()
        ):
            if r.model in shown_references and r.split == SAME_SPLIT:
                continue  # its own predictions are shown above, scored on these rows
            muted.add(len(rows))
            rows.append(
                [DASH, f"{r.model} ({r.split})", r.test_mae, DASH, DASH, "1 fixed split", DASH, DASH, DASH, DASH, DASH]
            )
    caption = f"{task}: test scores, mean ± std over folds and seeds"
    if composition_only:
        caption += " (composition-only)"
    columns = ["rank", "model", "MAE", "RMSE", "R²", "runs (folds×seeds)", "depth", "refit s", "tuning s",
               TRIALS_HEADING, "refit stopped"]  # fmt: skip
    return Table(columns, rows, caption, frozenset(muted), frozenset({0, 2, 3, 4, 7, 8}))


def _mae_of(rows: pd.DataFrame) -> float:
    return float((rows["y_pred"] - rows["y_true"]).abs().mean())


def ensemble_rows(ensembles: list[Ensemble], d_mae: int, d_rmse: int) -> list[list[str]]:
    """One leaderboard row per ensemble name: mean ± std over its keys, its members with their mean weights."""
    rows = []
    by_name: dict[str, list[Ensemble]] = {}
    for e in ensembles:
        by_name.setdefault(e.name, []).append(e)
    for name, group in sorted(by_name.items(), key=lambda kv: (float(np.mean([e.test["mae"] for e in kv[1]])), kv[0])):
        scores = {k: np.array([e.test[k] for e in group]) for k in ("mae", "rmse", "r2")}
        std = {k: float(v.std()) if len(v) > 1 else math.nan for k, v in scores.items()}
        folds, seeds = len({e.fold for e in group}), len({e.seed for e in group})
        runs = f"{len(group)} ({folds} folds)" if group[0].kind == SEED_AVERAGE else f"{len(group)} ({folds}×{seeds})"
        rows.append([DASH, f"{name} (ensemble: {mean_weights(group)})",
                     _pm(float(scores["mae"].mean()), std["mae"], d_mae),
                     _pm(float(scores["rmse"].mean()), std["rmse"], d_rmse),
                     _pm(float(scores["r2"].mean()), std["r2"], 3), runs, DASH, DASH, DASH, DASH, DASH])  # fmt: skip
    return rows


def mean_weights(group: list[Ensemble]) -> str:
    """Members and their weights; over several keys the mean weight of each model (0 where it was not chosen)."""
    if group[0].kind == SEED_AVERAGE:
        seeds = sorted({m.seed for e in group for m in e.members})
        return f"mean of seeds {', '.join(map(str, seeds))}"
    totals: dict[str, float] = {}
    for e in group:
        for m in e.members:
            totals[m.model] = totals.get(m.model, 0.0) + m.weight / len(group)
    text = ", ".join(f"{m} {w:.2f}" for m, w in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
    return text + (f"; mean over {len(group)} runs" if len(group) > 1 else "")


def comparison_table(task: str, comparisons: list[PairedComparison], decimals: int) -> Table:
    rows = []
    for c in comparisons:
        rows.append(
            [
                c.baseline,
                str(c.n_pairs),
                f"{c.wins}/{c.ties}/{c.losses}",
                f"{c.fold_wins}/{c.fold_ties}/{c.fold_losses}",
                _f(c.mean_diff, decimals),
                f"{_p(c.p_value)} (floor {_p(c.p_floor)})" if c.tested else c.note,
                _p(c.p_holm) if c.tested else DASH,
            ]
        )
    return Table(
        [
            "baseline",
            "pairs",
            "IRNet W/T/L (pairs)",
            "IRNet W/T/L (folds)",
            "mean Δ MAE",
            "Wilcoxon p (its floor)",
            "p (Holm)",
        ],
        rows,
        f"{task}: IRNet against each baseline, paired by (fold, seed)",
        align_right=frozenset({1, 4, 5, 6}),
    )


def row_comparison_blocks(task: str, rows: list[RowComparison], decimals: int) -> list[Block]:
    """The per-row paired comparison: IRNet against each baseline on the same test rows, per training size."""
    if not rows:
        return []
    table_rows = [
        [
            c.baseline,
            f"{c.train_size:,}",
            f"{c.n_rows:,}",
            str(c.n_seeds),
            _f(c.mae_reference, decimals),
            _f(c.mae_baseline, decimals),
            _f(c.diff, decimals),
            f"[{_f(c.ci_low, decimals)}, {_f(c.ci_high, decimals)}]",
            _p(c.p_value),
            "IRNet better" if c.ci_low > 0 else f"{c.baseline} better" if c.ci_high < 0 else "no clear difference",
        ]
        for c in rows
    ]
    n = rows[0].n_resamples
    header = ["baseline", "train rows", "test rows", "seeds", "IRNet MAE", "baseline MAE", "Δ MAE",
              f"{CONFIDENCE:.0%} CI of Δ", "p (sign-flip)", "verdict"]  # fmt: skip
    return [
        Table(
            header,
            table_rows,
            f"{task}: IRNet against each baseline on the same test rows (per-row absolute errors, folds pooled)",
            align_right=frozenset({1, 2, 3, 4, 5, 6, 7, 8}),
        ),
        Para(
            "Each test row's absolute error of IRNet and of the baseline, joined on (fold, seed, training size, row "
            "id) and averaged over the seeds both ran; folds pooled. Δ MAE is baseline minus IRNet (positive: IRNet "
            f"better); the interval is a paired bootstrap over rows ({n} resamples, seeded), p a two-sided sign-flip "
            f"permutation test ({n} permutations, seeded; it cannot go below 1/{n + 1} = {1 / (n + 1):.1e}). "
            "Verdict: whether the interval excludes zero. Rows of one test set are the sample, so this says whether "
            "the gap holds on these test rows, not across other training draws; the fold-level test above covers that.",
            note=True,
        ),
    ]


def beside_blocks(
    task: str, rows: list[RowComparison], decimals: int, has_references: bool, has_ensembles: bool
) -> list[Block]:
    """The published reference predictions and the post-hoc ensembles against IRNet and the best of the suite's
    models, row by row, at the leaderboard's training size."""
    if not rows:
        return []
    table_rows = [
        [
            c.baseline,
            c.reference,
            f"{c.train_size:,}",
            f"{c.n_rows:,}",
            str(c.n_seeds),
            _f(c.mae_baseline, decimals),
            _f(c.mae_reference, decimals),
            _f(c.diff, decimals),
            f"[{_f(c.ci_low, decimals)}, {_f(c.ci_high, decimals)}]",
            _p(c.p_value),
            f"{c.reference} better" if c.ci_low > 0 else f"{c.baseline} better" if c.ci_high < 0
            else "no clear difference",
        ]
        for c in rows
    ]  # fmt: skip
    n = rows[0].n_resamples
    header = ["row", "against", "train rows", "test rows", "seeds", "its MAE", "MAE against", "Δ MAE",
              f"{CONFIDENCE:.0%} CI of Δ", "p (sign-flip)", "verdict"]  # fmt: skip
    parts = (("the published models' own predictions", has_references), ("the post-hoc ensembles", has_ensembles))
    what = " and ".join(w for w, shown in parts if shown)
    return [
        Table(
            header,
            table_rows,
            f"{task}: {what} against IRNet and the best of the suite's models, on the same test rows",
            align_right=frozenset({2, 3, 4, 5, 6, 7, 8, 9}),
        ),
        Para(
            "Each row's absolute errors paired with those of IRNet and of the suite's best model on this leaderboard "
            "(lowest mean test MAE) on the same test rows, folds pooled; a side with several seeds is averaged over "
            "them per row (only the seeds both ran where both have seeds; published predictions and seed averages "
            "have none of their own). Δ MAE is the row's MAE minus the MAE it is compared against (positive: ours "
            f"better); the interval is a paired bootstrap over rows ({n} resamples, seeded), p a two-sided sign-flip "
            f"permutation test ({n} permutations). ElemNet's published predictions miss one test row, so its pairs "
            "are one fewer.",
            note=True,
        ),
    ]


def ensemble_blocks(task: str, ensembles: list[Ensemble], notes: tuple[str, ...], decimals: int) -> list[Block]:
    """The post-hoc ensembles of one task at the leaderboard's training size: per key, its members and weights,
    its validation MAE beside the library's best single model's, and its test scores; then the notes (runs left
    out for want of validation predictions)."""
    blocks: list[Block] = []
    if ensembles:
        rows = [
            [e.name, str(e.fold), "all" if e.seed == NO_SEED else str(e.seed), f"{e.train_size:,}", e.weights_text(),
             _f(e.val_mae, decimals), f"{e.best_single} {_f(e.best_single_val_mae, decimals)}" if e.best_single
             else DASH, _f(e.test["mae"], decimals), _f(e.test["rmse"], decimals), _f(e.test["r2"], 3)]
            for e in sorted(ensembles, key=lambda e: (e.name, e.fold, e.seed))
        ]  # fmt: skip
        blocks += [
            Heading(f"{task}: post-hoc ensembles", 3, f"{task}-ensembles"),
            Para(
                'Greedy ensemble selection with replacement (Caruana, Niculescu-Mizil, Crew and Ksikes, "Ensemble '
                f'selection from libraries of models", ICML 2004), {ROUNDS} rounds, the ensemble of the best round '
                "kept, weights = how often each model was chosen, on each (fold, seed, training size)'s validation "
                "rows (never its test rows), over all the key's models (ensemble-all), its networks "
                "(ensemble-networks) and its tree ensembles (ensemble-trees), families as the runs recorded them; a "
                "library of one model, or the same models as a library before it, gives none. Each ensemble is then "
                "scored once on the test rows. <model>-seedavg is the mean of one model's seeds' test predictions "
                "(equal weights, nothing selected). The validation rows also tuned and early-stopped the members, so "
                "the validation MAEs here are optimistic; the test MAEs are not. Ensembles are not ranked among the "
                "suite's models; ensembles.csv beside this report lists every one.",
                note=True,
            ),
            Table(
                [
                    "ensemble",
                    "fold",
                    "seed",
                    "train rows",
                    "members: weight",
                    "validation MAE",
                    "best single on validation",
                    "test MAE",
                    "test RMSE",
                    "test R²",
                ],
                rows,
                f"{task}: post-hoc ensembles per fold and seed",
                align_right=frozenset({1, 2, 3, 5, 7, 8, 9}),
                collapsed=len(rows) > 12,
            ),
        ]
    blocks += [Para(note, note=True) for note in notes]
    return blocks


def breakdown_blocks(bd: Breakdown, unit: str, decimals: int) -> list[Block]:
    """Where the errors are: median absolute error, MAE without unphysical targets, MAE by number of elements; a
    table and a figure."""
    groups = list(bd.groups)
    rule_column = f"MAE, |y| ≤ {bd.rule.limit:g}" if bd.rule else "MAE without unphysical targets"
    rows: list[list[str]] = []
    muted: set[int] = set()
    for record in bd.table.to_dict("records"):
        label = {"ours": str(record["model"]), "ensemble": f"{record['model']} (ensemble)",
                 "published": f"{record['model']} ({REFERENCE_LABEL})"}[str(record["kind"])]  # fmt: skip
        if record["kind"] == "published":
            muted.add(len(rows))
        rows.append([label, f"{int(record['rows']):,}", _f(record["mae"], decimals), _f(record["median"], decimals),
                     _f(record["mae_physical"], decimals) if bd.rule else DASH,
                     *(_f(record[g], decimals) for g in groups)])  # fmt: skip
    header = ["model", "test rows", "MAE", "median abs. error", rule_column,
              *(f"MAE {g} ({n:,} rows)" for g, n in bd.groups.items())]  # fmt: skip
    rule = (
        f"Unphysical targets: {bd.rule.text}; {bd.n_unphysical} test row(s) left out of that column."
        if bd.rule
        else "No rule for unphysical targets is set for this task (its column shows a dash)."
    )
    elements = (
        "Number of elements: that of the row's formula as the featuriser reads it, from the pinned archive."
        if groups
        else "This task's formulas are not in the pinned archive: no breakdown by number of elements."
    )
    blocks: list[Block] = [
        Heading(f"{bd.task}: where the errors are", 3, f"{bd.task}-errors"),
        Para(
            f"At {bd.train_size:,} training rows, test rows pooled over folds, each row's absolute error averaged over "
            f"the seeds that predicted it (so a model's MAE here can differ from its mean over runs in the last digits "
            f"where folds differ in size). {rule} {elements}",
            note=True,
        ),
        Table(
            header,
            rows,
            f"{bd.task}: test errors beside the MAE ({unit or 'task unit'})",
            frozenset(muted),
            frozenset(range(1, len(header))),
        ),
    ]
    if groups:
        blocks.append(
            Figure(
                f"plots/{bd.task}_elements.png",
                plots.element_errors(bd.table, bd.groups, bd.task, unit),
                f"{bd.task}: test MAE over all rows and by number of elements in the formula, at {bd.train_size:,} "
                "training rows (published predictions hatched, ensembles dotted).",
            )
        )
    return blocks


def scaling_blocks(task: str, study: ScalingStudy, unit: str) -> list[Block]:
    """Test MAE against training rows (and against compute), the power-law fits and the crossover statement."""
    points, fits = study.points, study.fits
    d = decimals(points["mae_mean"])
    sizes = sorted(points["train_size"].unique())
    blocks: list[Block] = [
        Heading(f"{task}: scaling with training rows", 3, f"{task}-scaling"),
        Para(
            f"Runs at {len(sizes)} training sizes ({', '.join(f'{n:,}' for n in sizes)} rows), each scored on the "
            "same test set. The leaderboard above is at the largest size at which the most models ran. Power law per "
            "model: MAE = a·N^-b, least squares of log(mean MAE) on log(N) over its sizes. The best tree ensemble is "
            "the model of the tree family (as its runs recorded it) with the lowest measured mean MAE at the largest "
            "size at which the most tree models ran."
        ),
    ]
    if study.crossover is not None:
        c = study.crossover
        blocks.append(
            Para(
                f"Crossover ({c.reference} against {c.tree_model}, the best tree ensemble, both fitted over the sizes "
                f"both ran): {c.statement()} Measured, mean test MAE at each size: "
                f"{measured_leaders(study.points, c.reference, c.tree_model)}."
            )
        )
    else:
        blocks.append(Para(study.note, note=True))
    fit_rows = [
        [m, f"{f.a:.4g}", f"{f.b:.3f}", str(f.n_sizes), f"{f.size_min:,}-{f.size_max:,}"]
        for m, f in sorted(fits.items(), key=lambda kv: -kv[1].b)
    ]
    blocks.append(
        Table(
            ["model", "a", "b", "sizes", "range (rows)"],
            fit_rows,
            f"{task}: power-law fits MAE = a·N^-b ({unit or 'task unit'}), steepest first",
            align_right=frozenset({1, 2, 3}),
        )
    )
    point_rows = [
        [
            r.model,
            f"{int(r.train_size):,}",
            _cut(_pm(r.mae_mean, r.mae_std if r.n_runs > 1 else math.nan, d), r.n_cut_short > 0),
            f"{_f(r.mae_min, d)}-{_f(r.mae_max, d)}",
            str(r.n_runs),
            _seconds(r.tuning_seconds),
            _seconds(r.train_seconds),
            _seconds(r.compute_seconds),
            r.refit_stopped,
        ]
        for r in points.sort_values(["model", "train_size"]).itertuples()
    ]
    blocks.append(
        Table(
            ["model", "train rows", "test MAE", "min-max", "runs", "tuning s", "refit s", "compute s", "refit stopped"],
            point_rows,
            f"{task}: test MAE per training size, mean ± std over folds and seeds",
            align_right=frozenset({1, 2, 3, 4, 5, 6, 7}),
        )
    )
    if (points["n_cut_short"] > 0).any():
        blocks.append(Para(CUT_SHORT_LEGEND, note=True))
    crossing = study.crossover.crossing if study.crossover is not None and study.crossover.in_range else None
    blocks.append(
        Figure(
            f"plots/{task}_scaling.png",
            plots.scaling(points, fits, task, crossing),
            f"{task}: test MAE against training rows (log-log), mean over folds and seeds with the min-max band, "
            "and each model's fitted power law (dashed).",
        )
    )
    blocks.append(
        Figure(
            f"plots/{task}_compute.png",
            plots.compute(points, task),
            f"{task}: test MAE against the wall-clock seconds each model spent (tuning + refit, log x), one point "
            "per training size, the largest labelled.",
        )
    )
    return blocks


def depth_verdict(part: pd.DataFrame) -> str:
    """How one architecture's test MAE moves from its shallowest to its deepest network, in words."""
    maes = list(part.sort_values("depth")["mae_mean"])
    steps = [b - a for a, b in itertools.pairwise(maes)]
    if all(step > 0 for step in steps):
        return "worse at every greater depth"
    if all(step < 0 for step in steps):
        return "better at every greater depth"
    return "not monotone in depth"


def depth_blocks(task: str, table: pd.DataFrame, unit: str) -> list[Block]:
    """The paper's depth claim (a plain network gets worse as it gets deeper, IRNet does not) on this task:
    test MAE against depth per architecture, where the runs hold two depths or more of one."""
    if table.empty:
        return []
    d = decimals(table["mae_mean"])
    verdicts = []
    for arch, part in table.groupby("arch"):
        part = part.sort_values("depth")
        first, last = part.iloc[0], part.iloc[-1]
        change = (last["mae_mean"] - first["mae_mean"]) / first["mae_mean"] * 100
        verdicts.append(
            f"{arch}: {first['mae_mean']:.{d}f} at depth {first['depth']}, {last['mae_mean']:.{d}f} at "
            f"{last['depth']} ({change:+.1f}%), {depth_verdict(part)}"
        )
    rows = []
    for r in table.itertuples():
        std = "—" if pd.isna(r.mae_std) else f"{r.mae_std:.{d}f}"
        rows.append([str(r.arch), str(r.depth), str(r.runs), f"{r.mae_mean:.{d}f}", std, str(r.models)])
    mae_column = f"test MAE ({unit})" if unit else "test MAE"
    caption = f"{task}: test MAE against depth per architecture; mean over runs, bars one standard deviation."
    return [
        Heading(f"{task}: test MAE against depth", 3, f"{task}-depth"),
        Para(
            "The IRNet paper's claim (Jha et al., KDD 2019): with a shortcut around every layer a deeper network does "
            "better, where a plain network of the same depth gets worse. Runs at the training size of the leaderboard "
            "above, grouped by architecture and the depth each run recorded (the fixed-depth models irnet-17/24/48 "
            "and plain-17/24/48, and any tuned network that selected that depth). " + "; ".join(verdicts) + "."
        ),
        Table(
            ["architecture", "depth", "runs", mae_column, "std", "models"], rows, align_right=frozenset({1, 2, 3, 4})
        ),
        Figure(f"plots/{task}_depth.png", plots.depth(table, task), caption),
    ]


def task_blocks(
    task: str,
    collected: Collected,
    summary: pd.DataFrame,
    comparisons: list[PairedComparison],
    published: pd.DataFrame,
    best_trials: pd.DataFrame,
    row_comparisons: list[RowComparison] | None = None,
    study: ScalingStudy | None = None,
    published_oqmd: pd.DataFrame | None = None,
    extras: TaskExtras | None = None,
) -> list[Block]:
    """One task's section: facts, leaderboard (headline training size), comparisons, the published models' own
    predictions and the post-hoc ensembles beside ours, where the errors are, scaling study, figures."""
    extras = extras or TaskExtras()
    all_sizes = collected.finals[collected.finals["task"] == task]
    finals = at_headline_size(all_sizes)  # a scaling study's leaderboard: the largest size with the most models
    composition_only = bool(finals["composition_only"].iloc[0])
    unit = next((u for u in finals["unit"] if u), "")
    title = f"{task} (composition-only)" if composition_only else task
    blocks: list[Block] = [Heading(title, 2, task)]
    n_sizes = all_sizes["train_size"].nunique()
    size = int(finals["train_size"].iloc[0])
    size_fact = ""
    if n_sizes > 1 and size == all_sizes["train_size"].max():
        size_fact = (
            f"This section's tables are at its largest training size, {size:,} rows, of {n_sizes} (see the scaling "
            "study below). "
        )
    elif n_sizes > 1:
        larger = all_sizes[all_sizes["train_size"] > size].groupby("train_size")["model"].unique()
        partial = "; ".join(f"{n:,} rows: {', '.join(sorted(models))} only" for n, models in larger.items())
        size_fact = (
            f"This section's tables are at {size:,} training rows, the largest of its {n_sizes} sizes at which the "
            f"most models ran ({partial}; see the scaling study below). "
        )
    facts = size_fact + (
        f"Unit: {unit or 'not recorded'}. {finals['run_id'].size} finished runs; folds "
        f"{', '.join(map(str, sorted(finals['fold'].unique())))}; "
        f"seeds {', '.join(map(str, sorted(finals['seed'].unique())))}; "
        f"preset {finals['preset'].iloc[0]}; data sha256 {finals['data_sha256'].iloc[0] or 'not recorded'}."
    )
    cap = finals["max_train_rows"].iloc[0]
    if cap:
        facts += f" Training rows per fold: {'all' if cap == 'all' else f'at most {cap}'}."
    budgets = sorted(set(finals["budget"]))
    if budgets and budgets != [""]:
        per_model = "; ".join(f"{m} {', '.join(sorted(set(g['budget'])))}" for m, g in finals.groupby("model"))
        facts += f" Tuning budget per study (trials / tuning s / s per fit): {per_model}."
    blocks.append(Para(facts))
    # Budgets are derived per model group and training size (docs/guide/budgets.md "Budgets"); one model with
    # several budgets at one size would mean runs made under different rules were mixed.
    mixed = finals.groupby(["model", "train_size"])["budget"].nunique() > 1
    if mixed.any():
        per_model = "; ".join(f"{m}: {', '.join(sorted(set(g['budget'])))}" for m, g in finals.groupby("model"))
        blocks.append(
            Para(f"Warning: a model of this task was tuned with several budgets at one size ({per_model}).", note=True)
        )
    if composition_only:
        blocks.append(
            Para(
                "Composition-only: this is a structure task run from its formulas alone (composition_only=true), so "
                "its scores are not comparable with structure-based published models.",
                note=True,
            )
        )
    blocks.append(leaderboard_table(task, summary, published, composition_only, published_oqmd, extras.ensembles,
                                    extras.references))  # fmt: skip
    if (summary.loc[summary["task"] == task, "n_cut_short"] > 0).any():
        blocks.append(Para(CUT_SHORT_LEGEND, note=True))
    if published_oqmd is not None and task in set(published_oqmd["task"]):
        blocks.append(
            Para(
                'Rows marked "published, same split" or "published, different split" (grey in the HTML) are test '
                f"MAEs copied from the papers ({PUBLISHED_OQMD_SOURCES}); copied in reports/{PUBLISHED_OQMD_FILE}. "
                "Only the same-split rows are directly comparable with ours, and only when our runs use the full "
                "training part.",
                note=True,
            )
        )
    if extras.references is not None and not extras.references.empty:
        blocks.append(Para(REFERENCE_NOTE, note=True))
    if extras.ensembles:
        blocks.append(
            Para(
                'Rows marked "ensemble" are post-hoc ensembles of the ranked models (see "post-hoc ensembles" below '
                "for each one's members and weights); they are not ranked among the models they are made of.",
                note=True,
            )
        )
    if task in published.index:
        unlike = []
        if sorted(finals["fold"].unique()) != [0, 1, 2, 3, 4]:
            unlike.append("our runs do not cover all 5 folds")
        if cap and cap != "all":
            unlike.append(f"training rows were capped at {cap} per fold (this task's folds may have fewer)")
        if composition_only:
            unlike.append("our runs see compositions only")
        if unlike:
            blocks.append(Para("Not like-for-like with the published figures: " + "; ".join(unlike) + ".", note=True))
        blocks.append(
            Para(
                f'Rows marked "{PUBLISHED_TAG}" (grey in the HTML) are mean MAE over the 5 official Matbench '
                f"folds as published ({PUBLISHED_SOURCE}); copied in reports/{PUBLISHED_FILE}. They are comparable "
                "with ours only when our runs cover all 5 folds with full training data.",
                note=True,
            )
        )
    if comparisons:
        d = decimals(summary.loc[summary["task"] == task, "mae_mean"])
        blocks.append(comparison_table(task, comparisons, d))
        blocks.append(
            Para(
                "W/T/L counts IRNet wins/ties/losses in test MAE. Mean Δ MAE is baseline minus IRNet (positive: IRNet "
                "better). Wilcoxon signed-rank (two-sided, scipy) on the paired test MAEs where there are at least "
                f"{MIN_PAIRS} pairs; Holm-adjusted over this task's baselines. Its floor is the smallest p it can give "
                f"with these pairs, 2/2^n (5 folds: {wilcoxon_floor(5)}): with few folds it cannot show a difference "
                "however large, which is what the per-row comparison below is for. Runs of one fold with different "
                "seeds share test rows, so pairs are not fully independent.",
                note=True,
            )
        )
    elif REFERENCE_MODEL not in set(finals["model"]):
        blocks.append(Para("IRNet has no finished runs on this task: no comparison.", note=True))
    blocks += row_comparison_blocks(
        task, row_comparisons or [], decimals(summary.loc[summary["task"] == task, "mae_mean"])
    )
    d_task = decimals(summary.loc[summary["task"] == task, "mae_mean"])
    has_references = extras.references is not None and not extras.references.empty
    blocks += beside_blocks(task, extras.beside, d_task, has_references, bool(extras.ensembles))
    blocks += ensemble_blocks(task, extras.ensembles, extras.notes, d_task)
    if extras.breakdown is not None:
        blocks += breakdown_blocks(extras.breakdown, unit, d_task)
    if study is not None:
        blocks += scaling_blocks(task, study, unit)
    blocks += depth_blocks(task, depth_table(collected.finals, task), unit)

    figures: list[Figure] = []
    # The figures below show the leaderboard's runs (the headline size of a scaling study) only.
    shown = set(finals["run_id"])
    curves = collected.curves[collected.curves["run_id"].isin(shown)]
    predictions = collected.predictions[collected.predictions["run_id"].isin(shown)]
    best_trials = best_trials[best_trials["parent_run_id"].isin(shown)]
    for depth, png in sorted(plots.convergence(curves, task).items()):
        figures.append(
            Figure(
                f"plots/{task}_convergence_depth{depth}.png",
                png,
                f"{task}: validation (solid) and training (dashed) MAE of the refits against epoch, "
                f"{', '.join(plots.network_models(curves.loc[curves['depth'] == depth, 'model']))} at depth {depth}; "
                "mean over runs at each epoch "
                "reached by at least half of them.",
            )
        )
    models = list(summary.loc[summary["task"] == task].sort_values("rank")["model"])
    figures.append(
        Figure(
            f"plots/{task}_parity.png",
            plots.parity(predictions, task, models, unit),
            f"{task}: predicted against true test values of every model, all folds pooled, lowest seed.",
        )
    )
    tuning = plots.tuning_history(best_trials, task)
    if tuning is not None:
        figures.append(
            Figure(
                f"plots/{task}_tuning.png",
                tuning,
                f"{task}: best validation MAE so far against Optuna trial number (COMPLETE trials), mean over studies.",
            )
        )
    figures.append(
        Figure(f"plots/{task}_time.png", plots.times(summary, task), f"{task}: mean wall-clock seconds per model.")
    )
    blocks.extend(figures)
    return blocks


def export_blocks(exports: list[MatbenchExport]) -> list[Block]:
    blocks: list[Block] = [Heading("Matbench results files", 2, "matbench")]
    if not exports:
        blocks.append(Para("No Matbench task in this report: no results file written.", note=True))
        return blocks
    rows = []
    for e in exports:
        for task in e.tasks:
            rows.append([f"matbench/{e.folder}/", e.model, str(e.seed), task, f"{e.mean_mae[task]:.6g}", ""])
        for task, why in sorted(e.skipped.items()):
            rows.append([DASH, e.model, str(e.seed), task, DASH, f"not exported: {why}"])
    blocks.append(
        Para(
            "One Matbench submission folder per model and seed (the contribution guide's results.json.gz and "
            "info.json; gunzip -k results.json.gz gives the file matbench 0.6's MatbenchBenchmark.from_file "
            "loads). Matbench requires all 5 official folds.",
            note=True,
        )
    )
    blocks.append(
        Table(["file", "model", "seed", "task", "mean MAE over folds", "note"], rows, align_right=frozenset({2, 4}))
    )
    return blocks


def provenance_blocks(collected: Collected) -> list[Block]:
    f = collected.finals.sort_values(["task", "model", "train_size", "fold", "seed"])
    rows = [
        [
            r.task, r.model, f"{r.train_size:,}", str(r.fold), str(r.seed),
            _cut(f"{r.test_mae:.6g}", r.refit_stopped == CUT_SHORT), r.refit_stopped or DASH, r.run_id,
            r.model_uri or DASH, r.code_version or DASH, (r.data_sha256 or DASH)[:16], r.preset,
            r.max_train_rows or DASH, r.val_seed or DASH, r.budget or DASH,
        ]
        for r in f.itertuples()
    ]  # fmt: skip
    source = f"tracking URI {collected.tracking_uri}" + (", read back from its export" if collected.from_export else "")
    header = ["task", "model", "train rows", "fold", "seed", "test MAE", "refit stopped", "run id", "MLflow model",
              "code_version", "data sha256", "preset", "max train rows", "val seed", "budget"]  # fmt: skip
    blocks: list[Block] = [
        Heading("Provenance", 2, "provenance"),
        Para(
            f"Every number above is a mean over these MLflow parent runs ({source}). "
            "data sha256 is cut to 16 characters here; the full value is in each task's section and on the run. "
            "The MLflow model of a run takes formulas and predicts in the task's unit: "
            "`mlflow models predict -m <model URI> -i new.csv -t csv --env-manager local` with the store as "
            "`MLFLOW_TRACKING_URI` (runs logged before 2026-12-05 have none).",
            note=True,
        ),
        Table(
            header,
            rows,
            "One row per finished parent run",
            align_right=frozenset({2, 3, 4, 5}),
            collapsed=True,
        ),
    ]
    if (f["refit_stopped"] == CUT_SHORT).any():
        blocks.append(Para(CUT_SHORT_LEGEND, note=True))
    versions = sorted(set(f["code_version"]))
    if len(versions) > 1:
        blocks.append(
            Para(f"Runs come from {len(versions)} code versions: {', '.join(v or DASH for v in versions)}.", note=True)
        )
    if collected.skipped:
        left_out = f"Left out ({len(collected.skipped)} unfinished parent runs): " + "; ".join(collected.skipped)
        blocks.append(Para(left_out, note=True))
    return blocks


def assemble(
    collected: Collected,
    summary: pd.DataFrame,
    ranks: pd.DataFrame,
    comparisons: dict[str, list[PairedComparison]],
    exports: list[MatbenchExport],
    row_comparisons: dict[str, list[RowComparison]] | None = None,
    studies: dict[str, ScalingStudy | None] | None = None,
    extras: dict[str, TaskExtras] | None = None,
) -> list[Block]:
    """The whole report, in reading order."""
    published = load_published()
    published_oqmd = load_published_oqmd()
    best = running_best(collected.trials)
    finals = collected.finals
    # Budgets follow the preset's rule: by model group and training rows (docs/guide/budgets.md "Budgets"), so they
    # differ between families by design; one model with several budgets at one (task, size) would mean mixed rules.
    consistent = bool((finals.groupby(["task", "model", "train_size"])["budget"].nunique() <= 1).all())
    budget = (
        "Every model is tuned with the budget its preset's rule gives its group at that training size (listed per task)"
        if consistent
        else "Warning: some model was tuned with several budgets at one training size (see the task sections)"
    )
    intro = (
        f"{len(finals)} finished parent runs over {finals['task'].nunique()} task(s) and {finals['model'].nunique()} "
        f"model(s), preset {finals['preset'].iloc[0]}. {budget}; each (model, fold, seed, training size) is scored "
        "once on the fold's official test part. ± is the population standard deviation (ddof=0, as Matbench reports "
        "it) over all fold×seed runs. Beside every score: why its refits stopped (refit_stopped)."
    )
    blocks: list[Block] = [Para(intro)]
    if collected.skipped:
        blocks.append(Para(f"{len(collected.skipped)} unfinished parent run(s) left out; see Provenance.", note=True))
    blocks += mean_rank_blocks(ranks, finals["task"].nunique())
    blocks += rank_test_blocks(summary)
    blocks += task_overview_blocks(summary, ranks, published)
    blocks += wall_time_blocks(finals)
    for task in collected.tasks:
        blocks += task_blocks(
            task,
            collected,
            summary,
            comparisons.get(task, []),
            published,
            best,
            (row_comparisons or {}).get(task, []),
            (studies or {}).get(task),
            published_oqmd,
            (extras or {}).get(task),
        )
    blocks += export_blocks(exports)
    blocks += provenance_blocks(collected)
    return blocks
