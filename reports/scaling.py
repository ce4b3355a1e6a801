"""Scaling studies: test MAE against training rows, power-law fits, and where IRNet meets the tree ensembles.

A task has a scaling study when its finished parent runs sit at two or more training sizes (``train_size``,
see :func:`reports.collect.add_train_size`), all scored on the same test set. Conventions:

- A model's score at a size is the mean test MAE over its (fold, seed) runs at that size; the spread shown is
  their min-max and population std.
- Power law per model: MAE = a * N^-b, fitted by least squares of log(mean MAE) on log(N) over the sizes.
- The best tree ensemble is chosen by the measured points: among the models of the ``tree`` family (as their
  runs recorded it, :mod:`reports.declared`), the one with the lowest mean MAE at the largest size at which the
  most tree models ran.
- The crossover is where the two fitted curves meet: log N* = (log a_irnet - log a_tree) / (b_irnet - b_tree),
  both fitted over the sizes both models ran (the measured range of the comparison).
  Its interval comes from a seeded bootstrap that refits both power laws and recomputes N* per resample (the
  percentile interval over resamples with a crossing). Where every (model, size) has test predictions on one
  common set of test rows, a resample draws the test rows with replacement (the same draw for both models and
  every size, so the comparison stays paired) and, at each size, that model's seeds with replacement: one run
  per size (a fixed split, one seed) still gets an interval, from the sampling of the test set. Otherwise it
  resamples each size's run scores (folds x seeds), and gives no interval when there is one run per size.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.declared import family
from reports.stats import CUT_SHORT, REFERENCE_MODEL, headline_size, stop_counts
from reports.tables import refit_seconds_run
from studies import schema

TREE_FAMILY = "tree"
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def size_points(finals: pd.DataFrame, task: str) -> pd.DataFrame:
    """One row per (model, train_size) of ``task``: run count, MAE mean/std/min/max, mean seconds spent,
    why the refits stopped (``refit_stopped``, counted) and ``n_cut_short`` (refits that hit their time limit).

    ``compute_seconds`` is tuning plus refit wall-clock seconds (a missing time counts as 0; a refit that kept
    the best trial's model adds nothing, as that fit is already in the tuning seconds), mean over runs.
    """
    rows = finals[finals["task"] == task].assign(
        compute_seconds=lambda f: f["tuning_seconds"].fillna(0.0) + refit_seconds_run(f),
        cut_short=lambda f: f["refit_stopped"] == CUT_SHORT,
    )
    groups = rows.groupby(["model", "train_size"], sort=True)
    out = groups.agg(
        n_runs=("run_id", "size"),
        mae_mean=(schema.TEST_MAE, "mean"),
        mae_std=(schema.TEST_MAE, lambda s: float(np.std(s, ddof=0))),
        mae_min=(schema.TEST_MAE, "min"),
        mae_max=(schema.TEST_MAE, "max"),
        tuning_seconds=("tuning_seconds", "mean"),
        train_seconds=("train_seconds", "mean"),
        compute_seconds=("compute_seconds", "mean"),
        n_cut_short=("cut_short", "sum"),
        refit_stopped=("refit_stopped", stop_counts),
    )
    return out.reset_index()


def has_scaling_study(finals: pd.DataFrame, task: str) -> bool:
    """True when ``task`` has finished runs at two or more training sizes (all above zero)."""
    sizes = finals.loc[finals["task"] == task, "train_size"].unique()
    return len(sizes) >= 2 and bool((sizes > 0).all())


@dataclass(frozen=True)
class PowerLaw:
    """MAE = a * N^-b, fitted on ``n_sizes`` sizes."""

    model: str
    a: float
    b: float
    n_sizes: int
    size_min: int
    size_max: int

    def __call__(self, n: np.ndarray | float) -> np.ndarray | float:
        return self.a * np.power(n, -self.b)


def _fit_log_log(log_n: np.ndarray, log_mae: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (log a, b) of each row of ``log_mae`` (shape (k, sizes)) on ``log_n`` (shape (sizes,))."""
    x = log_n - log_n.mean()
    slope = (log_mae - log_mae.mean(axis=-1, keepdims=True)) @ x / (x @ x)
    intercept = log_mae.mean(axis=-1) - slope * log_n.mean()
    return intercept, -slope


def fit_power_law(model: str, sizes: np.ndarray, maes: np.ndarray) -> PowerLaw:
    """Fit MAE = a N^-b by least squares in log-log space; needs two or more distinct positive sizes."""
    sizes = np.asarray(sizes, dtype=np.float64)
    maes = np.asarray(maes, dtype=np.float64)
    if len(np.unique(sizes)) < 2 or (sizes <= 0).any() or (maes <= 0).any():
        raise ValueError(f"{model}: a power law needs two or more distinct positive sizes and positive MAEs")
    log_a, b = _fit_log_log(np.log(sizes), np.log(maes)[None, :])
    return PowerLaw(model, float(np.exp(log_a[0])), float(b[0]), len(sizes), int(sizes.min()), int(sizes.max()))


def fit_all(points: pd.DataFrame) -> dict[str, PowerLaw]:
    """A power law per model with scores at two or more sizes (``points`` from :func:`size_points`)."""
    fits: dict[str, PowerLaw] = {}
    for model, part in points.groupby("model"):
        part = part[part["mae_mean"] > 0]
        if part["train_size"].nunique() >= 2:
            fits[str(model)] = fit_power_law(str(model), part["train_size"].to_numpy(), part["mae_mean"].to_numpy())
    return fits


FAR_OUTSIDE = 100.0  # a crossing further than this factor outside the measured sizes is not located by the fits


def crossing(
    log_a1: float | np.ndarray, b1: float | np.ndarray, log_a2: float | np.ndarray, b2: float | np.ndarray
) -> np.ndarray:
    """log N where a1 N^-b1 = a2 N^-b2 (NaN where the curves are parallel), elementwise for arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.asarray(log_a1) - np.asarray(log_a2)) / (np.asarray(b1) - np.asarray(b2))
    return np.where(np.isfinite(out), out, np.nan)


@dataclass(frozen=True)
class Crossover:
    """Where IRNet's fitted curve meets the best tree ensemble's, on one task."""

    task: str
    reference: str
    tree_model: str
    size_min: int  # the measured range both models cover
    size_max: int
    crossing: float | None  # N*, None when the fitted curves are parallel
    ci_low: float | None  # percentile interval of N* over resamples with a crossing
    ci_high: float | None
    share_in_range: float  # share of resamples whose curves cross inside [size_min, size_max]; NaN without resamples
    n_resamples: int  # 0 when there is nothing to resample (one run per size and no common test rows)
    resampled: str  # what the bootstrap drew: "test rows and seeds", "run scores" or "" (nothing)
    ahead_small: str  # the model whose fitted curve is lower at size_min
    ahead_large: str  # ... at size_max

    @property
    def in_range(self) -> bool:
        return self.crossing is not None and self.size_min <= self.crossing <= self.size_max

    def statement(self) -> str:
        """The crossover in one or two plain sentences."""
        ref, tree = self.reference, self.tree_model
        span = f"{self.size_min:,}-{self.size_max:,} training rows"
        if self.n_resamples == 0:
            interval = "one run per size and no common test rows: nothing to resample, so no interval"
        elif self.ci_low is None:
            interval = f"no resample of {self.n_resamples} crosses"
        else:
            interval = (
                f"{CONFIDENCE:.0%} bootstrap interval {_n(self.ci_low)}-{_n(self.ci_high)}, "
                f"{self.share_in_range:.0%} of {self.n_resamples} resamples of {self.resampled} cross inside the "
                "measured range"
            )
        if self.in_range:
            return (
                f"{ref}'s fitted curve meets {tree}'s at N ≈ {_n(self.crossing)} training rows ({interval}): "
                f"below it {self.ahead_small} is ahead, above it {self.ahead_large}."
            )
        text = f"{ref} and {tree} do not cross in the measured range ({span}): {self.ahead_large} is ahead throughout."
        if self.crossing is None:
            return text + " Their fitted curves are parallel (equal b) and never meet."
        where = "beyond the largest" if self.crossing > self.size_max else "below the smallest"
        if not self.size_min / FAR_OUTSIDE <= self.crossing <= self.size_max * FAR_OUTSIDE:
            inside = (
                ""
                if self.n_resamples == 0
                else (
                    f"; {self.share_in_range:.0%} of {self.n_resamples} resamples of {self.resampled} cross inside it"
                )
            )
            return text + (
                f" Their fitted curves are nearly parallel: they would meet only more than {FAR_OUTSIDE:g}x "
                f"{where} measured size (N ≈ {_n(self.crossing)}), which fits over this range cannot place{inside}."
            )
        return (
            text + f" Extrapolated, the fitted curves would meet at N ≈ {_n(self.crossing)}, "
            f"{where} measured size ({interval})."
        )


def common_means(points: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """The two models' mean test MAE (``points`` from :func:`size_points`) at the sizes both ran: index
    ``train_size`` ascending, one column per model."""
    both = points[points["model"].isin([first, second])]
    return both.pivot(index="train_size", columns="model", values="mae_mean").dropna().sort_index()


def measured_leaders(points: pd.DataFrame, first: str, second: str) -> str:
    """Which of two models has the lower measured mean MAE at each size both ran, consecutive sizes joined, e.g.
    "xgboost lower at 1,000-30,000 rows, irnet lower at 239,190 rows": the points a fitted crossing smooths over."""
    wide = common_means(points, first, second)
    lower = np.where(wide[first] < wide[second], first, second)
    parts = []
    for model, group in itertools.groupby(zip(wide.index, lower, strict=True), key=lambda pair: pair[1]):
        sizes = [int(n) for n, _ in group]
        span = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,}"
        parts.append(f"{model} lower at {span} rows")
    return ", ".join(parts)


def _n(value: float | None) -> str:
    """A row count as people read it: 12,345, or 3.4e+12 / 0.0021 when an extrapolation lands far out."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.0f}" if 1 <= value < 1e9 else f"{value:.2g}"


def best_tree_model(points: pd.DataFrame, fits: dict[str, PowerLaw]) -> str | None:
    """The tree-family model (with a fit) whose measured mean MAE is lowest at the largest size at which the most
    tree models ran (so one booster run at a larger size first does not win by having no rival there)."""
    trees = [m for m in fits if family(m) == TREE_FAMILY]
    if not trees:
        return None
    at = points[points["model"].isin(trees)]
    largest = at[at["train_size"] == headline_size(at)]
    return str(largest.sort_values(["mae_mean", "model"]).iloc[0]["model"])


def _resampled_log_means(
    finals: pd.DataFrame, task: str, model: str, sizes: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, len(sizes)) log of the mean MAE of each size's runs, resampled with replacement."""
    rows = finals[(finals["task"] == task) & (finals["model"] == model)]
    out = np.empty((n, len(sizes)))
    for j, size in enumerate(sizes):
        scores = rows.loc[rows["train_size"] == size, schema.TEST_MAE].to_numpy(dtype=np.float64)
        out[:, j] = np.log(scores[rng.integers(0, len(scores), size=(n, len(scores)))].mean(axis=1))
    return out


def _row_errors(predictions: pd.DataFrame, task: str, model: str, size: int) -> pd.DataFrame:
    """Absolute test errors of one (model, size): index (fold, id), one column per seed."""
    rows = predictions[
        (predictions["task"] == task) & (predictions["model"] == model) & (predictions["train_size"] == size)
    ]
    errors = rows.assign(error=(rows["y_pred"] - rows["y_true"]).abs())
    return errors.pivot_table(index=["fold", "id"], columns="seed", values="error", aggfunc="mean")


def _row_resampled_log_means(
    predictions: pd.DataFrame | None, task: str, sizes: dict[str, np.ndarray], n: int, rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    """Per model, (n, len(its sizes)) log mean test MAE with test rows and seeds drawn with replacement; None
    unless every (model, size) was scored, for every seed, on one common set of test rows."""
    if predictions is None or predictions.empty:
        return None
    tables = {
        (model, int(size)): _row_errors(predictions, task, model, int(size))
        for model, model_sizes in sizes.items()
        for size in model_sizes
    }
    if any(t.empty or t.isna().to_numpy().any() for t in tables.values()):
        return None  # a seed that missed a fold: rows x seeds is not a full grid
    first = next(iter(tables.values())).index
    if any(not t.index.sort_values().equals(first.sort_values()) for t in tables.values()):
        return None  # the sizes or models were not all scored on the same test rows
    rows_index = first.sort_values()
    matrices = {key: t.loc[rows_index].to_numpy(dtype=np.float64) for key, t in tables.items()}  # (rows, seeds)
    n_rows = len(rows_index)
    out = {model: np.empty((n, len(model_sizes))) for model, model_sizes in sizes.items()}
    chunk = max(1, 2_000_000 // n_rows)  # bounded memory: a (chunk, rows) weight matrix at a time
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        # How often each test row is drawn; one draw shared by every model and size, so the resample stays paired.
        weights = np.stack([np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows) for _ in range(k)])
        for model, model_sizes in sizes.items():
            for j, size in enumerate(model_sizes):
                per_seed = weights @ matrices[(model, int(size))] / n_rows  # (k, seeds): MAE of each seed
                seed_draw = rng.integers(0, per_seed.shape[1], size=per_seed.shape)
                mae = np.take_along_axis(per_seed, seed_draw, axis=1).mean(axis=1)
                out[model][start : start + k, j] = np.log(mae)
    return out


def crossover(
    finals: pd.DataFrame,
    task: str,
    points: pd.DataFrame,
    tree_model: str,
    reference: str = REFERENCE_MODEL,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    predictions: pd.DataFrame | None = None,
) -> Crossover | None:
    """Where ``reference``'s fitted curve meets ``tree_model``'s, with a seeded bootstrap interval: over test
    rows and seeds where ``predictions`` cover one common test set, over run scores otherwise. Both curves are
    fitted (on ``points``, :func:`size_points`) over the sizes both models ran (a size only one of them reached
    so far would bend its curve alone); None when they share fewer than two."""
    means = common_means(points, reference, tree_model)
    if len(means) < 2:
        return None
    common = means.index.to_numpy()
    ref, tree = (fit_power_law(m, common, means[m].to_numpy()) for m in (reference, tree_model))
    size_min, size_max = int(common.min()), int(common.max())
    rows = finals[(finals["task"] == task) & finals["model"].isin([reference, tree_model])]
    rows = rows[rows["train_size"].isin(common)]
    point = crossing(math.log(ref.a), ref.b, math.log(tree.a), tree.b)
    n_star = None if np.isnan(point) else float(np.exp(min(float(point), 700.0)))

    rng = np.random.default_rng(seed)
    sizes = dict.fromkeys((reference, tree_model), common.astype(np.float64))
    by_rows = _row_resampled_log_means(predictions, task, sizes, n_resamples, rng)
    drawn = "test rows and seeds" if by_rows is not None else "run scores"
    runs_per_size = rows.groupby(["model", "train_size"]).size()
    if by_rows is None and (runs_per_size == 1).all():
        n_resamples, drawn = 0, ""  # every resample would repeat the measured points: false certainty
    resampled = {}
    for model, model_sizes in sizes.items():
        log_means = (
            by_rows[model]
            if by_rows is not None
            else _resampled_log_means(finals, task, model, model_sizes, n_resamples, rng)
        )
        resampled[model] = _fit_log_log(np.log(model_sizes), log_means)
    log_n = crossing(*resampled[reference], *resampled[tree_model]) if n_resamples else np.array([])
    defined = log_n[~np.isnan(log_n)]
    alpha = (1.0 - CONFIDENCE) / 2.0
    ci_low = ci_high = None
    if defined.size:
        lo, hi = np.quantile(defined, [alpha, 1.0 - alpha])
        ci_low, ci_high = float(np.exp(min(lo, 700.0))), float(np.exp(min(hi, 700.0)))
    inside = (log_n >= math.log(size_min)) & (log_n <= math.log(size_max))

    def lower_at(n: int) -> str:
        return reference if ref(n) < tree(n) else tree_model

    return Crossover(
        task=task,
        reference=reference,
        tree_model=tree_model,
        size_min=int(size_min),
        size_max=int(size_max),
        crossing=n_star,
        ci_low=ci_low,
        ci_high=ci_high,
        share_in_range=float(inside.mean()) if n_resamples else math.nan,
        n_resamples=n_resamples,
        resampled=drawn,
        ahead_small=lower_at(size_min),
        ahead_large=lower_at(size_max),
    )


@dataclass(frozen=True)
class ScalingStudy:
    """Everything the report shows about one task's scaling study."""

    task: str
    points: pd.DataFrame
    fits: dict[str, PowerLaw]
    tree_model: str | None
    crossover: Crossover | None
    note: str  # why there is no crossover, "" when there is one


def scaling_study(
    finals: pd.DataFrame, task: str, reference: str = REFERENCE_MODEL, predictions: pd.DataFrame | None = None
) -> ScalingStudy | None:
    """The scaling study of ``task``; None when its runs sit at fewer than two sizes. ``predictions`` (the
    runs' test predictions) let the crossover's bootstrap draw test rows; without them it draws run scores."""
    if not has_scaling_study(finals, task):
        return None
    points = size_points(finals, task)
    fits = fit_all(points)
    tree_model = best_tree_model(points, fits)
    result = None
    if reference not in fits:
        note = f"{reference} has no runs at two or more sizes: no crossover."
    elif tree_model is None:
        note = "No tree ensemble has runs at two or more sizes: no crossover."
    else:
        result = crossover(finals, task, points, tree_model, reference, predictions=predictions)
        note = "" if result else f"{reference} and {tree_model} ran at fewer than two common sizes: no crossover."
    return ScalingStudy(task, points, fits, tree_model, result, note)
