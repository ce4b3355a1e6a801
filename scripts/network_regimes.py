"""One model fit per training regime on formation_energy fold 0: steps, training, validation and test MAE, seconds.

``python scripts/network_regimes.py --rows 10000 --regimes '[{"patience": 10}, {"patience": 8, "lr_decay": 0.3}]'``
fits IRNet-17 (``--model``) with AdamW, lr 3e-3, batch 1024, at most 300 epochs (the `quick` trial 0 at 10k
rows), each regime's entries replacing those, on the nested ``--rows`` sample, seed 0, and scores the full test
part. Pin it to a core (``taskset -c 1``) and give it ``--threads 1`` to time it beside other work. Another
model takes ``--base`` (JSON parameters replacing the network base), e.g. a tuned booster's selected parameters
with a larger round cap, ``--model xgboost --base '{..., "n_estimators": 20000}' --regimes '[{}]' --print-every
500``; ElemNet reads element fractions, ``--model elemnet --featurizer elemnet`` (docs/guide/networks.md "ElemNet").
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from benchmarks.cli import ArgumentParser
from benchmarks.features import FEATURIZERS
from benchmarks.loader import load_task, task_fold
from studies.registry import get_model_class

BASE = {"depth": 17, "optimizer": "adamw", "lr": 3e-3, "batch_size": 1024, "max_epochs": 300}


def json_option(parser: argparse.ArgumentParser, flag: str, text: str, kind: type) -> Any:
    """``text`` parsed as JSON of type ``kind``; otherwise a one-line usage error (exit 2) naming ``flag``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        parser.error(f"{flag} is not valid JSON ({exc}); quote it in single quotes")
    if not isinstance(value, kind):
        parser.error(f"{flag} must be a JSON {'object' if kind is dict else 'list'}, got {text!r}")
    return value


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="training rows (nested subsample; 0: all)")
    parser.add_argument("--model", default="irnet")
    parser.add_argument("--featurizer", default="magpie", choices=FEATURIZERS,
                        help="input features (elemnet: element fractions)")  # fmt: skip
    parser.add_argument("--regimes", default='[{"patience": 10}, {"patience": 8, "lr_decay": 0.3}]',
                        help="JSON list of parameter dicts, each over the base regime")  # fmt: skip
    parser.add_argument("--base", default=json.dumps(BASE), help="JSON parameters each regime starts from")
    parser.add_argument("--print-every", type=int, default=1, help="print every N-th step's validation MAE")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    base, regimes = json_option(parser, "--base", args.base, dict), json_option(parser, "--regimes", args.regimes, list)
    if args.print_every < 1 or not all(isinstance(regime, dict) for regime in regimes):
        parser.error("--print-every must be >= 1 and --regimes a JSON list of objects")
    if args.threads:
        torch.set_num_threads(args.threads)
    training, test = task_fold(
        load_task("formation_energy"), 0, max_train_rows=args.rows or None, featurizer=args.featurizer
    )
    for regime in regimes:
        model = get_model_class(args.model)({**base, **regime}, seed=0, device="cpu")
        start = time.perf_counter()

        def show(step: int, val_mae: float, start: float = start) -> None:  # a full-data fit: most of an hour on a CPU
            if step % args.print_every == 0:
                print(f"  step {step}: validation MAE {val_mae:.5f}, {time.perf_counter() - start:.0f} s", flush=True)

        report = model.fit(training.X_train, training.y_train, training.X_val, training.y_val, on_step=show)
        test_mae = float(np.mean(np.abs(model.predict(test.X) - test.y)))
        for point in report.curve[args.print_every - 1 :: args.print_every]:  # is it still learning, or overfitting?
            print(f"  step {point.step}: training MAE {point.train_mae:.5f}, validation MAE {point.val_mae:.5f}")
        print(f"{args.model} {json.dumps(regime)}: {len(report.curve)} steps (best {report.best_step}, "
              f"{report.stopped}; rollbacks at {report.extra.get('rollback_epochs', [])}), "
              f"validation MAE {report.best_val_mae:.4f}, test MAE {test_mae:.4f}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
