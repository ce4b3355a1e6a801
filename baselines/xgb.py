"""XGBoost (``xgboost.train``, hist trees) under the model contract.

Library defaults throughout, with the step cap and early stopping of Gorishniy et al. 2021 (2000 rounds,
patience 50 on the validation MAE; yandex-research/rtdl). The search space (``MODELS`` below) is sized for large
data: depth up to 12 (FLAML's depth range at 10,000 rows; microsoft/FLAML) and learning rates the presets' round
caps can bring to early stopping (:mod:`baselines.boosting`). Training and validation MAE are evaluated by XGBoost
every round and make the curve; ``on_step`` runs inside a training callback, so an exception it raises (a pruned
trial) propagates out of ``xgboost.train`` and out of :meth:`XGBoostModel.fit`.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb

from baselines.boosting import (
    LEARNING_RATE_HIGH,
    LEARNING_RATE_LOW,
    PRUNING_WARMUP_PROGRESS,
    as_training_arrays,
    round_curve,
    stop_reason,
)
from benchmarks.contract import FitCost, FitReport, Model, ModelInfo, StepCallback
from benchmarks.searchspace import ModelSearch, int_range, log_uniform, optional, uniform

TRAIN_NAME, VAL_NAME, METRIC = "train", "val", "mae"  # names in XGBoost's evaluation log


def cuda_available() -> bool:
    """Whether this xgboost build can train on a GPU (``xgboost-cpu`` cannot)."""
    return bool(xgb.build_info().get("USE_CUDA", False))


class _StepMonitor(xgb.callback.TrainingCallback):
    """Records seconds per round, calls ``on_step`` and enforces the time limit.

    It must run before XGBoost's EarlyStopping callback: the container stops calling callbacks at the first
    one that asks to stop, and the round that triggers early stopping must still be reported.
    """

    def __init__(self, start: float, on_step: StepCallback | None, time_limit_s: float | None) -> None:
        super().__init__()
        self.start = start
        self.on_step = on_step
        self.time_limit_s = time_limit_s
        self.seconds: list[float] = []
        self.hit_time_limit = False

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        self.seconds.append(time.perf_counter() - self.start)
        if self.on_step is not None:
            self.on_step(epoch + 1, float(evals_log[VAL_NAME][METRIC][-1]))
        if self.time_limit_s is not None and self.seconds[-1] > self.time_limit_s:
            self.hit_time_limit = True
            return True
        return False


class XGBoostModel(Model):
    """Gradient-boosted trees with XGBoost's hist method; early stopping on validation MAE."""

    name: ClassVar[str] = "xgboost"

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(params, seed=seed, device=device)
        self.booster_: xgb.Booster | None = None
        self.best_iteration_: int | None = None  # 0-based index of the last tree round kept for prediction

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """XGBoost's own defaults (3.x), named as XGBoost names them, plus:

        ``n_estimators`` (boosting-round cap, 2000) and ``early_stopping_rounds`` (50; None or 0 disables it)
        from Gorishniy et al. 2021, and ``n_jobs`` (threads, 1 so parallel tuning workers do not oversubscribe).
        """
        return {
            "n_estimators": 2000,
            "early_stopping_rounds": 50,
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "max_depth": 6,
            "learning_rate": 0.3,
            "min_child_weight": 1.0,
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "reg_alpha": 0.0,
            "reg_lambda": 1.0,
            "gamma": 0.0,
            "max_bin": 256,
            "n_jobs": 1,
        }

    def _device(self) -> tuple[str, str | None]:
        """(XGBoost device, note). Falls back to CPU, with a note, where the build has no CUDA."""
        if str(self.device).startswith("cuda"):
            if cuda_available():
                return str(self.device), None
            note = "xgboost build has no CUDA support (xgboost-cpu); trained on cpu"
            warnings.warn(f"xgboost: {note}", RuntimeWarning, stacklevel=3)
            return "cpu", note
        return "cpu", None

    def _booster_params(self, device: str) -> dict[str, Any]:
        p = self.params
        booster_params = {k: v for k, v in p.items() if k not in ("n_estimators", "early_stopping_rounds", "n_jobs")}
        booster_params.update({"eval_metric": METRIC, "nthread": int(p["n_jobs"]), "seed": self.seed, "device": device})
        return booster_params

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
        """Boost up to ``n_estimators`` rounds, stopping early on validation MAE; keep the best round.

        The time limit is checked after every round, so a fit overruns it by at most one round.
        """
        start = time.perf_counter()
        X_train, y_train, X_val, y_val = as_training_arrays("xgboost", X_train, y_train, X_val, y_val)
        n_rounds = int(self.params["n_estimators"])
        patience = self.params["early_stopping_rounds"]
        device, device_note = self._device()

        # QuantileDMatrix is what XGBRegressor uses for hist; the validation matrix reuses the training cuts.
        max_bin = int(self.params["max_bin"])
        dtrain = xgb.QuantileDMatrix(X_train, y_train, max_bin=max_bin)
        dval = xgb.QuantileDMatrix(X_val, y_val, ref=dtrain, max_bin=max_bin)
        monitor = _StepMonitor(start, on_step, time_limit_s)
        callbacks: list[xgb.callback.TrainingCallback] = [monitor]
        if patience:
            callbacks.append(
                xgb.callback.EarlyStopping(
                    rounds=int(patience), metric_name=METRIC, data_name=VAL_NAME, maximize=False, save_best=False
                )
            )
        evals_result: dict[str, Any] = {}
        booster = xgb.train(
            self._booster_params(device),
            dtrain,
            num_boost_round=n_rounds,
            evals=[(dtrain, TRAIN_NAME), (dval, VAL_NAME)],
            evals_result=evals_result,
            callbacks=callbacks,
            verbose_eval=False,
        )
        train_mae = evals_result[TRAIN_NAME][METRIC]
        val_mae = evals_result[VAL_NAME][METRIC]
        n_done = booster.num_boosted_rounds()
        # With early stopping the first minimum, EarlyStopping's rule (strict improvement), taken from the log
        # rather than booster.best_iteration because a time-limit stop skips EarlyStopping on the last round;
        # without it every round is kept.
        best_iteration = int(np.argmin(val_mae)) if patience else n_done - 1
        stopped = stop_reason(monitor.hit_time_limit, n_done, n_rounds)
        # Predictions take host arrays; a CPU booster avoids XGBoost's device-mismatch fallback and warning.
        booster.set_param({"device": "cpu"})
        self.booster_, self.best_iteration_ = booster, best_iteration
        curve = round_curve(train_mae, val_mae, monitor.seconds, n_done)
        extra: dict[str, Any] = {"n_rounds_trained": n_done}
        if device_note:
            extra["device_note"] = device_note
        return FitReport(
            curve=curve,
            best_step=best_iteration + 1,
            best_val_mae=float(val_mae[best_iteration]),
            fit_seconds=time.perf_counter() - start,
            device="cuda:0" if device == "cuda" else device,
            stopped=stopped,
            extra=extra,
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions of the trees up to and including the best round."""
        if self.booster_ is None or self.best_iteration_ is None:
            raise RuntimeError("xgboost: predict called before fit")
        out = self.booster_.inplace_predict(
            np.asarray(X, dtype=np.float64), iteration_range=(0, self.best_iteration_ + 1)
        )
        return np.asarray(out, dtype=np.float64).ravel()

    def state(self) -> Any:
        if self.booster_ is None:
            raise RuntimeError("xgboost: nothing to save before fit")
        return {
            "booster": bytes(self.booster_.save_raw(raw_format="ubj")),
            "best_iteration": self.best_iteration_,
            "xgboost": xgb.__version__,
        }

    def load_state(self, state: Any) -> None:
        booster = xgb.Booster(model_file=bytearray(state["booster"]))
        booster.set_param({"device": "cpu", "nthread": int(self.params["n_jobs"])})
        self.booster_ = booster
        self.best_iteration_ = int(state["best_iteration"])


MODELS = (
    ModelInfo(
        name="xgboost",
        model_class=XGBoostModel,
        family="tree",
        group="boosters",
        # Sized for 1,000 to 239,190 rows; the round cap and early stopping come from the defaults or the preset.
        # - max_depth, the depth-wise tree's capacity: 3..12. The selected configuration on all 239,190
        #   formation_energy rows reached depth 9 of rtdl's 3..10 (test 0.0661). FLAML's depth-limited XGBoost lets
        #   the depth grow with the rows, randint(1, min(max(6, int(log2(rows))), 16)), upper end exclusive: 1..12
        #   at 10,000 rows, 1..15 at 239,190 (https://github.com/microsoft/FLAML flaml/automl/model.py
        #   XGBoostLimitDepthEstimator, commit 53e3461); XGBoost's docs: a deeper tree is "more complex and more
        #   likely to overfit" and XGBoost "aggressively consumes memory when training a deep tree"
        #   (https://xgboost.readthedocs.io/en/stable/parameter.html). Depth-wise only: loss-guided growth
        #   (TabArena's grow_policy / max_leaves 8..1,024) is what LightGBM's leaf-wise space covers.
        # - learning_rate: baselines.boosting's range (0.02..0.3; why there).
        # - the rest: rtdl's XGBoost ranges (Gorishniy et al. 2021).
        search=ModelSearch(
            {
                "max_depth": int_range(3, 12),
                "learning_rate": log_uniform(LEARNING_RATE_LOW, LEARNING_RATE_HIGH),
                "min_child_weight": log_uniform(1e-8, 1e5),
                "subsample": uniform(0.5, 1.0),
                "colsample_bytree": uniform(0.5, 1.0),
                "reg_alpha": optional(log_uniform(1e-8, 100.0), off=0.0),
                "reg_lambda": optional(log_uniform(1e-8, 100.0), off=0.0),
                "gamma": optional(log_uniform(1e-8, 100.0), off=0.0),
            },
            progress_param="learning_rate",  # pruned at equal learning rate x rounds (baselines.boosting)
            warmup_steps=PRUNING_WARMUP_PROGRESS,
            source="FLAML depth range, learning rate by the round caps (baselines.boosting); rtdl otherwise",
        ),
        color="#ff7f0e",
        packages={"xgboost": ("xgboost", "xgboost-cpu")},
        roles={"step_cap": "n_estimators", "patience": "early_stopping_rounds", "threads": "n_jobs"},
        step_name="boosting round",
        # hist trees with early stopping: 50 trials took 75 s on 10k rows (measured, issue #10; the mean trial, most
        # of them pruned). Kept for depths up to 12: 2026-12-08, XGBoostModel({"max_depth": d, "learning_rate":
        # 0.1, "n_estimators": 5000}).fit on task_fold(load_task("formation_energy"), 0, max_train_rows=10000), one
        # thread, `nice` on a loaded 2-core machine, to early stopping (patience 50): depth 6 951 rounds in 8.5 s
        # (9.0 ms a round), depth 9 715 in 23.1 s (32.4 ms), depth 12 312 in 26.6 s (85.2 ms). Depths 11-12 (a fifth
        # of the space) cost ~3x the default's fit at 10k rows; the study's tuning seconds absorb that as fewer
        # configurations, not as a longer run.
        fit_cost=FitCost(seconds_per_1k_rows=0.15, min_seconds=1.0),
        summary="XGBoost (Chen and Guestrin, KDD 2016): gradient-boosted histogram trees with early stopping on "
        "the validation MAE",
        bibtex="@inproceedings{Chen2016XGBoost, author = {Chen, Tianqi and Guestrin, Carlos}, title = {{XGBoost}: "
        "A Scalable Tree Boosting System}, booktitle = {Proceedings of the 22nd ACM SIGKDD International "
        "Conference on Knowledge Discovery and Data Mining}, pages = {785--794}, year = {2016}, "
        "doi = {10.1145/2939672.2939785}}",
    ),
)
