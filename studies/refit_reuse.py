"""Keeping a trial's fitted model so that a refit which would repeat it exactly can reuse it.

A trial that beats every earlier one saves its model and report under ``OUT/trial_models/<study>/`` with the
digest of what decided the fit (:func:`fit_identity`: full parameters, seed, training and validation rows);
the refit loads it only when its own identity is the same, i.e. when it would be the same computation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.atomic import atomic_write
from benchmarks.contract import FitReport, Model
from benchmarks.splits import TrainingData

log = logging.getLogger(__name__)


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as plain JSON values (numpy scalars to Python)."""
    return json.loads(json.dumps(dict(params), default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def fit_identity(params: Mapping[str, Any], seed: int, training: TrainingData) -> str:
    """A digest of what decides a fit: the full model parameters, the seed, and the training and validation
    rows (ids, features, targets). Two fits with one identity are the same computation."""
    digest = hashlib.sha256(json.dumps(jsonable(params), sort_keys=True).encode())
    digest.update(f"|seed={int(seed)}|".encode())
    for ids in (training.train_ids, training.val_ids):
        digest.update("\n".join(map(str, ids)).encode() + b"|")
    for array in (training.X_train, training.y_train, training.X_val, training.y_val):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


def save_trial_fit(folder: Path, number: int, model: Model, report: FitReport, identity: str) -> Path:
    """Save a trial's fitted model and its report (atomically; the report file, written last, names the
    model file and the fit identity). Returns the report file."""
    model_path = model.save(folder / f"trial-{number}.model.pkl")
    fit_path = folder / f"trial-{number}.fit.pkl"
    with atomic_write(fit_path, "wb") as handle:
        pickle.dump({"identity": identity, "model_file": model_path.name, "report": report}, handle)
    return fit_path


def load_trial_fit(fit_path: str | Path, identity: str, *, device: str = "cpu") -> tuple[Model, FitReport] | None:
    """The saved model and report of a trial whose fit has ``identity``; None when the file is missing (e.g.
    the trial ran on another machine) or was made by a different fit."""
    fit_path = Path(fit_path)
    try:
        with open(fit_path, "rb") as handle:
            saved = pickle.load(handle)
        if saved.get("identity") != identity:
            return None
        return Model.load(fit_path.parent / saved["model_file"], device=device), saved["report"]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, AttributeError, ImportError):
        log.warning("could not reuse the trial model %s; refitting", fit_path, exc_info=True)
        return None
