"""Why networks clip their inputs to the training range: one fit with and one without, same data and seed.

``python scripts/clip_inputs_check.py [--rows 1000] [--models plain,irnet]`` fits each network with the `quick`
preset's trial 0 at that size (AdamW, batch 128, lr 3e-3 x sqrt(128/1024), patience 10) on formation_energy
fold 0, with ``clip_inputs`` off (the paper) and on, and prints the test MAE and the largest test error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.loader import load_task, task_fold
from studies.registry import get_model_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="training rows (nested subsample)")
    parser.add_argument("--models", default="plain,irnet")
    args = parser.parse_args()
    training, test = task_fold(load_task("formation_energy"), 0, max_train_rows=args.rows)
    params = {"depth": 17, "batch_size": 128, "lr": 3e-3 * (128 / 1024) ** 0.5, "optimizer": "adamw",
              "patience": 10, "max_epochs": 300}  # fmt: skip
    for model in args.models.split(","):
        for clip in (False, True):
            fitted = get_model_class(model)({**params, "clip_inputs": clip}, seed=0, device="cpu")
            start = time.perf_counter()
            report = fitted.fit(training.X_train, training.y_train, training.X_val, training.y_val)
            error = np.abs(fitted.predict(test.X) - test.y)
            print(f"{model} clip_inputs={clip}: {len(report.curve)} epochs, val MAE {report.best_val_mae:.4f}, "
                  f"test MAE {error.mean():.4f}, largest test error {error.max():.1f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
