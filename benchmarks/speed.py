"""Throughput figures: ``python -m benchmarks.speed [--rows N] [--epochs E] [--json FILE]``.

Measures, on real data (Matbench expt_gap, official fold 0, 145 Magpie features):
- training throughput of IRNet-17 in samples per second at batch 32 and 256, on the CPU and, where a GPU is
  visible, on the GPU (the training loop the benchmark uses, early stopping off);
- featurisation throughput in compositions per second (Magpie, uncached, one process).
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.atomic import atomic_write
from benchmarks.cli import ArgumentParser, main_guard

SPEED_TASK = "matbench_expt_gap"


def training_throughput(training, *, device: str, batch_size: int, epochs: int, rows: int) -> dict:
    """Samples per second of IRNet-17 over ``epochs`` epochs of ``rows`` training rows (first epoch excluded
    from the rate when there are several, as it carries one-off warm-up costs)."""
    import torch

    from irnet.models import IRNetModel

    X, y = training.X_train[:rows], training.y_train[:rows]
    model = IRNetModel({"depth": 17, "batch_size": batch_size, "max_epochs": epochs, "patience": epochs + 1},
                       seed=0, device=device)  # fmt: skip
    report = model.fit(X, y, training.X_val, training.y_val)
    seconds = [p.seconds for p in report.curve]
    # Per-epoch durations (they include the validation pass, as a real run does).
    durations = np.diff([0.0, *seconds])
    timed = durations[1:] if len(durations) > 1 else durations
    return {
        "model": "irnet-17",
        "device": report.device,
        "batch_size": batch_size,
        "rows": len(X),
        "epochs_timed": len(timed),
        "seconds_per_epoch": float(np.mean(timed)),
        "samples_per_second": float(len(X) / np.mean(timed)),
        "threads": torch.get_num_threads(),
    }


def featurisation_throughput(formulas: list[str]) -> dict:
    from benchmarks.features import magpie_features

    magpie_features(formulas[:20])  # load matminer's element tables before timing
    started = time.perf_counter()
    magpie_features(formulas)
    seconds = time.perf_counter() - started
    return {"featurizer": "magpie", "compositions": len(formulas), "seconds": seconds,
            "compositions_per_second": len(formulas) / seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks.speed", description=__doc__)
    parser.add_argument("--rows", type=int, default=2048, help="training rows per epoch (default 2048)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (default 3)")
    parser.add_argument("--batch-sizes", default="32,256")
    parser.add_argument("--featurize-rows", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.loader import load_task, task_fold

    task = load_task(SPEED_TASK)
    training, _ = task_fold(task, 0, progress=False)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict = {"python": platform.python_version(), "torch": torch.__version__, "task": SPEED_TASK,
                     "cpu": platform.processor() or platform.machine(), "training": [], "featurisation": None}  # fmt: skip
    print(f"{'model':<10} {'device':<8} {'batch':>5} {'rows':>6} {'s/epoch':>8} {'samples/s':>10} threads")
    for device in devices:
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            row = training_throughput(training, device=device, batch_size=batch_size, epochs=args.epochs, rows=args.rows)
            results["training"].append(row)
            print(f"{row['model']:<10} {row['device']:<8} {batch_size:>5} {row['rows']:>6} "
                  f"{row['seconds_per_epoch']:>8.2f} {row['samples_per_second']:>10.0f} {row['threads']}")  # fmt: skip
    feat = featurisation_throughput([str(f) for f in task.formulas[: args.featurize_rows]])
    results["featurisation"] = feat
    print(f"featurisation (magpie, 1 process): {feat['compositions_per_second']:.0f} compositions/s "
          f"({feat['compositions']} in {feat['seconds']:.1f} s)")  # fmt: skip
    if args.json:
        with atomic_write(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
