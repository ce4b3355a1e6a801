"""What the leaderboard says: the sections, tables and figures, assembled as render blocks."""
from __future__ import annotations

import math
from importlib import resources
from typing import Iterable

import pandas as pd

from reports import plots
from reports.collect import Collected
from reports.matbench_export import MatbenchExport
from reports.render import Block, Figure, Heading, Para, Table
from reports.stats import REFERENCE_MODEL, PairedComparison, running_best

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
DASH = "—"


def load_published() -> pd.DataFrame:
    """The published Matbench v0.1 figures copied into this package (see the file's source line)."""
    with resources.files("reports").joinpath(PUBLISHED_FILE).open("r", encoding="utf-8") as handle:
        # Strings, so each figure is shown exactly as published ("0.0670" stays "0.0670").
        return pd.read_csv(handle, comment="#", dtype=str, keep_default_na=False).set_index("task")


def _decimals(values: Iterable[float], significant: int = 4) -> int:
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
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


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


def leaderboard_table(task: str, summary: pd.DataFrame, published: pd.DataFrame, composition_only: bool) -> Table:
    """Ranked models of one task, then the published reference rows where the task has them."""
    rows_df = summary[summary["task"] == task].sort_values(["rank", "model"])
    d_mae = _decimals(rows_df["mae_mean"])
    d_rmse = _decimals(rows_df["rmse_mean"])
    rows: list[list[str]] = []
    for r in rows_df.itertuples():
        rows.append(
            [
                str(r.rank),
                r.model,
                _pm(r.mae_mean, r.mae_std, d_mae),
                _pm(r.rmse_mean, r.rmse_std, d_rmse),
                _pm(r.r2_mean, r.r2_std, 3),
                f"{r.n_runs} ({r.n_folds}×{r.n_seeds})",
                r.depth or DASH,
                _seconds(r.train_seconds),
                _seconds(r.tuning_seconds),
            ]
        )
    muted: set[int] = set()
    if task in published.index:
        ref = published.loc[task]
        entries = [(f"{ref['best_model']}, best on leaderboard", ref["best_value"])]
        entries += [(name, ref[col]) for col, name in PUBLISHED_MODELS.items() if ref[col]]
        for name, value in sorted(entries, key=lambda e: float(e[1])):
            muted.add(len(rows))
            label = f"{name} ({PUBLISHED_TAG}; {ref['input']} input)"
            rows.append([DASH, label, value, DASH, DASH, "5 official folds", DASH, DASH, DASH])
    caption = f"{task}: test scores, mean ± std over folds and seeds"
    if composition_only:
        caption += " (composition-only)"
    columns = ["rank", "model", "MAE", "RMSE", "R²", "runs (folds×seeds)", "depth", "refit s", "tuning s"]
    return Table(columns, rows, caption, frozenset(muted), frozenset({0, 2, 3, 4, 7, 8}))


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
                _p(c.p_value) if c.tested else c.note,
                _p(c.p_holm) if c.tested else DASH,
            ]
        )
    return Table(
        ["baseline", "pairs", "IRNet W/T/L (pairs)", "IRNet W/T/L (folds)", "mean Δ MAE", "Wilcoxon p", "p (Holm)"],
        rows,
        f"{task}: IRNet against each baseline, paired by (fold, seed)",
        align_right=frozenset({1, 4, 5, 6}),
    )


def task_blocks(
    task: str,
    collected: Collected,
    summary: pd.DataFrame,
    comparisons: list[PairedComparison],
    published: pd.DataFrame,
    best_trials: pd.DataFrame,
) -> list[Block]:
    finals = collected.finals[collected.finals["task"] == task]
    composition_only = bool(finals["composition_only"].iloc[0])
    unit = next((u for u in finals["unit"] if u), "")
    title = f"{task} (composition-only)" if composition_only else task
    blocks: list[Block] = [Heading(title, 2, task)]
    facts = (
        f"Unit: {unit or 'not recorded'}. {finals['run_id'].size} finished runs; folds "
        f"{', '.join(map(str, sorted(finals['fold'].unique())))}; seeds {', '.join(map(str, sorted(finals['seed'].unique())))}; "
        f"preset {finals['preset'].iloc[0]}; data sha256 {finals['data_sha256'].iloc[0] or 'not recorded'}."
    )
    cap = finals["max_train_rows"].iloc[0]
    if cap:
        facts += f" Training rows per fold: {'all' if cap == 'all' else f'at most {cap}'}."
    budgets = sorted(set(finals["budget"]))
    if budgets and budgets != [""]:
        facts += f" Tuning budget per study (trials / tuning s / s per fit): {', '.join(b or DASH for b in budgets)}."
    blocks.append(Para(facts))
    if len(budgets) > 1:
        per_model = "; ".join(f"{m}: {', '.join(sorted(set(g['budget'])))}" for m, g in finals.groupby("model"))
        blocks.append(Para(f"Warning: the models of this task were not tuned with one budget ({per_model}).", note=True))
    if composition_only:
        blocks.append(
            Para(
                "Composition-only: this is a structure task run from its formulas alone (composition_only=true), so "
                "its scores are not comparable with structure-based published models.",
                note=True,
            )
        )
    blocks.append(leaderboard_table(task, summary, published, composition_only))
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
                f"Rows marked \"{PUBLISHED_TAG}\" (grey in the HTML) are mean MAE over the 5 official Matbench "
                f"folds as published ({PUBLISHED_SOURCE}); copied in reports/{PUBLISHED_FILE}. They are comparable "
                "with ours only when our runs cover all 5 folds with full training data.",
                note=True,
            )
        )
    if comparisons:
        d = _decimals(summary.loc[summary["task"] == task, "mae_mean"])
        blocks.append(comparison_table(task, comparisons, d))
        blocks.append(
            Para(
                "W/T/L counts IRNet wins/ties/losses in test MAE. Mean Δ MAE is baseline minus IRNet (positive: IRNet "
                "better). Wilcoxon signed-rank (two-sided, scipy) on the paired test MAEs where there are at least 5 "
                "pairs; Holm-adjusted over this task's baselines. Runs of one fold with different seeds share test "
                "rows, so pairs are not fully independent.",
                note=True,
            )
        )
    elif REFERENCE_MODEL not in set(finals["model"]):
        blocks.append(Para("IRNet has no finished runs on this task: no comparison.", note=True))

    figures: list[Figure] = []
    for depth, png in sorted(plots.convergence(collected.curves, task).items()):
        figures.append(
            Figure(
                f"plots/{task}_convergence_depth{depth}.png",
                png,
                f"{task}: validation (solid) and training (dashed) MAE of the refits against epoch, IRNet, SRNet and "
                f"plain at depth {depth}; mean over runs at each epoch reached by at least half of them.",
            )
        )
    models = list(summary.loc[summary["task"] == task].sort_values("rank")["model"])
    figures.append(
        Figure(
            f"plots/{task}_parity.png",
            plots.parity(collected.predictions, task, models, unit),
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
    figures.append(Figure(f"plots/{task}_time.png", plots.times(summary, task), f"{task}: mean wall-clock seconds per model."))
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
            rows.append([f"matbench/{e.name}.json(.gz)", e.model, str(e.seed), task, f"{e.mean_mae[task]:.6g}", ""])
        for task, why in sorted(e.skipped.items()):
            rows.append([DASH, e.model, str(e.seed), task, DASH, f"not exported: {why}"])
    blocks.append(
        Para(
            "One file per model and seed in matbench 0.6's results format (MatbenchBenchmark.from_file loads the "
            ".json; the .json.gz is the same bytes gzipped, for a submission). Matbench requires all 5 official folds.",
            note=True,
        )
    )
    blocks.append(Table(["file", "model", "seed", "task", "mean MAE over folds", "note"], rows, align_right=frozenset({2, 4})))
    return blocks


def provenance_blocks(collected: Collected) -> list[Block]:
    f = collected.finals.sort_values(["task", "model", "fold", "seed"])
    rows = [
        [
            r.task, r.model, str(r.fold), str(r.seed), f"{r.test_mae:.6g}", r.run_id, r.code_version or DASH,
            (r.data_sha256 or DASH)[:16], r.preset, r.max_train_rows or DASH, r.val_seed or DASH, r.budget or DASH,
        ]
        for r in f.itertuples()
    ]  # fmt: skip
    blocks: list[Block] = [
        Heading("Provenance", 2, "provenance"),
        Para(
            f"Every number above is a mean over these MLflow parent runs (tracking URI {collected.tracking_uri}). "
            "data sha256 is cut to 16 characters here; the full value is in each task's section and on the run.",
            note=True,
        ),
        Table(
            ["task", "model", "fold", "seed", "test MAE", "run id", "code_version", "data sha256", "preset",
             "max train rows", "val seed", "budget"],  # fmt: skip
            rows,
            "One row per finished parent run",
            align_right=frozenset({2, 3, 4}),
            collapsed=True,
        ),
    ]
    versions = sorted(set(f["code_version"]))
    if len(versions) > 1:
        blocks.append(Para(f"Runs come from {len(versions)} code versions: {', '.join(v or DASH for v in versions)}.", note=True))
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
) -> list[Block]:
    """The whole report, in reading order."""
    published = load_published()
    best = running_best(collected.trials)
    finals = collected.finals
    equal_budget = bool((finals.groupby("task")["budget"].nunique() <= 1).all())
    budget = (
        "Within each task every model is tuned with the same budget"
        if equal_budget
        else "Warning: not every task's models were tuned with one budget (see the task sections)"
    )
    intro = (
        f"{len(finals)} finished parent runs over {finals['task'].nunique()} task(s) and {finals['model'].nunique()} "
        f"model(s), preset {finals['preset'].iloc[0]}. {budget}; each (model, fold, seed) is scored once on the "
        "fold's official test part. ± is the population standard deviation (ddof=0, as Matbench reports it) over "
        "all fold×seed runs."
    )
    blocks: list[Block] = [Para(intro)]
    if collected.skipped:
        blocks.append(Para(f"{len(collected.skipped)} unfinished parent run(s) left out; see Provenance.", note=True))
    blocks += mean_rank_blocks(ranks, finals["task"].nunique())
    for task in collected.tasks:
        blocks += task_blocks(task, collected, summary, comparisons.get(task, []), published, best)
    blocks += export_blocks(exports)
    blocks += provenance_blocks(collected)
    return blocks
