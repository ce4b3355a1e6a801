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
- achieved GFLOP/s of those steps, counted analytically: a Linear(in, out) costs ``2 * in * out`` FLOPs per
  sample forward and twice that backward (input and weight gradients), so ``3 * 2 * in * out`` per sample per
  training step, summed over every Linear (main path, shortcut projections, head). Batch norm, ReLU, the
  residual adds and the optimizer are left out, so the figure is a lower bound of the work done;
- beside it, the GFLOP/s of a plain ``torch.mm`` loop over exactly those matrix products (each Linear's forward,
  input-gradient and weight-gradient GEMM at that batch size): the machine's practical peak for this work.

Only numpy, pandas and torch are needed (matminer is timed when importable), so it runs on a bare GPU node with
the data copied in ``$IRNET_BENCH_CACHE`` (README "GPU check").
"""

from __future__ import annotations

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


def bf16_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """bf16 over float32 samples/s for every (model, batch, optimizer) timed both ways in this run."""
    pairs: dict[tuple[str, int, str], dict[bool, dict[str, Any]]] = {}
    for row in rows:
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


def parse_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} takes positive integers, got {text!r}")
    return values


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
        "--accuracy-check",
        action="store_true",
        help="also fit IRNet-17 on the 10,000-row sample in float32 and bf16, seeds 0-2, and print "
        "the test MAEs (about 20 minutes on 2 cores; needs the full install)",
    )
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
    featurize_rows = args.featurize_rows or (20_000 if args.quick else None)
    matminer_rows = min(args.matminer_rows, 200) if args.quick else args.matminer_rows

    results: dict[str, Any] = {"machine": machine_info(args.device), "task": SPEED_TASK, "flop_count":
                               "3 * 2 * in * out per Linear per sample (forward + backward)", "training": [],
                               "matmul_peak": []}  # fmt: skip
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
                for precision in precisions:
                    row = training_throughput(data, depth=depth, batch_size=batch_size, steps=steps,
                                              device=args.device, amp=precision == "bf16",
                                              optimizer_implementation=implementation)  # fmt: skip
                    row["fraction_of_mm_peak"] = row["gflops"] / peak["gflops"]  # of the float32 GEMM peak
                    results["training"].append(row)
                    print_training_row(row, peak["gflops"])
    results["bf16_speedup"] = bf16_ratios(results["training"])
    for ratio in results["bf16_speedup"]:
        print(f"bf16 / float32  {ratio['model']:<9} batch {ratio['batch_size']:>5}: {ratio['float32']:>8,.0f} -> "
              f"{ratio['bf16']:>8,.0f} samples/s, {ratio['ratio']:.2f}x ({ratio['precision']})",
              flush=True)  # fmt: skip
    if args.accuracy_check:
        results["accuracy"] = accuracy_check(device=args.device)
        results["accuracy_summary"] = summary = summarise_accuracy(results["accuracy"])
        if "difference" in summary:
            print(f"accuracy  test MAE float32 {summary['float32']['mean']:.4f} ± {summary['float32']['std']:.4f}, "
                  f"bf16 {summary['bf16']['mean']:.4f} ± {summary['bf16']['std']:.4f} (seeds {list(ACCURACY_SEEDS)}); "
                  f"bf16 - float32 = {summary['difference']:+.4f}, "
                  f"{'within' if summary['within_seed_spread'] else 'BEYOND'} the seed spread", flush=True)  # fmt: skip
    if args.json:
        with atomic_write(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
