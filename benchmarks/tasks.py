"""The data command: ``python -m benchmarks.tasks list | show NAME | fetch NAME | splits NAME --out FILE |
featurize NAME | duplicates [NAME ...]``.

``splits`` also takes ``--data-file F`` and ``--cv K [--group-by chemsys]`` (the folds a run would use).
``duplicates`` counts, per task and fold, test rows whose composition also occurs in the fold's training part.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks import archive
from benchmarks.atomic import atomic_write
from benchmarks.cli import ArgumentParser, add_data_arguments, main_guard, task_from_args
from benchmarks.errors import UsageError
from benchmarks.features import FEATURIZERS
from benchmarks.loader import TaskData, load_task
from benchmarks.paths import cache_dir
from benchmarks.registry import TASKS, TaskSpec, get_task


def _split_text(spec: TaskSpec) -> str:
    return {"fixed": "fixed train/val/test", "matbench": "official 5-fold"}.get(spec.split_scheme, spec.split_scheme)


def _input_text(spec: TaskSpec) -> str:
    return "composition (structure task, formula-only here)" if spec.composition_only else spec.input_kind


def list_tasks() -> str:
    """A table: name, rows, input, target and unit, metric, splits."""
    header = ("name", "rows", "input", "target [unit]", "metric", "splits")
    rows = [
        (s.name, f"{s.n_rows:,}", "composition*" if s.composition_only else s.input_kind,
         f"{s.property} [{s.unit}]" if s.unit else s.property, s.metric, _split_text(s))
        for s in TASKS.values()
    ]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("* structure task; the offline archive has formulas only, so results are composition-only")
    return "\n".join(lines)


def show_task(spec: TaskSpec) -> str:
    cached = all(archive.is_cached("crabnet", f) for f in spec.files)
    lines = [
        f"name:        {spec.name}",
        f"property:    {spec.property}" + (f" [{spec.unit}]" if spec.unit else ""),
        f"task type:   {spec.task_type} (metric {spec.metric})",
        f"input:       {_input_text(spec)}",
        f"rows:        {spec.n_rows:,}",
        f"splits:      {_split_text(spec)}",
        f"source:      {spec.description}",
        f"files:       {', '.join(spec.files)}",
        f"cached:      {'yes' if cached else 'no'} ({cache_dir()})",
    ]
    return "\n".join(lines)


def splits_json(task: TaskData) -> dict[str, dict[str, list[str]]]:
    """``{"fold_0": {"train": [ids], "test": [ids]}, ...}``; a fixed validation part is listed as "val"."""
    out = {}
    for i, fold in enumerate(task.folds):
        entry = {"train": task.ids[fold.train].tolist(), "test": task.ids[fold.test].tolist()}
        if fold.val is not None:
            entry["val"] = task.ids[fold.val].tolist()
        out[f"fold_{i}"] = entry
    return out


def duplicates_table(tasks: list[TaskData]) -> str:
    """Per task: rows, rows repeating an earlier row's composition, and per fold the test rows whose
    composition is also among the fold's training (and validation) rows."""
    from benchmarks.compositions import composition_keys, duplicate_rows, train_test_duplicates

    lines = ["task  rows  repeated-composition rows  test rows with a training composition, per fold (of test rows)"]
    for task in tasks:
        keys = composition_keys(task.formulas)
        per_fold = [f"{train_test_duplicates(keys, f)}/{len(f.test)}" for f in task.folds]
        lines.append(f"{task.spec.name}  {task.n_rows}  {duplicate_rows(keys)}  {' '.join(per_fold)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks.tasks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="all tasks")
    for name, text in (("show", "one task"), ("fetch", "download, verify and cache a task's data")):
        p = sub.add_parser(name, help=text)
        p.add_argument("name")
        p.add_argument("--cache-dir", type=Path, default=None)
    p = sub.add_parser("splits", help="write a task's folds as JSON ids")
    p.add_argument("name", nargs="?")
    p.add_argument("--out", type=Path, required=True)
    add_data_arguments(p)
    p = sub.add_parser("duplicates", help="compositions shared by the training and test parts of each fold")
    p.add_argument("names", nargs="*", help="registered tasks (default: every regression task)")
    p.add_argument("--cache-dir", type=Path, default=None)
    p = sub.add_parser("featurize", help="compute and cache a task's features (all rows)")
    p.add_argument("name")
    p.add_argument("--featurizer", choices=FEATURIZERS, default="magpie")
    p.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.command == "list":
        print(list_tasks())
    elif args.command == "show":
        print(show_task(get_task(args.name)))
    elif args.command == "fetch":
        spec = get_task(args.name)
        started = time.perf_counter()
        task = load_task(spec, cache_dir=args.cache_dir)
        print(f"{spec.name}: {task.n_rows:,} rows verified in {cache_dir(args.cache_dir)} "
              f"({time.perf_counter() - started:.1f} s); data sha256 {task.sha256}")  # fmt: skip
    elif args.command == "splits":
        if args.name and (args.task or args.data_file):
            raise UsageError("give the task either as NAME or with --task/--data-file, not both")
        args.task = args.task or args.name
        task = task_from_args(args)
        with atomic_write(args.out, "w") as handle:
            json.dump(splits_json(task), handle)
        print(f"wrote {len(task.folds)} fold(s) of {task.spec.name} to {args.out}")
    elif args.command == "duplicates":
        names = args.names or [n for n, spec in TASKS.items() if spec.task_type == "regression"]
        print(duplicates_table([load_task(get_task(n), cache_dir=args.cache_dir) for n in names]))
    elif args.command == "featurize":
        from benchmarks.features import featurize

        task = load_task(args.name, cache_dir=args.cache_dir)
        started = time.perf_counter()
        features = featurize(task, args.featurizer, cache_dir=args.cache_dir)
        seconds = time.perf_counter() - started
        print(f"{task.spec.name}: {int(features.valid.sum()):,} of {task.n_rows:,} rows featurised with "
              f"{args.featurizer} ({len(features.names)} features) in {seconds:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
