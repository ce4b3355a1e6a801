"""Throughput figures: ``python -m benchmarks.speed [--device cpu|cuda] [--quick] [--json FILE]``.

One run, one machine, real data (the OQMD ``formation_energy`` task read from the cache's CSVs):

- featurisation: compositions/s of the numpy ``magpie`` featuriser (all formulas, or ``--featurize-rows``) and
  of matminer's reference ``magpie-matminer`` (``--matminer-rows``, a few thousand) and their ratio;
- training: IRNet-17 and IRNet-48 samples/s at batch 32, 256 and 1024 through the benchmark's own loop
  (:func:`irnet.training.train_network`: epoch 1 warms up, epoch 2 is timed and includes its validation pass
  over ``VAL_ROWS`` rows), in float32 and in bf16 autocast side by side (``--precisions``), with their ratio;
  bf16 runs where the device has it natively and the row says which kernel ran;
- with ``--accuracy-check``: IRNet-17 on the `quick` preset's 10,000-row sample, seeds 0, 1, 2, test MAE in
  float32 and in bf16 (:func:`accuracy_check`; needs the full install);
- with ``--schedule-check``: IRNet-17 in the `quick` trial-0 regime under the plateau rule (the `quick` networks'
  rule until 2026-12-08) and under `quick`'s budgeted cosine schedule, side by side per seed, on the 10,000-row
  sample (``--schedule-rows`` for another size, 0 for every training row): epochs, wall time, test MAE
  (:func:`schedule_check`; needs the full install);
- achieved GFLOP/s of those steps, counted analytically: a Linear(in, out) costs ``2 * in * out`` FLOPs per
  sample forward and twice that backward (input and weight gradients), so ``3 * 2 * in * out`` per sample per
  training step, summed over every Linear (main path, shortcut projections, head). Batch norm, ReLU, the
  residual adds and the optimizer are left out, so the figure is a lower bound of the work done;
- beside it, the GFLOP/s of a plain ``torch.mm`` loop over exactly those matrix products (each Linear's forward,
  input-gradient and weight-gradient GEMM at that batch size): the machine's practical peak for this work.

Only numpy, pandas and torch are needed (matminer is timed when importable), so it runs on a bare GPU node with
the data copied in ``$IRNET_BENCH_CACHE`` (docs/guide/gpu.md "GPU check").
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.atomic import atomic_write
from benchmarks.cli import ArgumentParser, main_guard
from benchmarks.errors import UsageError

SPEED_TASK = "formation_energy"
VAL_ROWS = 256  # validation rows per timed epoch: small, so the figure is about the training steps
FEATURIZE_REPEATS = 3  # the featuriser is timed as the best of this many passes over the same formulas
DEPTHS = (17, 48)
BATCH_SIZES = (32, 256, 1024)


def load_speed_data(featurize_rows: int | None = None) -> dict[str, Any]:
    """Formulas (all rows, or a sample of ``featurize_rows``) of ``formation_energy``, featurised with the
    numpy ``magpie`` featuriser and timed (element table loaded before the clock starts; best of
    ``FEATURIZE_REPEATS`` passes), and the features and
    targets of its training, validation and test parts (the test part only for a one-time score)."""
    from benchmarks.features import featurize_formulas
    from benchmarks.loader import load_task

    task = load_task(SPEED_TASK)
    fold = task.folds[0]
    if fold.val is None:
        raise UsageError(f"{SPEED_TASK} has no fixed validation part; the speed check needs one")
    # All rows are featurised (and timed); the test rows are never used for training or validation.
    train, val, test = fold.train, fold.val, fold.test
    if featurize_rows is not None:  # a sample: the first rows of each part (validation and test: VAL_ROWS)
        train, val, test = train[: max(1, featurize_rows - 2 * VAL_ROWS)], val[:VAL_ROWS], test[:VAL_ROWS]
    rows = np.concatenate([train, val, test])
    formulas = [str(f) for f in task.formulas[rows]]
    featurize_formulas(formulas[:100])  # warm-up: element table and parser tables
    seconds = math.inf
    for _ in range(FEATURIZE_REPEATS):  # best of a few: one pass is ~1 s, easily stretched by other work
        started = time.perf_counter()
        X = featurize_formulas(formulas)
        seconds = min(seconds, time.perf_counter() - started)
    ok = np.isfinite(X).all(axis=1)
    y = task.targets[rows]
    part = np.repeat([0, 1, 2], [len(train), len(val), len(test)])
    is_train, is_val, is_test = ok & (part == 0), ok & (part == 1), ok & (part == 2)
    return {
        "formulas": formulas,
        "X_train": X[is_train], "y_train": y[is_train], "X_val": X[is_val], "y_val": y[is_val],
        "X_test": X[is_test], "y_test": y[is_test],
        "featurisation": {"featurizer": "magpie", "compositions": len(formulas), "seconds": seconds,
                          "compositions_per_second": len(formulas) / seconds, "rows_dropped": int((~ok).sum())},
    }  # fmt: skip


def matminer_throughput(formulas: list[str]) -> dict[str, Any] | None:
    """Compositions/s of matminer's reference featuriser, or None when matminer is not installed."""
    try:
        import matminer  # noqa: F401
        import pymatgen.core  # noqa: F401
    except ImportError:  # a bare GPU node
        return None
    from benchmarks.features import magpie_features

    magpie_features(formulas[:20])  # load matminer's element tables before timing
    started = time.perf_counter()
    magpie_features(formulas)
    seconds = time.perf_counter() - started
    return {"featurizer": "magpie-matminer", "compositions": len(formulas), "seconds": seconds,
            "compositions_per_second": len(formulas) / seconds}  # fmt: skip


def linear_shapes(depth: int, n_features: int) -> list[tuple[int, int]]:
    """(in_features, out_features) of every Linear in IRNet-``depth``, in module order."""
    from torch import nn

    from irnet.networks import build_model

    net = build_model("irnet", depth, n_features)
    return [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]


def training_flops_per_sample(shapes: list[tuple[int, int]]) -> int:
    """FLOPs of one training step per sample: forward 2*in*out per Linear, backward twice that (module doc)."""
    return sum(3 * 2 * n_in * n_out for n_in, n_out in shapes)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(shapes: list[tuple[int, int]], batch_size: int, *, device: str, repeats: int,
                dtype: str = "float32", min_seconds: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """GFLOP/s of a bare ``torch.mm`` loop over the three GEMMs of every Linear at ``batch_size``."""
    import torch

    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=torch_dtype)

    # forward x @ W^T, input gradient g @ W, weight gradient g^T @ x
    gemms = [(rand(batch_size, i), rand(i, o), rand(batch_size, o), rand(o, i)) for i, o in shapes]

    def one_pass() -> None:
        for x, w_t, g, w in gemms:
            torch.mm(x, w_t)
            torch.mm(g, w)
            torch.mm(g.t(), x)

    one_pass()  # warm-up: allocator, kernels, thread pool
    _sync(device)
    started = time.perf_counter()
    passes = 0
    # At least ``repeats`` passes and ``min_seconds``, so a small batch is not timed from a few microseconds.
    while passes < repeats or time.perf_counter() - started < min_seconds:
        one_pass()
        passes += 1
        if passes % 10 == 0 or passes >= repeats:
            _sync(device)
    _sync(device)
    seconds = time.perf_counter() - started
    flops = training_flops_per_sample(shapes) * batch_size * passes
    return {"batch_size": batch_size, "dtype": dtype, "seconds": seconds, "gflops": flops / seconds / 1e9}


def training_throughput(data: dict[str, Any], *, depth: int, batch_size: int, steps: int, device: str,
                        amp: bool = False, compile: bool = False,
                        optimizer_implementation: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Samples/s and achieved GFLOP/s of IRNet-``depth`` training through :func:`irnet.training.train_network`
    over ``steps`` batches per epoch (epoch 2 timed; epoch 1 carries one-off warm-up and compilation)."""
    import torch

    from irnet.networks import build_model
    from irnet.training import TrainConfig, train_network

    rows = batch_size * steps
    if len(data["X_train"]) < rows:
        raise UsageError(f"{rows} training rows needed for {steps} steps at batch {batch_size}; "
                         f"only {len(data['X_train'])} featurised (raise --featurize-rows or lower "
                         "--steps)")  # fmt: skip
    X, y = data["X_train"][:rows], data["y_train"][:rows]
    Xv, yv = data["X_val"][:VAL_ROWS], data["y_val"][:VAL_ROWS]
    torch.manual_seed(0)
    net = build_model("irnet", depth, X.shape[1])
    config = TrainConfig(batch_size=batch_size, max_epochs=2, patience=3, amp=amp, compile=compile)
    report = train_network(net, X, y, Xv, yv, config, seed=0, device=device,
                           optimizer_implementation=optimizer_implementation).report  # fmt: skip
    seconds = report.curve[1].seconds - report.curve[0].seconds
    flops = training_flops_per_sample(linear_shapes(depth, X.shape[1])) * rows
    return {
        "model": f"irnet-{depth}", "device": report.device, "batch_size": batch_size, "rows": rows,
        "steps": steps, "amp": bool(report.extra["amp"]), "precision": report.extra["precision"], "compile": compile,
        "optimizer": optimizer_implementation or "default", "seconds": seconds,
        "samples_per_second": rows / seconds, "gflops": flops / seconds / 1e9,
        "first_epoch_seconds": report.curve[0].seconds, "threads": torch.get_num_threads(),
    }  # fmt: skip


ACCURACY_ROWS = 10_000  # the `quick` preset's training rows
ACCURACY_SEEDS = (0, 1, 2)


def accuracy_check(seeds: tuple[int, ...] = ACCURACY_SEEDS, device: str = "cpu") -> list[dict[str, Any]]:
    """IRNet-17 fitted in float32 and in bf16 autocast on the `quick` preset's 10,000-row ``formation_energy``
    sample (fold 0; the full test part), once per seed, in the `quick` trial-0 regime; one row per fit with its
    test MAE. Unlike the rest of this script it needs the full install (the `quick` preset's settings)."""
    from benchmarks.loader import load_task, task_fold
    from benchmarks.searchspace import fixed_values
    from irnet.models import MODELS, IRNetModel, converging_network_regime
    from studies.presets import get_preset

    training, test = task_fold(load_task(SPEED_TASK), 0, max_train_rows=ACCURACY_ROWS, progress=False)
    irnet = next(info for info in MODELS if info.model_class is IRNetModel)
    quick = fixed_values(get_preset("quick").settings_for(irnet))
    regime = {**quick, **converging_network_regime(len(training.y_train)), "depth": 17}
    rows = []
    for seed in seeds:
        for amp in (False, True):
            model = IRNetModel({**regime, "amp": amp}, seed=seed, device=device)
            report = model.fit(training.X_train, training.y_train, training.X_val, training.y_val)
            row = {"seed": seed, "precision": report.extra["precision"], "amp": bool(report.extra["amp"]),
                   "epochs": len(report.curve), "fit_seconds": report.fit_seconds,
                   "val_mae": report.best_val_mae, "test_mae": test.score(model.predict(test.X))["mae"]}  # fmt: skip
            print(f"accuracy  seed {seed}  {row['precision']:<28} {row['epochs']:>4} epochs "
                  f"{row['fit_seconds']:>7.0f} s  validation MAE {row['val_mae']:.4f}  test MAE {row['test_mae']:.4f}",
                  flush=True)  # fmt: skip
            rows.append(row)
    return rows


# The `quick` networks' rule until 2026-12-08: the rate x0.3 after 4 epochs without improvement, early stopping
# after 8, at most 300 epochs.
PLATEAU_RULE = {"schedule": "plateau", "lr_decay": 0.3, "patience": 8, "max_epochs": 300}


def schedule_check(seeds: tuple[int, ...] = ACCURACY_SEEDS, rows: int | None = ACCURACY_ROWS, device: str = "cpu",
                   schedules: tuple[str, ...] = ("plateau", "cosine")) -> list[dict[str, Any]]:  # fmt: skip
    """IRNet-17 in the `quick` trial-0 regime (bf16 where native) on ``rows`` nested training rows of
    ``formation_energy`` fold 0 (None: all), scored on the full test part: once under :data:`PLATEAU_RULE` and
    once under `quick`'s budgeted schedule (cosine over its epoch budget for the rows), per seed, one after the
    other in this process; one row per fit."""
    from benchmarks.loader import load_task, task_fold
    from benchmarks.searchspace import fixed_values
    from irnet.models import IRNetModel, converging_network_regime
    from studies.presets import get_preset
    from studies.protocol import resolved_space

    training, test = task_fold(load_task(SPEED_TASK), 0, max_train_rows=rows, progress=False)
    n_train = len(training.y_train)
    budgeted = fixed_values(resolved_space("irnet", get_preset("quick"), threads=1, n_train=n_train))
    budgeted = {k: v for k, v in budgeted.items() if k != "n_jobs"}
    regimes = {name: regime for name, regime in (("plateau", {**budgeted, **PLATEAU_RULE}), ("cosine", budgeted))
               if name in schedules}  # fmt: skip
    out = []
    for seed in seeds:
        for name, regime in regimes.items():
            model = IRNetModel({**regime, **converging_network_regime(n_train), "depth": 17}, seed=seed, device=device)
            report = model.fit(training.X_train, training.y_train, training.X_val, training.y_val)
            test_mae = test.score(model.predict(test.X))["mae"]
            row = {"seed": seed, "schedule": name, "rows": n_train, "epochs": len(report.curve),
                   "stopped": report.stopped, "fit_seconds": report.fit_seconds, "val_mae": report.best_val_mae,
                   "test_mae": test_mae, "precision": report.extra["precision"]}  # fmt: skip
            print(f"schedule  seed {seed}  {name:<8} {n_train:>7,} rows {row['epochs']:>4} epochs ({row['stopped']}) "
                  f"{row['fit_seconds']:>7.0f} s  validation MAE {row['val_mae']:.4f}  test MAE {row['test_mae']:.4f}",
                  flush=True)  # fmt: skip
            out.append(row)
    return out


def summarise_schedules(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per schedule: mean test MAE, its sample standard deviation over seeds, and mean fit seconds."""
    summary = {}
    for name in dict.fromkeys(r["schedule"] for r in rows):
        mine = [r for r in rows if r["schedule"] == name]
        maes = np.array([r["test_mae"] for r in mine])
        summary[name] = {"test_mae": float(maes.mean()), "std": float(maes.std(ddof=1)) if len(maes) > 1 else math.nan,
                         "fit_seconds": float(np.mean([r["fit_seconds"] for r in mine])), "n": len(mine)}  # fmt: skip
    return summary


def summarise_accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of the test MAE per precision, and the bf16 - float32 difference of
    the means beside the seed spread (the larger of the two standard deviations)."""
    by = {amp: np.array([r["test_mae"] for r in rows if r["amp"] is amp]) for amp in (False, True)}
    stats: dict[str, Any] = {}  # per precision {"mean", "std", "n"}; then the difference and the seed spread
    stats.update({("bf16" if amp else "float32"): {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1
                                                   else math.nan, "n": len(v)}
                  for amp, v in by.items() if len(v)})  # fmt: skip
    if "bf16" in stats and "float32" in stats:
        stats["difference"] = stats["bf16"]["mean"] - stats["float32"]["mean"]
        stats["seed_spread"] = max(stats["bf16"]["std"], stats["float32"]["std"])
        stats["within_seed_spread"] = bool(stats["difference"] <= stats["seed_spread"])
    return stats


def steps_for(batch_size: int, device: str, quick: bool) -> int:
    """Batches per timed epoch: enough for a steady rate, few enough that a CPU run takes a couple of minutes."""
    if device.startswith("cuda"):
        return max(20, 8192 // batch_size) if not quick else 5
    if quick:
        return 2
    return max(3, 2048 // batch_size)


def machine_info(device: str) -> dict[str, Any]:
    """Python, torch, CPU and (on CUDA) the card, for the JSON record."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def compile_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compiled over eager samples/s for every (model, batch, optimizer, precision) timed both ways in this run."""
    pairs: dict[tuple[str, int, str, str], dict[bool, dict[str, Any]]] = {}
    for row in rows:
        key = (row["model"], row["batch_size"], row["optimizer"], row["precision"])
        pairs.setdefault(key, {})[row["compile"]] = row
    both = {key: pair for key, pair in pairs.items() if True in pair and False in pair}
    return [{"model": model, "batch_size": batch, "optimizer": optimizer, "precision": precision,
             "eager": pair[False]["samples_per_second"], "compiled": pair[True]["samples_per_second"],
             "ratio": pair[True]["samples_per_second"] / pair[False]["samples_per_second"]}
            for (model, batch, optimizer, precision), pair in both.items()]  # fmt: skip


def bf16_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """bf16 over float32 samples/s for every (model, batch, optimizer) timed both ways in this run (eager)."""
    pairs: dict[tuple[str, int, str], dict[bool, dict[str, Any]]] = {}
    for row in rows:
        if row["compile"]:
            continue
        pairs.setdefault((row["model"], row["batch_size"], row["optimizer"]), {})[row["amp"]] = row
    return [{"model": model, "batch_size": batch, "optimizer": optimizer, "float32": pair[False]["samples_per_second"],
             "bf16": pair[True]["samples_per_second"], "precision": pair[True]["precision"],
             "ratio": pair[True]["samples_per_second"] / pair[False]["samples_per_second"]}
            for (model, batch, optimizer), pair in pairs.items() if True in pair and False in pair]  # fmt: skip


def print_training_header() -> None:
    print(f"{'model':<9} {'batch':>5} {'amp':>4} {'compile':>7} {'optimizer':>9} {'samples/s':>10} "
          f"{'GFLOP/s':>8} {'mm peak':>8} {'of peak':>7}", flush=True)  # fmt: skip


def print_training_row(row: dict[str, Any], peak: float) -> None:
    print(f"{row['model']:<9} {row['batch_size']:>5} {row['amp']!s:>4} {row['compile']!s:>7} "
          f"{row['optimizer']:>9} {row['samples_per_second']:>10.0f} {row['gflops']:>8.1f} {peak:>8.1f} "
          f"{row['gflops'] / peak:>7.0%}", flush=True)  # fmt: skip


def parse_ints(text: str, flag: str, *, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < minimum:
        raise UsageError(f"{flag} takes integers >= {minimum}, got {text!r}")
    return values


def throughput_figures(args: Any, results: dict[str, Any], *, depths: list[int], batch_sizes: list[int],
                       optimizers: list[str | None], precisions: list[str], compiles: list[bool]) -> None:  # fmt: skip
    """Featurisation and training throughput (the module docstring's first bullets), printed and added to
    ``results``."""
    featurize_rows = args.featurize_rows or (20_000 if args.quick else None)
    matminer_rows = min(args.matminer_rows, 200) if args.quick else args.matminer_rows
    data = load_speed_data(featurize_rows)
    feat = data["featurisation"]
    print(f"featurisation magpie (numpy):      {feat['compositions_per_second']:>12,.0f} compositions/s "
          f"({feat['compositions']:,} in {feat['seconds']:.2f} s)", flush=True)  # fmt: skip
    reference = matminer_throughput(data["formulas"][:matminer_rows]) if matminer_rows > 0 else None
    results["featurisation"] = {"numpy": feat, "matminer": reference}
    if reference is None:
        print("featurisation magpie-matminer: not timed (not installed, or --matminer-rows 0)", flush=True)
    else:
        ratio = feat["compositions_per_second"] / reference["compositions_per_second"]
        results["featurisation"]["ratio"] = ratio
        print(f"featurisation magpie-matminer:     {reference['compositions_per_second']:>12,.0f} compositions/s "
              f"({reference['compositions']:,} in {reference['seconds']:.2f} s); numpy is {ratio:,.0f}x",
              flush=True)  # fmt: skip

    print_training_header()
    for depth in depths:
        shapes = linear_shapes(depth, data["X_train"].shape[1])
        for batch_size in batch_sizes:
            steps = args.steps or steps_for(batch_size, args.device, args.quick)
            peak = matmul_peak(shapes, batch_size, device=args.device, repeats=max(2, steps // 2))
            results["matmul_peak"].append({"model": f"irnet-{depth}", **peak})
            for implementation in optimizers:
                for precision, compiled in itertools.product(precisions, compiles):
                    row = training_throughput(data, depth=depth, batch_size=batch_size, steps=steps,
                                              device=args.device, amp=precision == "bf16", compile=compiled,
                                              optimizer_implementation=implementation)  # fmt: skip
                    row["fraction_of_mm_peak"] = row["gflops"] / peak["gflops"]  # of the float32 GEMM peak
                    results["training"].append(row)
                    print_training_row(row, peak["gflops"])
    results["bf16_speedup"] = bf16_ratios(results["training"])
    for ratio in results["bf16_speedup"]:
        print(f"bf16 / float32  {ratio['model']:<9} batch {ratio['batch_size']:>5}: {ratio['float32']:>8,.0f} -> "
              f"{ratio['bf16']:>8,.0f} samples/s, {ratio['ratio']:.2f}x ({ratio['precision']})",
              flush=True)  # fmt: skip
    results["compile_speedup"] = compile_ratios(results["training"])
    for ratio in results["compile_speedup"]:
        print(
            f"compile / eager {ratio['model']:<9} batch {ratio['batch_size']:>5} {ratio['precision']}: "
            f"{ratio['eager']:>8,.0f} -> {ratio['compiled']:>8,.0f} samples/s, {ratio['ratio']:.2f}x",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks.speed", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script works, figures are noise")
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--steps", type=int, default=None, help="batches per timed epoch (default: by batch size)")
    parser.add_argument(
        "--featurize-rows",
        type=int,
        default=None,
        help="formulas for the numpy featuriser (default: all of formation_energy train+val)",
    )
    parser.add_argument("--matminer-rows", type=int, default=2000, help="formulas for matminer (default 2000)")
    parser.add_argument(
        "--optimizers",
        default="default",
        help="optimizer kernels to compare, e.g. foreach,loop,fused (default: the loop's choice)",
    )
    parser.add_argument(
        "--precisions",
        default="float32,bf16",
        help="float32, bf16 or both (default): bf16 is autocast where the device runs it natively",
    )
    parser.add_argument(
        "--compile",
        default="eager",
        help="eager, compiled (torch.compile of the training forward: inductor, needs a C compiler on a CPU) or "
        "both, eager,compiled: samples/s of each and their ratio",
    )
    parser.add_argument(
        "--accuracy-check",
        action="store_true",
        help="also fit IRNet-17 on the 10,000-row sample in float32 and bf16, seeds 0-2, and print "
        "the test MAEs (about 20 minutes on 2 cores; needs the full install)",
    )
    parser.add_argument(
        "--schedule-check",
        action="store_true",
        help="also fit IRNet-17 under the plateau rule and under quick's cosine schedule, seeds 0-2, and print "
        "epochs, seconds and test MAE side by side (about 15 minutes on 2 cores at 10,000 rows)",
    )
    parser.add_argument("--schedule-rows", type=int, default=ACCURACY_ROWS,
                        help="training rows of --schedule-check (0: all 239,190)")  # fmt: skip
    parser.add_argument("--schedule-seeds", default="0,1,2", help="seeds of --schedule-check")
    parser.add_argument("--schedules", default="plateau,cosine", help="the schedules --schedule-check fits")
    parser.add_argument("--skip-throughput", action="store_true",
                        help="only the checks asked for: no featurisation or throughput figures")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    import torch

    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device; run on a GPU machine or use --device cpu")
    depths = parse_ints(args.depths, "--depths")
    batch_sizes = parse_ints(args.batch_sizes, "--batch-sizes")
    optimizers = [None if o == "default" else o for o in args.optimizers.split(",")]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or set(precisions) - {"float32", "bf16"}:
        raise UsageError(f"--precisions takes float32, bf16 or both, got {args.precisions!r}")
    if args.schedule_rows < 0:
        raise UsageError(f"--schedule-rows must be 0 (all rows) or a positive number, got {args.schedule_rows}")
    schedule_seeds = tuple(parse_ints(args.schedule_seeds, "--schedule-seeds", minimum=0))
    schedules = tuple(name.strip() for name in args.schedules.split(","))
    if not schedules or set(schedules) - {"plateau", "cosine"}:
        raise UsageError(f"--schedules takes plateau, cosine or both, got {args.schedules!r}")
    modes = [c.strip() for c in args.compile.split(",")]
    if not modes or set(modes) - {"eager", "compiled"}:
        raise UsageError(f"--compile takes eager, compiled or both (eager,compiled), got {args.compile!r}")
    compiles = [mode == "compiled" for mode in modes]

    results: dict[str, Any] = {"machine": machine_info(args.device), "task": SPEED_TASK, "flop_count":
                               "3 * 2 * in * out per Linear per sample (forward + backward)", "training": [],
                               "matmul_peak": []}  # fmt: skip
    if not args.skip_throughput:
        throughput_figures(args, results, depths=depths, batch_sizes=batch_sizes, optimizers=optimizers,
                           precisions=precisions, compiles=compiles)  # fmt: skip
    if args.accuracy_check:
        results["accuracy"] = accuracy_check(device=args.device)
        results["accuracy_summary"] = summary = summarise_accuracy(results["accuracy"])
        if "difference" in summary:
            print(f"accuracy  test MAE float32 {summary['float32']['mean']:.4f} ± {summary['float32']['std']:.4f}, "
                  f"bf16 {summary['bf16']['mean']:.4f} ± {summary['bf16']['std']:.4f} (seeds {list(ACCURACY_SEEDS)}); "
                  f"bf16 - float32 = {summary['difference']:+.4f}, "
                  f"{'within' if summary['within_seed_spread'] else 'BEYOND'} the seed spread", flush=True)  # fmt: skip
    if args.schedule_check:
        results["schedules"] = schedule_check(schedule_seeds, args.schedule_rows or None, args.device, schedules)
        results["schedule_summary"] = summary = summarise_schedules(results["schedules"])
        for name, v in summary.items():
            print(f"schedule  {name}: test MAE {v['test_mae']:.4f} ± {v['std']:.4f} over {v['n']} seed(s), "
                  f"{v['fit_seconds']:.0f} s per fit", flush=True)  # fmt: skip
    if args.json:
        with atomic_write(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
