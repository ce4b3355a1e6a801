"""Run the benchmark: tune every model with the same budget, refit, score each fold's test part once.

    python -m benchmarks.run --task matbench_steels --preset smoke
    python -m benchmarks.run --task formation_energy                  # preset quick (~15 min on a laptop CPU)
    python -m benchmarks.run --task formation_energy --preset paper --device cuda

Results go to MLflow (default: sqlite in --out) and Optuna (default: sqlite in --out). Rerunning the same
command resumes: finished runs are skipped, interrupted studies continue without repeating a finished trial.
A second process started with the same command and --storage joins the same studies.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from benchmarks.cli import ArgumentParser, add_data_arguments, main_guard, task_from_args
from benchmarks.contract import resolve_device
from benchmarks.errors import UsageError
from benchmarks.features import FEATURIZERS
from benchmarks.paths import default_out_dir
from studies.presets import DEFAULT_PRESET, PRESETS, TrialBudget, get_preset
from studies.registry import BENCHMARK_MODELS, MODEL_NAMES, parse_model_list

EXIT_SOME_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m benchmarks.run",
        description=(
            "Tune IRNet, SRNet, the plain deep network, random forest, XGBoost and LightGBM with the same "
            "budget on a task's official splits, score each fold's test part once, and record it all in MLflow."
        ),
    )
    add_data_arguments(parser)
    parser.add_argument("--models", default=None,
                        help=f"comma-separated (default: {','.join(BENCHMARK_MODELS)}); known: {', '.join(MODEL_NAMES)}")  # fmt: skip
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=tuple(PRESETS),
                        help="smoke: CI minutes; quick: laptop (default); paper: full data, GPU")  # fmt: skip
    parser.add_argument("--folds", default=None, help="comma-separated fold numbers (default: the preset's, i.e. all)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
    parser.add_argument("--trials", type=int, default=None, help="total finished trials per study (default: preset)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="tuning seconds per study: summed trial time, equal for every model (default: preset)")  # fmt: skip
    parser.add_argument("--fit-timeout", type=float, default=None, help="time limit of each fit in seconds (default: preset)")
    parser.add_argument("--max-train-rows", type=int, default=None,
                        help="cap on training rows per fold, validation in proportion; 0 = all (default: preset)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (networks; trees run on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per model (default: all cores available)")
    parser.add_argument("--featurizer", default="magpie", help="magpie (default, IRNet's 145 attributes), elemnet, ward2017")
    parser.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///OUT/optuna.db)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///OUT/mlflow.db)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {default_out_dir()})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _int_list(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise UsageError(f"{flag} is empty")
    if len(set(values)) != len(values):
        raise UsageError(f"{flag} repeats a value: {text!r}")
    if any(v < 0 for v in values):
        raise UsageError(f"{flag} takes non-negative numbers, got {text!r}")
    return values


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()

    # 1. Arguments alone (cheap, before touching any store or data).
    models = tuple(parse_model_list(args.models))
    preset = get_preset(args.preset)
    folds_arg = _int_list(args.folds, "--folds")
    seeds = _int_list(args.seeds, "--seeds") or preset.seeds
    if args.max_train_rows is not None and args.max_train_rows < 0:
        raise UsageError(f"--max-train-rows must be >= 0 (0 = all rows), got {args.max_train_rows}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    budget = TrialBudget(
        n_trials=args.trials if args.trials is not None else preset.budget.n_trials,
        tuning_seconds=args.timeout if args.timeout is not None else preset.budget.tuning_seconds,
        fit_seconds=args.fit_timeout if args.fit_timeout is not None else preset.budget.fit_seconds,
    )
    max_train_rows = preset.max_train_rows
    if args.max_train_rows is not None:
        max_train_rows = args.max_train_rows or None
    preset = preset.with_changes(budget=budget, max_train_rows=max_train_rows)
    if args.featurizer not in FEATURIZERS:
        raise UsageError(f"unknown featurizer {args.featurizer!r}; use one of {', '.join(FEATURIZERS)}")
    device = resolve_device(args.device)
    threads = args.threads or _available_cores()

    # 2. The stores: reachable before any work.
    from studies.tracking import check_tracking_uri, default_storage_url, default_tracking_uri
    from studies.tuning import make_storage

    out_dir = (args.out or default_out_dir()).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or default_storage_url(out_dir)
    tracking_uri = args.tracking_uri or default_tracking_uri(out_dir)
    with _exclusive(out_dir / ".stores.lock"):  # two processes starting together must not both create the DBs
        check_tracking_uri(tracking_uri)
        make_storage(storage_url)

    # 3. The data, and what depends on it (fold numbers), then the existing runs' settings.
    task = task_from_args(args)
    n_folds = len(task.folds)
    folds = folds_arg if folds_arg is not None else (preset.folds or tuple(range(n_folds)))
    bad = [f for f in folds if f >= n_folds]
    if bad:
        raise UsageError(f"{task.spec.name} has folds 0..{n_folds - 1}; fold {bad[0]} does not exist")

    from studies.protocol import RunPlan, check_plan, format_leaderboard, leaderboard, run_benchmark

    plan = RunPlan(
        task=task,
        models=models,
        folds=tuple(folds),
        seeds=tuple(seeds),
        preset=preset,
        out_dir=out_dir,
        storage_url=storage_url,
        tracking_uri=tracking_uri,
        device=device,
        threads=threads,
        featurizer=args.featurizer,
        cache_dir=args.cache_dir,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    check_plan(plan)
    _set_torch_threads(threads)

    # 4. The work.
    outcome = run_benchmark(plan)
    board = leaderboard(outcome.results, models=models)
    title = (
        f"{plan.task_name}: preset {preset.name}, {len(plan.folds)} fold(s) x {len(plan.seeds)} seed(s), "
        f"{budget.n_trials} trials / {budget.tuning_seconds or 'unlimited'} s tuning per model; "
        f"test MAE mean ± std over folds and seeds"
    )
    print(format_leaderboard(board, title=title, unit=str(task.spec.unit)))
    print(f"results: {out_dir / f'results_{plan.task_name}_{preset.name}.csv'}; MLflow: {tracking_uri}")
    for job in outcome.failed:
        print(f"FAILED {job.key.run_name}: {job.message} (rerun the same command to retry)", file=sys.stderr)
    return EXIT_SOME_FAILED if outcome.failed else 0


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock_path`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _set_torch_threads(threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def _quiet_libraries() -> None:
    """Our progress bars and leaderboard are the output; the libraries' INFO chatter is not."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow resets its logger's level on import
    for name in ("mlflow", "alembic", "optuna", "matminer", "pymatgen", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass


if __name__ == "__main__":
    raise SystemExit(main_guard(main))
