"""The scale reference: predict one constant learnt from the training targets.

Its validation/test MAE is the error of knowing nothing about the inputs; every real model must beat it by a wide
margin for its score to mean anything (Matbench's "Dummy" row is the same model with the mean).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from benchmarks.contract import CurvePoint, FitCost, FitReport, Model, ModelInfo, StepCallback
from benchmarks.errors import UsageError
from benchmarks.metrics import mae
from benchmarks.searchspace import ModelSearch, choice


class DummyModel(Model):
    """Predicts the training mean (or median); one curve point, no steps to tune."""

    name: ClassVar[str] = "dummy"

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(params, seed=seed, device=device)
        if self.params["strategy"] not in ("mean", "median"):
            raise UsageError(f"dummy: strategy must be 'mean' or 'median', got {self.params['strategy']!r}")
        self.constant_: float | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """``strategy``: "mean" (as Matbench's Dummy and scikit-learn's DummyRegressor) or "median"."""
        return {"strategy": "mean"}

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
        """Learn the constant; the curve is a single point at step 1 (``time_limit_s`` is irrelevant here)."""
        start = time.perf_counter()
        y_train = np.asarray(y_train, dtype=np.float64).ravel()
        y_val = np.asarray(y_val, dtype=np.float64).ravel()
        if y_train.size == 0 or y_val.size == 0:
            raise UsageError("dummy: empty training or validation targets")
        if len(X_train) != y_train.size or len(X_val) != y_val.size:
            raise UsageError("dummy: X and y row counts differ")
        reduce = np.mean if self.params["strategy"] == "mean" else np.median
        self.constant_ = float(reduce(y_train))
        train_mae = mae(y_train, self.predict(X_train))
        val_mae = mae(y_val, self.predict(X_val))
        seconds = time.perf_counter() - start
        # Called once so that tuning code can treat every model alike (one reported step).
        if on_step is not None:
            on_step(1, val_mae)
        return FitReport(
            curve=[CurvePoint(step=1, train_mae=train_mae, val_mae=val_mae, seconds=seconds)],
            best_step=1,
            best_val_mae=val_mae,
            fit_seconds=time.perf_counter() - start,
            device="cpu",
            stopped="completed",
            extra={"constant": self.constant_},
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The training constant for every row."""
        if self.constant_ is None:
            raise RuntimeError("dummy: predict called before fit")
        return np.full(len(X), self.constant_, dtype=np.float64)

    def state(self) -> Any:
        return {"constant": self.constant_}

    def load_state(self, state: Any) -> None:
        self.constant_ = None if state["constant"] is None else float(state["constant"])


MODELS = (
    ModelInfo(
        name="dummy",
        model_class=DummyModel,
        family="reference",
        group="reference",
        search=ModelSearch({"strategy": choice("mean", "median")}, source="scale reference"),
        color="#bcbd22",
        fit_cost=FitCost(seconds_per_1k_rows=0.01, min_seconds=0.1),
        summary="a constant: the training targets' mean or median (a scale reference, not a model)",
    ),
)
