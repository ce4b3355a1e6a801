"""Validation MAE of a fitted ElemNet with its dropout off and on when it predicts (docs/guide/networks.md "ElemNet").

``python scripts/elemnet_inference.py OUT/trial_models/<study>/trial-0.model.pkl --task formation_energy``
loads a saved ElemNet (a benchmark run keeps its best trial's model there; any ``Model.save`` file of ElemNet
does) and predicts the validation part of ``--fold`` (seed 0's validation rows, element fractions) with each
number of passes of ``--passes``: 0 is PyTorch's eval mode (dropout off), N > 0 the mean of N passes with dropout
on, as the published code predicts (one pass there; :data:`irnet.networks.ELEMNET_INFERENCE_PASSES` here).
Only validation rows: the test part is scored once, by the run.
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.cli import ArgumentParser, main_guard
from benchmarks.contract import Model
from benchmarks.errors import UsageError
from benchmarks.loader import load_task, task_fold


def run(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python scripts/elemnet_inference.py", description=__doc__.split("\n")[0])
    parser.add_argument("model_file", type=Path, help="a saved ElemNet (Model.save), e.g. a run's trial model")
    parser.add_argument("--task", default="formation_energy", help="the task it was fitted on")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--max-train-rows", type=int, default=None, help="as the run's (its validation sample)")
    parser.add_argument("--passes", default="0,1,8", help="comma-separated pass counts (default 0,1,8)")
    args = parser.parse_args(argv)
    try:
        passes = [int(p) for p in args.passes.split(",")]
    except ValueError:
        parser.error(f"--passes must be comma-separated integers, got {args.passes!r}")
    if any(p < 0 for p in passes):
        parser.error(f"--passes must be >= 0, got {args.passes!r}")
    if not args.model_file.is_file():
        raise UsageError(f"no model file {args.model_file}; give the path of a saved ElemNet (Model.save)")
    try:
        model = Model.load(args.model_file)
    except (pickle.UnpicklingError, EOFError, KeyError, AttributeError, ValueError) as exc:
        raise UsageError(f"{args.model_file} is not a saved model ({type(exc).__name__}: {exc}); give a file "
                         "written by Model.save, e.g. a run's logged model.pkl") from None  # fmt: skip
    if model.name != "elemnet":
        raise UsageError(f"{args.model_file} holds a {model.name} model, not elemnet")
    training, _ = task_fold(load_task(args.task), args.fold, featurizer="elemnet",
                            max_train_rows=args.max_train_rows, progress=False)  # fmt: skip
    network = model.network  # type: ignore[attr-defined]
    print(f"{args.model_file}: {len(training.y_val):,} validation rows of {args.task} fold {args.fold}")
    for count in passes:
        network.inference_passes = count
        start = time.perf_counter()
        mae = float(np.mean(np.abs(model.predict(training.X_val) - training.y_val)))
        mode = "dropout off (eval mode)" if count == 0 else f"dropout on, mean of {count} pass(es)"
        print(f"  {mode:<36} validation MAE {mae:.4f}  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(run))
