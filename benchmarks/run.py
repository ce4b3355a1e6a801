"""Run the benchmark: tune every model with the same budget, refit, score each fold's test part once.

    python -m benchmarks.run --task matbench_steels --preset smoke
    python -m benchmarks.run --task formation_energy                  # preset quick (~15 min on a laptop CPU)
    python -m benchmarks.run --task formation_energy --preset paper --device cuda
    python -m benchmarks.run --task formation_energy --train-sizes 1000,3000,10000,30000,all   # scaling study
    python -m benchmarks.run --task matbench --preset smoke       # every Matbench regression task, one by one

Results go to MLflow (default: sqlite in --out) and Optuna (default: sqlite in --out). Rerunning the same
command resumes: finished runs are skipped, interrupted studies continue without repeating a finished trial.
A second process started with the same command and --storage joins the same studies.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.cli import ArgumentParser, add_data_arguments, main_guard, task_from_args
from benchmarks.contract import resolve_device
from benchmarks.errors import BenchError, UsageError
from benchmarks.features import FEATURIZERS
from benchmarks.paths import check_out_dir, default_out_dir, make_out_dir
from studies.presets import DEFAULT_PRESET, PRESETS, TrialBudget, get_preset
from studies.registry import BENCHMARK_MODELS, parse_model_list

if TYPE_CHECKING:
    from benchmarks.loader import TaskData
    from studies.plan import RunPlan

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
                        help=f"comma-separated registered models (default: {','.join(BENCHMARK_MODELS)}); an unknown "
                             "name lists them all")  # fmt: skip
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=tuple(PRESETS),
                        help="smoke: CI minutes; quick: laptop (default); paper: full data, GPU")  # fmt: skip
    parser.add_argument("--folds", default=None, help="comma-separated fold numbers (default: the preset's, i.e. all)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
    parser.add_argument("--trials", type=int, default=None, help="total finished trials per study (default: preset)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="tuning seconds per study: summed trial time, equal for every model "
                             "(default: preset)")  # fmt: skip
    parser.add_argument(
        "--fit-timeout", type=float, default=None, help="time limit of each fit in seconds (default: preset)"
    )
    parser.add_argument("--max-train-rows", type=int, default=None,
                        help="cap on training rows per fold, validation in proportion; 0 = all "
                             "(default: preset)")  # fmt: skip
    parser.add_argument("--train-sizes", default=None,
                        help="scaling study: increasing training-row counts, e.g. 1000,3000,10000,all (all = the "
                             "whole training part); each size is a full run, nested subsamples, same test "
                             "set")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (networks; trees run on CPU)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads per model (default: all cores available)"
    )
    parser.add_argument(
        "--featurizer", default="magpie", help="magpie (default), magpie-matminer (reference), elemnet, ward2017"
    )
    parser.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///OUT/optuna.db)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///OUT/mlflow.db)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {default_out_dir()})")
    parser.add_argument("--workers", type=int, default=1,
                        help="local worker processes sharing the studies (one GPU each where several are visible); "
                             "more workers on other machines join with the same command and --storage")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--worker-of-launcher", action="store_true", help=argparse.SUPPRESS)
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


ALL_ROWS = "all"
MIN_VAL_ROWS = 10  # validation rows a study needs for early stopping and tuning to mean anything


def parse_train_sizes(text: str | None) -> tuple[int | None, ...]:
    """``"1000,3000,all"`` -> ``(1000, 3000, None)``: positive, strictly increasing, ``all`` (None) only
    last. UsageError (exit 2) naming the problem otherwise. None or empty text -> ``()``."""
    if text is None:
        return ()
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise UsageError("--train-sizes is empty; give sizes such as 1000,3000,10000,all")
    sizes: list[int | None] = []
    for part in parts:
        if part.lower() == ALL_ROWS:
            sizes.append(None)
            continue
        try:
            size = int(part.replace("_", ""))
        except ValueError:
            raise UsageError(f"--train-sizes takes whole numbers and 'all' separated by commas, got {part!r}") from None
        if size <= 0:
            raise UsageError(f"--train-sizes: size {size} must be a positive number of training rows")
        sizes.append(size)
    if None in sizes[:-1]:
        raise UsageError("--train-sizes: 'all' must be the last size (sizes go from small to large)")
    numbers = [s for s in sizes if s is not None]
    for before, after in itertools.pairwise(numbers):
        if after == before:
            raise UsageError(f"--train-sizes repeats size {after}")
        if after < before:
            raise UsageError(f"--train-sizes must increase: {after} comes after {before}")
    return tuple(sizes)


def check_train_sizes(sizes: tuple[int | None, ...], task: TaskData) -> None:
    """Refuse sizes the task cannot give (before any work): larger than the training part of a fold, equal
    to it and also 'all', or so small that the validation rows in proportion fall below MIN_VAL_ROWS."""
    from benchmarks.loader import fold_rows, full_training_size

    full = full_training_size(task)
    numbers = [s for s in sizes if s is not None]
    for size in numbers:
        if size > full:
            raise UsageError(f"--train-sizes: size {size} is larger than the training part of {task.spec.name} "
                             f"({full} rows); use 'all' for every training row")  # fmt: skip
    if numbers and numbers[-1] == full and None in sizes:
        raise UsageError(f"--train-sizes: size {full} is the whole training part, the same as 'all'; give one of them")
    if numbers:
        smallest = numbers[0]
        for fold in range(len(task.folds)):
            val_rows = len(fold_rows(task, fold, max_train_rows=smallest)[1])
            if val_rows < MIN_VAL_ROWS:
                raise UsageError(f"--train-sizes: size {smallest} leaves {val_rows} validation rows on fold {fold} "
                                 f"of {task.spec.name}; the models need at least {MIN_VAL_ROWS}: use a larger "
                                 "size")  # fmt: skip


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def task_groups() -> dict[str, tuple[str, ...]]:
    """``--task`` names that stand for several tasks, run one after another into one store."""
    from benchmarks.registry import TASKS

    return {
        "matbench": tuple(n for n, spec in TASKS.items() if spec.is_matbench and spec.task_type == "regression"),
        "oqmd": ("formation_energy", "oqmd_band_gap", "oqmd_volume_per_atom", "oqmd_energy_per_atom"),
    }


COMMAND_ENV = "IRNET_BENCH_COMMAND"  # the launcher's command line, recorded by the workers it starts


def command_line(argv: Sequence[str]) -> str:
    """The command as a user would type it again: ``python -m benchmarks.run`` and the arguments, shell-quoted."""
    return shlex.join(["python", "-m", "benchmarks.run", *argv])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    groups = task_groups()
    if args.task in groups:
        return _run_group(_argv(argv), groups[args.task])
    _quiet_libraries()

    # 1. Arguments alone (cheap, before touching any store or data).
    models = tuple(parse_model_list(args.models))
    preset = get_preset(args.preset)
    for model in models:  # a role or a budget rule the preset lacks for a model: refused before any work
        preset.check_model(model)
    folds_arg = _int_list(args.folds, "--folds")
    seeds = _int_list(args.seeds, "--seeds") or preset.seeds
    if args.max_train_rows is not None and args.max_train_rows < 0:
        raise UsageError(f"--max-train-rows must be >= 0 (0 = all rows), got {args.max_train_rows}")
    train_sizes = parse_train_sizes(args.train_sizes)
    if train_sizes and args.max_train_rows is not None:
        raise UsageError("give --train-sizes or --max-train-rows, not both")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    for flag, value in (("--timeout", args.timeout), ("--fit-timeout", args.fit_timeout)):
        if value is not None and not value > 0:  # also NaN
            raise UsageError(
                f"{flag} must be a positive number of seconds, got {value:g}; drop it for the preset's budget"
            )
    if args.trials is not None and args.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {args.trials}; drop it for the preset's number of trials")
    out_dir = check_out_dir(args.out or default_out_dir())
    # Budget flags override the preset's rule for every model; TrialBudget checks them now.
    budget_overrides = {name: value for name, value in (("n_trials", args.trials), ("tuning_seconds", args.timeout),
                        ("fit_seconds", args.fit_timeout)) if value is not None}  # fmt: skip
    TrialBudget(**{"n_trials": 1, "tuning_seconds": None, "fit_seconds": None, **budget_overrides})
    max_train_rows = preset.max_train_rows
    if args.max_train_rows is not None:
        max_train_rows = args.max_train_rows or None
    preset = preset.with_changes(budget_overrides=budget_overrides, max_train_rows=max_train_rows)
    if args.featurizer not in FEATURIZERS:
        raise UsageError(f"unknown featurizer {args.featurizer!r}; use one of {', '.join(FEATURIZERS)}")
    device = resolve_device(args.device)
    # Local workers share the cores: without --threads each gets its share.
    threads = args.threads or max(1, _available_cores() // args.workers)

    # 2. The data, and what depends on it (fold numbers): a bad file is refused before any store is made.
    task = task_from_args(args)
    if task.spec.task_type != "regression":
        raise UsageError(f"{task.spec.name} is a classification task (metric {task.spec.metric}); this suite "
                         "benchmarks regression: pick a regression task (python -m benchmarks.tasks list)")  # fmt: skip
    n_folds = len(task.folds)
    folds = folds_arg if folds_arg is not None else (preset.folds or tuple(range(n_folds)))
    bad = [f for f in folds if f >= n_folds]
    if bad:
        raise UsageError(f"{task.spec.name} has folds 0..{n_folds - 1}; fold {bad[0]} does not exist")
    check_train_sizes(train_sizes, task)

    # 3. The stores: reachable before any work.
    from studies.coordination import open_storage
    from studies.stores import check_tracking_uri, default_storage_url, default_tracking_uri

    make_out_dir(out_dir)
    storage_url = args.storage or default_storage_url(out_dir)
    tracking_uri = args.tracking_uri or default_tracking_uri(out_dir)
    with _exclusive(out_dir / ".stores.lock"):  # two processes starting together must not both create the DBs
        check_tracking_uri(tracking_uri)
        open_storage(storage_url)

    # 4. The existing runs' settings, and the data's composition overlap between training and test.
    from studies import schema
    from studies.plan import RunPlan
    from studies.protocol import check_plan, expected_time_line, jobs_outcome, run_benchmark

    overlap = _overlap_counts(task, folds)
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
        fold_tags={fold: {schema.TAG_TRAIN_TEST_DUPLICATES: str(n)} for fold, n in overlap.items()},
        train_sizes=train_sizes,
        command=os.environ.get(COMMAND_ENV, "") if args.worker_of_launcher else command_line(_argv(argv)),
    )
    check_plan(plan)
    for fold, count in overlap.items():  # logged once the plan is accepted: a refused run prints one line
        if count:
            logging.getLogger(__name__).info("%s fold %d: %d of %d test rows share their composition with a "
                                             "training row", task.spec.name, fold, count,
                                             len(task.folds[fold].test))  # fmt: skip
    # A scaling study caps on purpose; the jobs (a fold split each) are only looked at for a Matbench task.
    if task.spec.is_matbench and not train_sizes and any(cap is not None for cap, _ in plan.jobs()):
        logging.getLogger(__name__).warning(
            "%s: training rows capped at %s per fold by preset %s; Matbench trains on every training row, so the "
            "report writes no Matbench submission for these runs (--max-train-rows 0 for all)",
            task.spec.name, f"{preset.max_train_rows:,}", preset.name)  # fmt: skip
    _set_torch_threads(threads)
    if not args.worker_of_launcher:  # the launcher says it once for all its workers
        workers = f" shared by {args.workers} workers" if args.workers > 1 else ""
        logging.getLogger(__name__).info("%s%s", expected_time_line(plan), workers)

    # 5. The work: here, or in local worker processes that share the studies through the storage.
    if args.workers > 1:
        _run_workers(_argv(argv), args.workers, threads, device)
        outcome = jobs_outcome(plan)
    else:
        outcome = run_benchmark(plan)
    if args.worker_of_launcher:
        return EXIT_SOME_FAILED if outcome.failed else 0  # the launcher prints the leaderboard
    _print_results(plan, models)
    for job in outcome.failed:
        print(f"FAILED {job.key.run_name}: {job.message} (rerun the same command to retry)", file=sys.stderr)
    return EXIT_SOME_FAILED if outcome.failed else 0


def _print_results(plan: RunPlan, models: Sequence[str]) -> None:
    """One leaderboard per training size, read back from MLflow as the report reads it (whoever ran the
    jobs), and the long results table beside the stores."""
    import pandas as pd

    from reports.collect import ReportInputError, read_finals
    from reports.ensembles import ConsoleEnsembles
    from reports.tables import format_leaderboard, leaderboard, select, write_long_table
    from studies.tracking import ui_hint

    try:
        finals, _ = read_finals(plan.tracking_uri, [plan.task_name], plan.preset.name)
    except ReportInputError:  # nothing finished (every job failed): empty tables, the failures follow
        finals = pd.DataFrame(columns=["model", "fold", "seed", "train_rows"])
    # smoke keeps one fixed budget; quick and paper derive theirs from the rows and the model group.
    budget_text = (
        "budgets by model group and rows (docs/guide/budgets.md)" if plan.preset.rules else "one fixed budget per model"
    )
    # Post-hoc ensembles of the runs, recorded in the store with MLflow models that take formulas (reports.ensembles).
    ensembles = ConsoleEnsembles.record(
        plan.tracking_uri, plan.task_name, plan.preset.name, select(finals, plan.keys())
    )
    for jobs in plan.jobs_by_size().values():  # one table per training size, smallest first
        keys = [k for _, k in jobs]
        sizes = sorted({int(k.train_size or 0) for k in keys})  # a plan's keys always carry their size
        size_text = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        title = (
            f"{plan.task_name}: preset {plan.preset.name}, {size_text} training rows, {len(plan.folds)} fold(s) "
            f"x {len(plan.seeds)} seed(s), {budget_text}; "
            f"test MAE mean ± std over folds and seeds"
        )
        board = leaderboard(select(finals, keys), models=models)
        print(format_leaderboard(board, title=title, unit=str(plan.task.spec.unit)))
        for line in ensembles.lines(select(finals, keys), str(plan.task.spec.unit)):
            print(line)
    for note in ensembles.notes:
        print(f"note: {note}")
    path = plan.out_dir / f"results_{plan.task_name}_{plan.preset.name}.csv"
    write_long_table(select(finals, plan.keys()), path)
    print(f"results: {path}; MLflow: {plan.tracking_uri}")
    print(f"runs table: {ui_hint(plan.tracking_uri, plan.task_name)}")


def _overlap_counts(task: TaskData, folds: Sequence[int]) -> dict[int, int]:
    """Per fold, the test rows whose composition also occurs in its training part (a model may score well on
    them by recall rather than prediction)."""
    from benchmarks.compositions import composition_keys, train_test_duplicates

    keys = composition_keys(task.formulas)
    return {fold: train_test_duplicates(keys, task.folds[fold]) for fold in folds}


def _run_group(argv: list[str], tasks: tuple[str, ...]) -> int:
    """Run the same command for each task of a group, one after another, into the same stores; the exit code
    is the worst of the tasks' (a usage error on one task stops the group)."""
    task_argv = _without_flag(argv, "--task")
    worst = 0
    for name in tasks:
        print(f"== {name} ==", flush=True)
        worst = max(worst, main([*task_argv, "--task", name]))
    return worst


def _argv(argv: list[str] | None) -> list[str]:
    return list(argv) if argv is not None else sys.argv[1:]


def _run_workers(argv: list[str], n_workers: int, threads: int, device: str) -> None:
    """Start ``n_workers`` processes running this same command as single workers and wait for them all.

    On a machine with several GPUs each worker sees one (round robin). Ctrl-C stops them all; rerunning the
    command resumes. A worker that fails is reported; the others finish the studies.
    """
    import signal
    import subprocess

    child_argv = [*_without_flag(argv, "--workers"), "--workers", "1", "--no-progress", "--worker-of-launcher"]
    if not any(a == "--threads" or a.startswith("--threads=") for a in argv):
        child_argv += ["--threads", str(threads)]
    n_gpus = _visible_gpus() if device.startswith("cuda") else 0
    procs = []
    for index in range(n_workers):
        env = dict(os.environ, IRNET_BENCH_WORKER=str(index), **{COMMAND_ENV: command_line(argv)})
        if n_gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(index % n_gpus)
        procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks.run", *child_argv], env=env))
    logging.getLogger(__name__).info("started %d workers: %s", n_workers, " ".join(str(p.pid) for p in procs))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    failed = [(i, c) for i, c in enumerate(codes) if c != 0]
    for index, code in failed:
        print(f"worker {index} exited with code {code}", file=sys.stderr)
    if len(failed) == n_workers and all(code == 2 for _, code in failed):
        raise UsageError("every worker stopped on a usage error (see above)")


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


class StoreLost(BenchError):
    """The Optuna storage or the MLflow store went away mid-run."""

    exit_code = 3


def _is_store_outage(exc: BaseException) -> bool:
    """A database or tracking server that went away mid-run (rather than a bug)."""
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover - sqlalchemy comes with optuna
        return False
    import requests

    seen: BaseException | None = exc
    while seen is not None:  # Optuna wraps the driver's error (StorageInternalError from OperationalError)
        if isinstance(seen, (DBAPIError, requests.ConnectionError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _one_line_thread_errors() -> None:
    """Background threads (trial and refit heartbeats) report a lost store in one line, not a traceback."""
    import threading

    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and _is_store_outage(args.exc_value):
            print(f"warning: {args.thread.name if args.thread else 'a thread'}: lost the store "
                  f"({type(args.exc_value).__name__})", file=sys.stderr)  # fmt: skip
            return
        default(args)

    threading.excepthook = hook


def run_main(argv: list[str] | None = None) -> int:
    """``main``, with a store that goes away mid-run turned into one clear line and a resumable state."""
    _one_line_thread_errors()
    try:
        return main(argv)
    except BenchError:
        raise
    except Exception as exc:
        if not _is_store_outage(exc):
            raise
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise StoreLost(
            f"lost the connection to the Optuna storage or the MLflow store ({type(exc).__name__}: {detail}); "
            "finished trials and runs are saved there: run the same command again once it is back to resume"
        ) from None


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
    raise SystemExit(main_guard(run_main))
