"""The one contract every model follows, deep or classical.

A model is constructed from a plain dict of parameters (merged over its declared defaults), fitted on a
training set with a validation set for early stopping, and returns a :class:`FitReport` with its convergence
curve. Models never see test data: the study hands them :class:`benchmarks.splits.TrainingData` only.

A new model is one new module with one subclass of :class:`Model`, plus its search space in ``studies``.
"""
from __future__ import annotations

import abc
import importlib
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from benchmarks.atomic import atomic_write

# Called after every epoch (networks) or boosting round (boosters) with (step, val_mae).
# It may raise (for example ``optuna.TrialPruned``) to stop the fit; the exception propagates out of ``fit``.
StepCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class CurvePoint:
    """One step of a convergence curve: step is the 1-based epoch or boosting round."""

    step: int
    train_mae: float
    val_mae: float
    seconds: float  # wall-clock seconds since the fit started


@dataclass
class FitReport:
    """What a fit returns besides the fitted model."""

    curve: list[CurvePoint]
    best_step: int | None  # the step whose weights/trees were kept; None when the model has no steps
    best_val_mae: float
    fit_seconds: float
    device: str  # "cpu" or "cuda:0", ...
    stopped: str  # "early_stopping", "max_steps", "time_limit" or "completed"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when a GPU is present, else ``cpu``; check an explicit ``cuda`` exists."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from benchmarks.errors import UsageError

        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        from benchmarks.errors import UsageError

        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


class Model(abc.ABC):
    """Base of all models. Subclasses set ``name`` and ``family`` and implement the abstract methods."""

    name: ClassVar[str]  # registry name and value of the MLflow `model` tag, e.g. "irnet", "xgboost"
    family: ClassVar[str]  # "network" or "tree" or "reference"

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        unknown = set(params or {}) - set(self.default_params())
        if unknown:
            from benchmarks.errors import UsageError

            raise UsageError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {sorted(self.default_params())}")
        self.params: dict[str, Any] = {**self.default_params(), **(params or {})}
        self.seed = int(seed)
        self.device = device

    @classmethod
    @abc.abstractmethod
    def default_params(cls) -> dict[str, Any]:
        """The published defaults for networks, the library's for the rest (plus step caps)."""

    @abc.abstractmethod
    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        on_step: StepCallback | None = None,
        time_limit_s: float | None = None,
    ) -> FitReport:
        """Fit on the training rows, early-stopping on the validation rows; return the report."""

    @abc.abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions as a 1-D float64 array."""

    @abc.abstractmethod
    def state(self) -> Any:
        """Everything beyond params and seed needed to predict again (picklable)."""

    @abc.abstractmethod
    def load_state(self, state: Any) -> None:
        """Restore what :meth:`state` returned."""

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to one file, atomically (temporary file, then rename)."""
        path = Path(path)
        payload = {
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "params": self.params,
            "seed": self.seed,
            "state": self.state(),
            "saved_at": time.time(),
        }
        with atomic_write(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @staticmethod
    def load(path: str | os.PathLike[str], *, device: str = "cpu") -> "Model":
        """Load any model written by :meth:`save`."""
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
        module_name, qualname = payload["class"].split(":")
        cls = getattr(importlib.import_module(module_name), qualname)
        model = cls(payload["params"], seed=payload["seed"], device=device)
        model.load_state(payload["state"])
        return model
