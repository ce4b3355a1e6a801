"""The two figures each final run carries: a parity plot of the test predictions and a convergence plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contract import CurvePoint
from benchmarks.metrics import mae


def _pyplot() -> Any:  # the matplotlib.pyplot module, imported (with the Agg backend) on first use
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def parity_plot(y_true: np.ndarray, y_pred: np.ndarray, path: Path, *, title: str, unit: str = "") -> Path:
    """Predicted against true test values, with the y = x line and the test MAE in the title."""
    plt = _pyplot()
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    test_mae = mae(y_true, y_pred)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.scatter(y_true, y_pred, s=6, alpha=0.35 if len(y_true) > 2000 else 0.7, linewidths=0)
    finite = np.concatenate([y_true, y_pred])
    finite = finite[np.isfinite(finite)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
    label = f" ({unit})" if unit else ""
    ax.set_xlabel(f"true{label}")
    ax.set_ylabel(f"predicted{label}")
    ax.set_title(f"{title}\ntest MAE {test_mae:.4g}{label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def convergence_plot(
    curve: Sequence[CurvePoint],
    history: Sequence[tuple[int, str, float | None]],
    path: Path,
    *,
    title: str,
    step_name: str = "step",
) -> Path:
    """Left: the refit's train and validation MAE per step. Right: each trial's validation MAE and the
    running best, over trial number (how tuning converged)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    steps = [p.step for p in curve]
    for name, values in (("train", [p.train_mae for p in curve]), ("validation", [p.val_mae for p in curve])):
        if any(math.isfinite(v) for v in values):
            left.plot(steps, values, label=name, linewidth=1.0, marker="." if len(steps) < 30 else None)
    left.set_xlabel(step_name)
    left.set_ylabel("MAE")
    left.set_title("refit of the best configuration", fontsize=9)
    if curve and all(p.val_mae > 0 for p in curve):
        left.set_yscale("log")
    left.legend(fontsize=8)

    done = [(n, v) for n, state, v in history if state == "COMPLETE" and v is not None]
    pruned = [(n, v) for n, state, v in history if state == "PRUNED" and v is not None]
    if done:
        done_numbers, done_values = zip(*done, strict=True)
        right.scatter(done_numbers, done_values, s=14, label="complete")
        best = np.minimum.accumulate(np.asarray(done_values, dtype=np.float64))
        right.step(done_numbers, best, where="post", color="black", linewidth=1.0, label="best so far")
    if pruned:
        pruned_numbers, pruned_values = zip(*pruned, strict=True)
        right.scatter(pruned_numbers, pruned_values, s=14, marker="x", label="pruned (last reported)")
    from matplotlib.ticker import MaxNLocator

    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("trial")
    right.set_ylabel("validation MAE")
    right.set_title("tuning", fontsize=9)
    if done or pruned:
        right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
