"""The first-GPU check: ``scripts/gpu_check.sh [--dry-run]`` (it calls ``python -m benchmarks.gpu_check``).

On one NVIDIA GPU, within about 9 minutes, with only numpy, pandas and torch installed:
1. featurise all 341,700 ``formation_energy`` formulas from the cached CSVs (timed);
2. IRNet-17 and IRNet-48 training samples/s at batch 32, 256, 1024, 4096 in fp32 and bf16 autocast, without
   ``torch.compile`` everywhere and with it at batch 32 and 4096 (compilation costs tens of seconds per model);
   each beside the ``torch.mm`` peak of the same GEMMs (:mod:`benchmarks.speed`);
3. the full-data answer for the networks: IRNet-17, SRNet-17 and plain-17, each as the ``quick`` preset's trial 0
   (its converging regime: AdamW, lr 3e-3, batch 1024, bf16 autocast, under `quick`'s budgeted schedule: 5%
   warm-up, then cosine decay to zero over the epoch budget of the rows, 40 epochs on all rows) through the
   model's own ``fit`` on all 239,190 training rows (validation on the validation part), to the end of its
   schedule, then scored once on the 51,255-row test part; a fit the time budget cuts says
   ``stopped: time_limit``;
4. IRNet-17 in the paper's regime (Adam, lr 1e-4, batch 32, MAE loss, raw inputs and targets) on the full
   training part for ``--epochs`` epochs, printing the validation MAE after every epoch.
Every stage stops early, and says so, when the time budget is spent: the throughput rows by 25% of it, the
full-data fits by 85%, the paper regime with what is left. Writes ``gpu_check.json`` to ``--out``.

``--dry-run`` runs the same stages on the CPU at a tiny size (CI runs it so the script keeps working); its
figures mean nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.atomic import atomic_write
from benchmarks.cli import ArgumentParser, main_guard
from benchmarks.errors import UsageError
from benchmarks.speed import (
    linear_shapes,
    load_speed_data,
    machine_info,
    matmul_peak,
    print_training_header,
    print_training_row,
    training_throughput,
)

GPU_BATCH_SIZES = (32, 256, 1024, 4096)
COMPILE_BATCH_SIZES = (32, 4096)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


FULL_DATA_DEPTH = 17
THROUGHPUT_SHARE, FULL_DATA_SHARE = 0.25, 0.85  # of the budget, where those stages must have ended


def full_data_fits(data: dict[str, Any], *, device: str, deadline: float, rows: int | None,
                   max_epochs: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """IRNet-17, SRNet-17 and plain-17 as the ``quick`` trial 0 on the training part, each to early stopping or
    an equal share of the time left before ``deadline`` (``time.perf_counter()``), each scored once on the test
    part. The regime comes from where the benchmark takes it (the models' converging regime, the preset's fixed
    values), so these figures are the benchmark's trial 0 at full scale."""
    import numpy as np

    from benchmarks.searchspace import fixed_values
    from irnet.models import MODELS, IRNetModel, PlainNetModel, SRNetModel, converging_network_regime
    from studies.presets import PRESETS

    X, y = data["X_train"][:rows], data["y_train"][:rows]
    irnet = next(info for info in MODELS if info.model_class is IRNetModel)  # the declaration, without the registry
    quick = PRESETS["quick"]
    epochs = max_epochs or quick.epoch_budgets[irnet.group].epochs(len(X))  # the budgeted schedule's length
    params = {**converging_network_regime(len(X)), **fixed_values(quick.settings_for(irnet)),
              "depth": FULL_DATA_DEPTH, "max_epochs": epochs}  # fmt: skip
    say(f"full data: {len(X):,} training, {len(data['X_val']):,} validation, {len(data['X_test']):,} test rows; "
        f"quick trial 0 {params}")  # fmt: skip
    classes = (IRNetModel, SRNetModel, PlainNetModel)
    out = []
    for i, cls in enumerate(classes):
        time_limit_s = max(5.0, (deadline - time.perf_counter()) / (len(classes) - i))
        name = f"{cls.name}-{FULL_DATA_DEPTH}"
        started = time.perf_counter()

        def show(epoch: int, val_mae: float, name: str = name, started: float = started) -> None:
            if epoch == 1 or epoch % 10 == 0:  # every 10th epoch: a fit runs 40
                seconds = time.perf_counter() - started
                say(f"  {name} epoch {epoch}: validation MAE {val_mae:.4f} eV/atom, {seconds:.0f} s")

        model = cls(params, seed=0, device=device)
        report = model.fit(X, y, data["X_val"], data["y_val"], on_step=show, time_limit_s=time_limit_s)
        test_mae = float(np.mean(np.abs(model.predict(data["X_test"]) - data["y_test"])))
        seconds = time.perf_counter() - started
        say(f"  {name}: {len(report.curve)} epochs (best {report.best_step}), stopped: {report.stopped}, validation "
            f"MAE {report.best_val_mae:.4f}, test MAE {test_mae:.4f} eV/atom, {seconds:.0f} s "
            f"(limit {time_limit_s:.0f} s)")  # fmt: skip
        out.append({"model": name, "rows": len(X), "params": params, "epochs": len(report.curve),
                    "best_epoch": report.best_step, "stopped": report.stopped, "val_mae": report.best_val_mae,
                    "test_mae": test_mae, "seconds": seconds, "time_limit_s": time_limit_s,
                    "rollback_epochs": report.extra.get("rollback_epochs", [])})  # fmt: skip
    return out


def paper_regime_run(data: dict[str, Any], *, device: str, epochs: int, time_limit_s: float,
                     rows: int | None) -> dict[str, Any]:  # fmt: skip
    """IRNet-17 as published (Adam 1e-4, batch 32, L1, unscaled inputs and targets) for ``epochs`` epochs."""
    import torch

    from irnet.networks import build_model
    from irnet.training import TrainConfig, train_network

    X, y = data["X_train"][:rows], data["y_train"][:rows]
    config = TrainConfig(lr=1e-4, batch_size=32, loss="mae", optimizer="adam", max_epochs=epochs,
                         patience=epochs + 1, standardize_inputs=False, standardize_target=False)  # fmt: skip
    torch.manual_seed(0)
    net = build_model("irnet", 17, X.shape[1])
    say(f"paper regime: IRNet-17, {len(X):,} training rows, {len(data['X_val']):,} validation rows, "
        f"{epochs} epochs (time limit {time_limit_s:.0f} s)")  # fmt: skip

    def show(epoch: int, val_mae: float) -> None:
        say(f"  epoch {epoch}: validation MAE {val_mae:.4f} eV/atom")

    report = train_network(net, X, y, data["X_val"], data["y_val"], config, seed=0, device=device, on_step=show,
                           time_limit_s=time_limit_s).report  # fmt: skip
    steps = -(-len(X) // 32)
    # The time limit is checked between batches, so a fit it stopped may end inside an epoch: time whole epochs
    # only (on 2026-12-05 an H100 cut epoch 2 after 5 s, and counting it as whole halved the figure).
    whole = len(report.curve) - 1 if report.stopped == "time_limit" else len(report.curve)
    per_epoch = report.curve[whole - 1].seconds / whole if whole else None
    timing = (f"{per_epoch:.1f} s per whole epoch, {per_epoch / steps * 1e3:.2f} ms/step incl. validation"
              if per_epoch else "no whole epoch")  # fmt: skip
    say(f"  {len(report.curve)} epochs in {report.fit_seconds:.1f} s ({timing}); stopped: {report.stopped}")
    return {"rows": len(X), "epochs": len(report.curve), "stopped": report.stopped,
            "seconds": report.fit_seconds, "ms_per_step": per_epoch / steps * 1e3 if per_epoch else None,
            "curve": [{"epoch": c.step, "train_mae": c.train_mae, "val_mae": c.val_mae, "seconds": c.seconds}
                      for c in report.curve]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="same stages on the CPU at a tiny size")
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=540.0, help="whole-run time budget (default 540)")
    parser.add_argument("--epochs", type=int, default=6, help="paper-regime epochs (default 6)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import torch

    depths: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    compile_sizes: tuple[int, ...]
    featurize_rows: int | None
    train_rows: int | None
    if args.dry_run:
        device, depths, batch_sizes, compile_sizes = "cpu", (17,), (32, 256), ()
        featurize_rows, train_rows, epochs = 2000, 256, 1
    else:
        if not torch.cuda.is_available():
            raise UsageError("no CUDA device visible to torch; run on a GPU machine, or pass --dry-run")
        device, depths, batch_sizes, compile_sizes = "cuda", (17, 48), GPU_BATCH_SIZES, COMPILE_BATCH_SIZES
        featurize_rows, train_rows, epochs = None, None, args.epochs
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32; bf16 is its own row
    results: dict[str, Any] = {"machine": machine_info(device), "dry_run": args.dry_run, "training": [],
                               "matmul_peak": [], "skipped": []}  # fmt: skip
    say(f"gpu_check on {results['machine'].get('gpu', 'cpu')} (torch {torch.__version__}, "
        f"python {results['machine']['python']}){' DRY RUN' if args.dry_run else ''}")  # fmt: skip

    def left() -> float:
        return args.budget_s - (time.perf_counter() - started)

    say("featurising formation_energy (numpy magpie) ...")
    data = load_speed_data(featurize_rows)
    results["featurisation"] = feat = data["featurisation"]
    say(f"featurised {feat['compositions']:,} formulas in {feat['seconds']:.2f} s "
        f"({feat['compositions_per_second']:,.0f}/s; {feat['rows_dropped']} unreadable)")  # fmt: skip

    print_training_header()
    # The full-data fits and the paper regime need most of the budget; the compiled rows (tens of seconds of
    # compilation each) come last, so a slow compiler costs only them.
    throughput_deadline = args.budget_s * THROUGHPUT_SHARE
    peaks: dict[tuple[int, int, bool], float] = {}
    plan = [(depth, batch_size, amp, False) for depth in depths for batch_size in batch_sizes for amp in (False, True)]
    plan += [
        (depth, batch_size, amp, True) for depth in depths for batch_size in compile_sizes for amp in (False, True)
    ]
    for depth, batch_size, amp, compile_ in plan:
        if time.perf_counter() - started > throughput_deadline:
            results["skipped"].append(f"irnet-{depth} batch {batch_size} amp={amp} compile={compile_}")
            continue
        steps = 2 if args.dry_run else max(30, 16384 // batch_size)
        steps = min(steps, len(data["X_train"]) // batch_size)
        if (depth, batch_size, amp) not in peaks:
            dtype = "bfloat16" if amp and device == "cuda" else "float32"
            peak = matmul_peak(linear_shapes(depth, data["X_train"].shape[1]), batch_size, device=device,
                               repeats=max(2, steps // 2), dtype=dtype, min_seconds=0.3)  # fmt: skip
            results["matmul_peak"].append({"model": f"irnet-{depth}", **peak})
            peaks[depth, batch_size, amp] = peak["gflops"]
        row = training_throughput(data, depth=depth, batch_size=batch_size, steps=steps, device=device, amp=amp,
                                  compile=compile_)  # fmt: skip
        row["fraction_of_mm_peak"] = row["gflops"] / peaks[depth, batch_size, amp]
        results["training"].append(row)
        print_training_row(row, peaks[depth, batch_size, amp])
    if results["skipped"]:
        say(f"time budget: skipped {len(results['skipped'])} throughput rows: {', '.join(results['skipped'])}")

    results["full_data"] = full_data_fits(data, device=device, deadline=started + args.budget_s * FULL_DATA_SHARE,
                                          rows=train_rows, max_epochs=2 if args.dry_run else None)  # fmt: skip
    results["paper_regime"] = paper_regime_run(data, device=device, epochs=epochs, time_limit_s=max(10.0, left()),
                                               rows=train_rows)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "gpu_check.json", "w") as handle:
        json.dump(results, handle, indent=1)
    say(f"done in {time.perf_counter() - started:.0f} s; wrote {args.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
