"""The report's figures, each returned as PNG bytes (nothing is written here; build.py writes atomically).

Every figure is drawn from the collected frames only, so a figure can always be traced back to runs.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator

from benchmarks.metrics import mae
from reports.declared import color, family, recorded
from reports.scaling import PowerLaw
from reports.stats import RankTest
from studies import schema
from studies.registry import BENCHMARK_MODELS

DPI = 110


def network_models(models: pd.Series) -> tuple[str, ...]:
    """The networks among ``models`` (the paper's central comparison) in the default comparison's order (IRNet,
    SRNet, plain), then any other by name."""
    order = {name: i for i, name in enumerate(BENCHMARK_MODELS)}
    found = {str(m) for m in models if family(str(m)) == "network"}
    return tuple(sorted(found, key=lambda m: (order.get(m, len(order)), m)))


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _log_y(ax: Axes) -> None:
    """Log-scaled y with plain numbers as labels (a narrow range otherwise reads "2×10²")."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _legend_below(ax: Axes, ncol: int = 3) -> None:
    # Below the axes: curves and bars stay visible whatever their shape.
    ax.legend(fontsize=8, ncol=ncol, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)


def _mean_curve(runs: pd.DataFrame, column: str) -> pd.Series:
    """Mean over runs at each step reached by at least half of the runs (early stopping ends runs unevenly)."""
    table = runs.pivot_table(index="step", columns="run_id", values=column, aggfunc="first")
    enough = table.notna().sum(axis=1) >= max(1, math.ceil(table.shape[1] / 2))
    return table[enough].mean(axis=1)


def convergence(curves: pd.DataFrame, task: str) -> dict[int, bytes]:
    """Per depth: validation (solid) and training (dashed) MAE against epoch of the networks (IRNet, SRNet, plain
    in the default comparison)."""
    networks = network_models(curves.loc[curves["task"] == task, "model"])
    rows = curves[(curves["task"] == task) & curves["model"].isin(networks) & curves["depth"].notna()]
    figures: dict[int, bytes] = {}
    for depth, at_depth in rows.groupby("depth"):
        fig, ax = plt.subplots(figsize=(7.0, 4.2))
        drawn = 0
        for model in networks:
            runs = at_depth[at_depth["model"] == model]
            if runs.empty:
                continue
            n = runs["run_id"].nunique()
            val = _mean_curve(runs, schema.CURVE_VAL)
            train = _mean_curve(runs, schema.CURVE_TRAIN)
            if len(val) < 2:  # a refit that logged one step (or none) has no curve to draw
                continue
            drawn += 1
            ax.plot(val.index, val.values, color=color(model), lw=1.8, label=f"{model} validation (n={n})")
            ax.plot(train.index, train.values, color=color(model), lw=1.0, ls="--", label=f"{model} training")
        if not drawn:
            plt.close(fig)
            continue
        _log_y(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("MAE (mean over runs)")
        ax.set_title(f"{task}: convergence at depth {int(depth)}")
        ax.grid(alpha=0.3, which="both")
        _legend_below(ax)
        figures[int(depth)] = _png(fig)
    return figures


def parity(predictions: pd.DataFrame, task: str, models: list[str], unit: str = "") -> bytes:
    """Predicted against true test values, one panel per model, pooled over folds (lowest seed only)."""
    rows = predictions[predictions["task"] == task]
    seed = int(rows["seed"].min())
    rows = rows[rows["seed"] == seed]
    n = len(models)
    ncols = n if n <= 5 else 4  # one row up to five models, else rows of four
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    lo = float(min(rows["y_true"].min(), rows["y_pred"].min()))
    hi = float(max(rows["y_true"].max(), rows["y_pred"].max()))
    pad = 0.03 * (hi - lo or 1.0)
    for ax, model in zip(axes.flat, models, strict=False):  # the grid may have spare axes
        part = rows[rows["model"] == model]
        ax.scatter(part["y_true"], part["y_pred"], s=6, alpha=0.5, color=color(model), edgecolors="none")
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=0.8)
        score = mae(part["y_true"], part["y_pred"]) if len(part) else math.nan
        ax.set_title(f"{model}  MAE {score:.4g}", fontsize=9)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    suffix = f" ({unit})" if unit else ""
    fig.supxlabel(f"true{suffix}", fontsize=9)
    fig.supylabel(f"predicted{suffix}", fontsize=9)
    fig.suptitle(f"{task}: test predictions, all folds, seed {seed}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def tuning_history(best: pd.DataFrame, task: str) -> bytes | None:
    """Best validation MAE so far against trial number, mean over each model's tuning studies."""
    rows = best[best["task"] == task]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for model, part in rows.groupby("model"):
        table = part.pivot_table(index="trial_number", columns="parent_run_id", values="best_so_far", aggfunc="first")
        table = table.ffill()  # a pruned or failed trial keeps the previous best
        mean = table.mean(axis=1)
        ax.step(mean.index, mean.values, where="post", color=color(model), label=f"{model} ({table.shape[1]} studies)")
    ax.set_xlabel("trial number")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("best validation MAE so far")
    _log_y(ax)
    ax.set_title(f"{task}: tuning history (mean over folds and seeds)")
    ax.grid(alpha=0.3, which="both")
    _legend_below(ax)
    return _png(fig)


def times(summary: pd.DataFrame, task: str) -> bytes:
    """Mean refit (training) and tuning wall-clock seconds per model, log scale."""
    rows = summary[summary["task"] == task].sort_values("rank")
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    tuning = rows["tuning_seconds"].fillna(0.0).to_numpy()
    train = rows["train_seconds"].fillna(0.0).to_numpy()
    colors = [color(m) for m in rows["model"]]
    ax.barh(y - 0.2, train, height=0.4, color=colors, label="refit of the best configuration (model colour)")
    ax.barh(y + 0.2, tuning, height=0.4, color="#c7c7c7", label="tuning, all trials")
    ax.set_yticks(y, rows["model"])
    ax.invert_yaxis()
    positive = np.concatenate([tuning, train])
    if (positive > 0).any():
        ax.set_xscale("log")
    ax.set_xlabel("wall-clock seconds (mean over folds and seeds)")
    ax.set_title(f"{task}: time per model")
    ax.grid(alpha=0.3, axis="x", which="both")
    _legend_below(ax, ncol=2)
    fig.tight_layout()
    return _png(fig)


def depth(table: pd.DataFrame, task: str) -> bytes:
    """Test MAE against depth, one line per architecture (mean over runs; bars: the std over them)."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for arch, part in table.groupby("arch"):
        # The architecture's own model's colour where its runs are here, else that of one of its runs' models.
        names = [str(arch), *str(part["models"].iloc[-1]).split(", ")]
        c = next((color(name) for name in names if recorded(name)), color(str(arch)))
        ax.errorbar(part["depth"], part["mae_mean"], yerr=part["mae_std"].fillna(0.0), fmt="o-", color=c, lw=1.6,
                    ms=5, capsize=3, label=str(arch))  # fmt: skip
    ax.set_xticks(sorted(table["depth"].unique()))
    ax.set_xlabel("depth (layers on the main path, head included)")
    ax.set_ylabel("test MAE")
    ax.set_title(f"{task}: test MAE against depth")
    ax.grid(alpha=0.3)
    _legend_below(ax, ncol=4)
    fig.tight_layout()
    return _png(fig)


def critical_difference(test: RankTest) -> bytes:
    """Demšar's (2006) critical-difference diagram: each model at its mean rank over the tasks (1 = best, on
    the left), the better half labelled on the left, the rest on the right; a thick bar joins models whose
    mean ranks differ by less than the Nemenyi critical difference, drawn to scale above the axis."""
    models, ranks = list(test.mean_ranks), list(test.mean_ranks.values())
    k = len(models)
    n_left = math.ceil(k / 2)  # the taller side: labels stack one per row below the axis
    groups = test.groups()
    height = 1.6 + 0.32 * n_left + 0.18 * len(groups)
    fig, ax = plt.subplots(figsize=(7.0, height))
    ax.set_xlim(0.4, k + 0.6)
    bottom = -(n_left + 1.2) * 0.32 - 0.2
    ax.set_ylim(bottom, 1.0)
    ax.axis("off")
    ax.hlines(0.0, 1, k, color="black", lw=1.2)  # the rank axis
    for r in range(1, k + 1):
        ax.vlines(r, 0.0, 0.08, color="black", lw=1.0)
        ax.text(r, 0.14, str(r), ha="center", va="bottom", fontsize=9)
    cd = test.critical_difference
    ax.hlines(0.62, 1, 1 + cd, color="black", lw=1.4)  # the critical difference, to the axis' scale
    ax.vlines([1, 1 + cd], 0.56, 0.68, color="black", lw=1.0)
    ax.text(1 + cd / 2, 0.72, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, (model, rank) in enumerate(zip(models, ranks, strict=True)):
        left = i < n_left
        row = i if left else k - 1 - i
        y = -(row + 1) * 0.32 - 0.18 * len(groups)
        x_text = 0.5 if left else k + 0.5
        ax.plot([rank, rank, x_text], [0.0, y, y], color=color(model), lw=1.2)
        ax.text(x_text + (-0.05 if left else 0.05), y, f"{model} ({rank:.2f})", ha="right" if left else "left",
                va="center", fontsize=9)  # fmt: skip
    for j, members in enumerate(groups):  # the cliques, just under the axis
        low, high = test.mean_ranks[members[0]], test.mean_ranks[members[-1]]
        ax.hlines(-0.1 - 0.18 * j, low - 0.03, high + 0.03, color="black", lw=3.5)
    ax.set_title(
        f"Mean rank over {len(test.tasks)} tasks; Friedman p = {test.p_value:.3g}, Nemenyi critical difference at "
        f"{test.alpha:g}",
        fontsize=9,
    )
    fig.tight_layout()
    return _png(fig)


def _log_log(ax: Axes) -> None:
    """Log axes labelled with plain numbers (0.2, 3,000) rather than 2e-01 or 3e+03."""

    def plain(value: float, _: int) -> str:
        return f"{value:,.6g}"

    def sparse(value: float, _: int) -> str:
        # Minor ticks: label only 2x and 5x a power of ten, or the labels run into each other (200,000 300,000).
        leading = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0.0
        return plain(value, _) if any(math.isclose(leading, k) for k in (2, 5)) else ""

    ax.xaxis.set_major_formatter(FuncFormatter(plain))
    ax.xaxis.set_minor_formatter(FuncFormatter(sparse))
    # MAEs usually span less than a decade: every minor tick of y keeps its label.
    ax.yaxis.set_major_formatter(FuncFormatter(plain))
    ax.yaxis.set_minor_formatter(FuncFormatter(plain))
    ax.tick_params(which="minor", labelsize=7)


def scaling(points: pd.DataFrame, fits: dict[str, PowerLaw], task: str, crossing: float | None = None) -> bytes:
    """Test MAE against training rows, log-log: per model the mean over runs (markers, solid), the min-max
    band over folds and seeds, and the fitted power law (dashed); a dotted vertical line at the crossover."""
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for model, part in points.groupby("model"):
        part = part.sort_values("train_size")
        c = color(str(model))
        fit = fits.get(model)
        label = f"{model} (b = {fit.b:.2f})" if fit is not None else str(model)
        ax.plot(part["train_size"], part["mae_mean"], "o-", color=c, lw=1.6, ms=4, label=label)
        ax.fill_between(part["train_size"], part["mae_min"], part["mae_max"], color=c, alpha=0.15, lw=0)
        if fit is not None:
            grid = np.geomspace(fit.size_min, fit.size_max, 50)
            ax.plot(grid, fit(grid), color=c, lw=1.0, ls="--")
    if crossing is not None:
        ax.axvline(crossing, color="black", lw=0.9, ls=":", label=f"crossover N ≈ {crossing:,.0f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_log(ax)
    ax.set_xlabel("training rows N")
    ax.set_ylabel("test MAE (mean over folds and seeds)")
    ax.set_title(f"{task}: test MAE against training rows (band: min-max; dashed: a·N^-b fit)")
    ax.grid(alpha=0.3, which="both")
    _legend_below(ax)
    return _png(fig)


def compute(points: pd.DataFrame, task: str) -> bytes:
    """Test MAE against the compute each model spent (tuning + refit seconds), log x; one point per size."""
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for model, part in points.groupby("model"):
        part = part.sort_values("train_size")
        ax.plot(
            part["compute_seconds"], part["mae_mean"], "o-", color=color(str(model)), lw=1.4, ms=4, label=str(model)
        )
        last = part.iloc[-1]  # label the largest size so the direction of each line is readable
        ax.annotate(f"{int(last['train_size']):,}", (last["compute_seconds"], last["mae_mean"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points", color=color(str(model)))  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_log(ax)
    ax.set_xlabel("wall-clock seconds spent: tuning + refit (mean over folds and seeds)")
    ax.set_ylabel("test MAE")
    ax.set_title(f"{task}: test MAE against compute (one point per training size)")
    ax.grid(alpha=0.3, which="both")
    _legend_below(ax)
    return _png(fig)


# Published reference predictions and post-hoc ensembles have no declared colour: their own shades, and a hatch.
REFERENCE_COLORS = ("#5b4e2f", "#8a7a4f", "#b3a57a", "#d4c9a6", "#ece4cb")  # sand, hatched
ENSEMBLE_COLORS = ("#1a1a1a", "#3d3d6b", "#6b3d3d", "#3d6b5a", "#5a3d6b")  # dark, dotted


def element_errors(table: pd.DataFrame, groups: dict[str, int], task: str, unit: str = "") -> bytes:
    """Test MAE of every model of ``table`` (``model, kind, mae`` and one column per element group) over all rows
    and per element group (bars, grouped by what they cover): our models in their colours, ensembles dark and
    dotted, published reference predictions in greys, hatched."""
    columns = ["mae", *groups]
    labels = ["all rows", *(f"{g}\n({n:,} rows)" for g, n in groups.items())]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 1.5 * len(columns)), 4.4))
    width = 0.8 / max(1, len(table))
    x = np.arange(len(columns))
    counters = {"ensemble": 0, "published": 0}
    for i, record in enumerate(table.to_dict("records")):
        values = [float(record[c]) for c in columns]
        kind, model = str(record["kind"]), str(record["model"])
        hatch = None
        if kind == "published":
            c = REFERENCE_COLORS[counters["published"] % len(REFERENCE_COLORS)]
            hatch = "//"
        elif kind == "ensemble":
            c = ENSEMBLE_COLORS[counters["ensemble"] % len(ENSEMBLE_COLORS)]
            hatch = ".."
        else:
            c = color(model)
        if kind in counters:
            counters[kind] += 1
        ax.bar(x - 0.4 + (i + 0.5) * width, values, width, color=c, hatch=hatch, edgecolor="white", lw=0.4,
               label=model)  # fmt: skip
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel(f"test MAE ({unit})" if unit else "test MAE")
    ax.set_title(f"{task}: test MAE by number of elements (folds pooled, seeds averaged per row)")
    ax.grid(alpha=0.3, axis="y")
    _legend_below(ax, ncol=4)
    fig.tight_layout()
    return _png(fig)
