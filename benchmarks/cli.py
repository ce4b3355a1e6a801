"""Arguments and error handling shared by every command-line entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.errors import BenchError, UsageError

if TYPE_CHECKING:
    from benchmarks.loader import TaskData


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other usage error here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def add_data_arguments(parser: argparse.ArgumentParser, *, task_required: bool = False) -> None:
    """--task or --data-file (with its column flags), --source and --cache-dir."""
    parser.add_argument("--task", required=False, help="a registered task (python -m benchmarks.tasks list)")
    group = parser.add_argument_group("your own data (instead of --task)")
    group.add_argument("--data-file", type=Path, help="CSV or parquet file with a formula and a target column")
    group.add_argument("--formula-column", default="formula")
    group.add_argument("--target-column", default="target")
    group.add_argument("--structure-column", default=None, help="column of CIF strings (optional)")
    group.add_argument("--split-column", default=None, help="column of train/val/test labels (optional)")
    group.add_argument("--split-seed", type=int, default=0,
                       help="seed of the random hold-out, of --cv's shuffle and of --group-by's "
                            "group order")  # fmt: skip
    group.add_argument("--dedupe", choices=("none", "first", "mean"), default="none",
                       help="rows sharing a composition: none = keep all, only count them (default); first = keep "
                            "the first row; mean = one row with the mean target. Applied before splitting")  # fmt: skip
    group.add_argument("--unit", default="", help="unit of the target, for reports")
    splits = parser.add_argument_group("cross-validation (instead of the random hold-out or the official folds)")
    splits.add_argument("--cv", type=int, default=None, metavar="K",
                        help="K folds over all rows (KFold, shuffled with --split-seed, as Matbench); for --data-file, "
                             "or for --task with --group-by")  # fmt: skip
    splits.add_argument("--group-by", choices=("chemsys",), default=None,
                        help="with --cv: every chemical system (set of elements) in one fold (leave-cluster-out); "
                             "a registered task then runs as NAME@chemsysK, apart from its official folds")  # fmt: skip
    parser.add_argument("--source", choices=("archive", "matminer"), default="archive",
                        help="archive: pinned offline archive (default); matminer: official online loader")  # fmt: skip
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="data and feature cache (default $IRNET_BENCH_CACHE or ~/.cache/irnet-bench)")  # fmt: skip


def task_from_args(args: argparse.Namespace) -> TaskData:
    """Load the task the arguments name (a registered task or a --data-file)."""
    from benchmarks.loader import load_task
    from benchmarks.userdata import check_cv, load_data_file, regroup_task

    if args.data_file is not None and args.task:
        raise UsageError("give either --task or --data-file, not both")
    check_cv(args.cv, args.group_by)
    if args.data_file is not None:
        return load_data_file(
            args.data_file,
            formula_column=args.formula_column,
            target_column=args.target_column,
            split_column=args.split_column,
            structure_column=args.structure_column,
            seed=args.split_seed,
            n_folds=args.cv,
            group_by=args.group_by,
            dedupe=args.dedupe,
            unit=args.unit,
        )
    if not args.task:
        raise UsageError("give --task NAME (python -m benchmarks.tasks list) or --data-file PATH")
    if args.cv is not None and args.group_by is None:
        raise UsageError(f"{args.task} has its official folds; --cv on a registered task needs --group-by chemsys "
                         "(an extra grouped split), or drop --cv")  # fmt: skip
    if args.dedupe != "none":
        raise UsageError("--dedupe applies to --data-file; a registered task keeps its published rows")
    task = load_task(args.task, cache_dir=args.cache_dir, source=args.source)
    return regroup_task(task, args.cv, args.group_by, args.split_seed) if args.group_by else task


def main_guard(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; turn a BenchError into one line on stderr and its exit code, Ctrl-C into exit 130."""
    # In a log file (stderr not a terminal) every line carries its time, so silences and stage lengths show.
    timed = "" if sys.stderr.isatty() else "%(asctime)s "
    logging.basicConfig(level=logging.INFO, format=timed + "%(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return main(argv)
    except BenchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; run the same command again to resume where it stopped\n")
        return 130
