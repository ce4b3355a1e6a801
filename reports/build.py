"""Build the leaderboard from a benchmark's MLflow store, or from an export of one.

    python -m reports.build --tracking-uri URI [--task NAME ...] [--preset NAME] --out DIR
    python -m reports.build --export DIR --out DIR

An export (:mod:`reports.export`) gives the same report as the store it was made from; only the provenance's
line naming the source says it was read back from the export.

Writes into DIR: leaderboard.md (figures linked from plots/), leaderboard.html (self-contained, figures
embedded), leaderboard.csv (long table: task, model, fold, seed, preset, metric, value, train/inference/tuning seconds,
device, run_id, train_size, refit_stopped), plots/*.png (with a scaling and a compute figure per task whose runs sit
at two or more training sizes, and a figure of the MAE by number of elements per task whose formulas are in the
pinned archive), ensembles.csv (where the runs give post-hoc ensembles, :mod:`reports.ensembles`: one row per
ensemble with its members, weights, validation and test scores) and a Matbench submission folder per model (an
ensemble among them) and seed, matbench/matbench_v0.1_irnet-bench-<model>-seed<k>/ (results.json.gz, info.json).
Beside the suite's runs a task's section shows the published models' own test predictions where the runs used the
whole training part (:mod:`reports.references`) and where the errors are (:mod:`reports.breakdown`). Every file is
written atomically. Everything is computed before the first
file is written, so empty or inconsistent input leaves DIR untouched: one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.atomic import atomic_write_bytes
from benchmarks.cli import ArgumentParser
from benchmarks.errors import BenchError, UsageError
from benchmarks.paths import check_out_dir, default_out_dir, make_out_dir
from reports import breakdown, declared, document, render, scaling, stats, tables
from reports.collect import Collected, collect
from reports.ensembles import SEED_AVERAGE, EnsembleSet, build_ensembles, ensemble_runs, ensembles_table
from reports.matbench_export import MatbenchExport, build_exports
from reports.references import ReferenceSet, best_single, build_references, compare_beside

DEFAULT_TRACKING_URI = f"sqlite:///{default_out_dir() / 'mlflow.db'}"  # where `python -m benchmarks.run` writes
TITLE = "IRNet benchmark leaderboard"
MANIFEST = ".report-files.json"  # what the last build wrote, so the next one can remove what it no longer writes


@dataclass(frozen=True)
class Report:
    """Everything a build computed, before anything is written."""

    collected: Collected
    summary: pd.DataFrame
    ranks: pd.DataFrame
    comparisons: dict[str, list[stats.PairedComparison]]
    row_comparisons: dict[str, list[stats.RowComparison]]
    studies: dict[str, scaling.ScalingStudy | None]
    exports: list[MatbenchExport]
    files: dict[str, bytes]  # path relative to the output folder -> content
    ensembles: EnsembleSet = field(default_factory=EnsembleSet)
    references: ReferenceSet = field(default_factory=ReferenceSet)
    extras: dict[str, document.TaskExtras] | None = None


def make_report(tracking_uri: str, tasks: list[str] | None = None, preset: str | None = None) -> Report:
    """Read the store and compute every output in memory; raises ReportInputError on bad input."""
    return report_of(collect(tracking_uri, tasks, preset))


def report_of(collected: Collected) -> Report:
    """Every output of the report on ``collected`` (read from a store or an export), in memory."""
    declared.remember(collected.finals)  # figures draw each model as its runs declared it
    # Leaderboards, ranks, fold-level tests and Matbench files: each task at its headline training size.
    headline = stats.at_headline_size(collected.finals)
    summary = stats.summarize(headline)
    ranks = stats.mean_ranks(summary)
    comparisons = {task: stats.compare_task(headline, task) for task in collected.tasks}
    row_comparisons = {task: stats.compare_rows(collected.predictions, task) for task in collected.tasks}
    studies = {
        task: scaling.scaling_study(collected.finals, task, predictions=collected.predictions)
        for task in collected.tasks
    }
    exports = build_exports(headline, collected.predictions[collected.predictions["run_id"].isin(headline["run_id"])])
    references = build_references(collected)
    ensembles = build_ensembles(collected)
    sizes = {str(task): int(size) for task, size in headline.groupby("task")["train_size"].first().items()}
    extras = {task: task_extras(collected, summary, references, ensembles, task, sizes[task]) for task in sizes}
    # Ensembles of one seed that cover a Matbench task are submissions of their own (a seed average has no seed).
    at_headline = [e for e in ensembles.ensembles if e.train_size == sizes.get(e.task) and e.kind != SEED_AVERAGE]
    if at_headline:
        ensemble_finals = ensemble_runs(at_headline, collected.finals)
        exports += build_exports(ensemble_finals, ensembles.predictions)
    blocks = document.assemble(collected, summary, ranks, comparisons, exports, row_comparisons, studies, extras)

    files: dict[str, bytes] = {}
    for block in blocks:
        if isinstance(block, render.Figure):
            files[block.filename] = block.png
    for export in exports:
        if export.tasks:
            files.update({f"matbench/{path}": data for path, data in export.files().items()})
    buf = io.StringIO()
    tables.long_table(collected.finals).to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    files["leaderboard.csv"] = buf.getvalue().encode("utf-8")
    if ensembles.ensembles:
        buf = io.StringIO()
        ensembles_table(ensembles.ensembles).to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
        files["ensembles.csv"] = buf.getvalue().encode("utf-8")
    files["leaderboard.md"] = render.to_markdown(TITLE, blocks).encode("utf-8")
    files["leaderboard.html"] = render.to_html(TITLE, blocks).encode("utf-8")
    return Report(collected, summary, ranks, comparisons, row_comparisons, studies, exports, files, ensembles,
                  references, extras)  # fmt: skip


def task_extras(
    collected: Collected,
    summary: pd.DataFrame,
    references: ReferenceSet,
    ensembles: EnsembleSet,
    task: str,
    size: int,
) -> document.TaskExtras:
    """What ``task``'s section shows beside its runs at its leaderboard's training size ``size``: the ensembles and
    reference rows there, each against IRNet and the best of the suite row by row, and where the errors are."""
    predictions = collected.predictions[(collected.predictions["task"] == task)
                                        & (collected.predictions["train_size"] == size)]  # fmt: skip
    # Rounded to float32 as an export keeps them: a report from a store and one from its export say the same.
    predictions = predictions.assign(
        **{c: np.asarray(predictions[c], dtype=np.float32).astype(np.float64) for c in ("y_true", "y_pred")}
    )
    ours = {}
    best = best_single(summary, task)
    for name in dict.fromkeys([stats.REFERENCE_MODEL, best]):
        if name is not None and (predictions["model"] == name).any():
            ours[name] = predictions[predictions["model"] == name]
    reference_rows = references.of(task, size)
    task_ensembles = ensembles.of(task, size)
    ensemble_rows = ensembles.predictions[ensembles.predictions["run_id"].isin({e.run_id for e in task_ensembles})]
    others = [(m, reference_rows[reference_rows["model"] == m]) for m in references.models(task, size)]
    names = sorted({e.name for e in task_ensembles}, key=lambda n: (n.endswith(SEED_AVERAGE), n))
    others += [(n, ensemble_rows[ensemble_rows["model"] == n]) for n in names]
    ranked = list(summary.loc[summary["task"] == task].sort_values(["rank", "model"])["model"])
    models = breakdown.models_in_order(predictions, ranked, ensemble_rows, reference_rows)
    return document.TaskExtras(
        ensembles=task_ensembles,
        references=reference_rows,
        beside=compare_beside(task, size, ours, others),
        breakdown=breakdown.breakdown(task, size, models, breakdown.element_counts(task)),
        notes=ensembles.notes.get(task, ()),
    )


def write_report(report: Report, out: Path) -> list[Path]:
    """Write every file atomically; the HTML and Markdown last, so they never point at missing figures.

    Files an earlier build wrote into ``out`` (listed in its manifest) that this build does not write are
    removed, so a stale figure or Matbench file never sits beside a fresh leaderboard. Nothing else is touched.
    """
    manifest = out / MANIFEST
    previous: list[str] = []
    if manifest.is_file():
        try:
            previous = list(json.loads(manifest.read_text())["files"])
        except (ValueError, KeyError, TypeError):
            previous = []  # unreadable: leave old files alone rather than guess
    order = sorted(report.files, key=lambda name: (name.startswith("leaderboard."), name))
    written = [atomic_write_bytes(out / name, report.files[name]) for name in order]
    atomic_write_bytes(manifest, json.dumps({"files": order}, indent=1).encode("utf-8"))
    for name in set(previous) - set(order):
        stale = out / name
        # Only plain relative names this module could have written; never follow "..".
        if ".." not in Path(name).parts and stale.is_file():
            stale.unlink()
    return written


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m reports.build", description=__doc__.split("\n")[0])
    source = parser.add_argument_group("the runs to report (one of)")
    source.add_argument("--tracking-uri", metavar="URI",
                        help=f"MLflow store to read (benchmarks.run writes {DEFAULT_TRACKING_URI})")  # fmt: skip
    source.add_argument("--export", type=Path, metavar="DIR", help="an export of a store (python -m reports.export)")
    parser.add_argument(
        "--task", action="append", metavar="NAME", help="report only this task (repeatable); default all"
    )
    parser.add_argument("--preset", help="report only runs of this preset (required when the store holds several)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    return parser.parse_args(argv)


def _collected(args: argparse.Namespace) -> Collected:
    """What the arguments name: the store, or an export (which is one selection already)."""
    if (args.tracking_uri is None) == (args.export is None):
        raise UsageError(
            "give either --tracking-uri URI (an MLflow store, e.g. "
            f"{DEFAULT_TRACKING_URI}) or --export DIR (an export of one), not both or neither"
        )
    if args.export is None:
        return collect(args.tracking_uri, args.task, args.preset)
    if args.task or args.preset:
        raise UsageError("--task and --preset select runs of a store; an export holds one selection "
                         "(export another with python -m reports.export --task ... --preset ...)")  # fmt: skip
    from reports.export import load_export

    return load_export(args.export)


def run(argv: list[str] | None = None) -> Report:
    """The command without its error handling: parse, compute, write; returns what it wrote."""
    args = parse_args(argv)
    check_out_dir(args.out)  # before the store is read: a folder that cannot be made is one line
    report = report_of(_collected(args))
    write_report(report, make_out_dir(args.out))
    finals = report.collected.finals
    print(
        f"reports.build: {len(finals)} runs, {finals['task'].nunique()} task(s), "
        f"{finals['model'].nunique()} model(s) -> "
        f"{args.out}/leaderboard.{{md,html,csv}} and {len(report.files) - 3} more file(s)"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point: a BenchError (empty or inconsistent store, bad arguments) is one line on stderr."""
    try:
        run(argv)
    except BenchError as exc:
        print(f"reports.build: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
