"""Post-hoc ensemble selection over fitted models' predictions, and the weighted mean that applies it.

Greedy ensemble selection with replacement (Caruana, Niculescu-Mizil, Crew and Ksikes, "Ensemble selection from
libraries of models", ICML 2004): start from the empty ensemble; in each of ``rounds`` rounds add the model (a
model may be added again) whose addition gives the lowest MAE of the ensemble's mean prediction on the selection
rows; keep the ensemble of the best round (Caruana et al. select the ensemble size on the hill-climbing set).
A model's weight is the number of times it was added over the rounds kept. The selection rows are the fold's
validation rows, never its test rows. This is the weighted ensemble AutoML systems put on top of their models
(AutoGluon's WeightedEnsemble; TabArena's tuned + ensembled entries, Erickson et al. 2025).

Pure numpy: the report (:mod:`reports.ensembles`) selects and scores with it, and the ensemble's MLflow model
(:mod:`studies.ensemble_model`) predicts with the same :func:`combine`, so that model reproduces the recorded
predictions exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROUNDS = 25  # a few dozen rounds: weights in steps of 1/25 at most (the best round may be earlier)


def greedy_selection(predictions: np.ndarray, y: np.ndarray, rounds: int = ROUNDS) -> tuple[np.ndarray, float]:
    """Selection counts (one per row of ``predictions`` [models, rows]) of Caruana's greedy selection with
    replacement on targets ``y`` [rows], and the ensemble's MAE on those rows. Ties go to the earlier model."""
    preds = np.asarray(predictions, dtype=np.float64)
    target = np.asarray(y, dtype=np.float64)
    if preds.ndim != 2 or preds.shape[1] != target.shape[0] or preds.shape[0] == 0 or rounds < 1:
        raise ValueError(f"predictions {preds.shape} do not match targets {target.shape}")
    counts = np.zeros(preds.shape[0], dtype=np.int64)
    total = np.zeros(preds.shape[1], dtype=np.float64)
    best_counts, best_score = counts.copy(), np.inf
    for size in range(1, rounds + 1):
        scores = np.abs((total[None, :] + preds) / size - target[None, :]).mean(axis=1)
        pick = int(np.argmin(scores))  # the first of equal scores
        counts[pick] += 1
        total += preds[pick]
        if scores[pick] < best_score:
            best_counts, best_score = counts.copy(), float(scores[pick])
    return best_counts, best_score


def weights_of(counts: np.ndarray) -> np.ndarray:
    """Selection counts as weights that sum to one (float64: count / total)."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum()


def combine(weights: Sequence[float], predictions: Sequence[np.ndarray]) -> np.ndarray:
    """The weighted mean of the members' predictions, summed in the members' order (float64). The one way an
    ensemble's prediction is computed (report, recorded run and MLflow model), so they agree to the last bit."""
    if len(weights) != len(predictions) or not len(weights):
        raise ValueError(f"{len(weights)} weights for {len(predictions)} members")
    out = np.zeros(len(predictions[0]), dtype=np.float64)
    for weight, values in zip(weights, predictions, strict=True):
        out += float(weight) * np.asarray(values, dtype=np.float64)
    return out
