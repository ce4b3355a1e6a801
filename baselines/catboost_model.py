"""CatBoost (``catboost.CatBoostRegressor``, symmetric trees) under the model contract.

Library defaults throughout (RMSE loss, depth 6, learning rate 0.03), with the step cap and early stopping the
other boosters use, from Gorishniy et al. 2021 (2000 rounds, patience 50 on the validation MAE;
yandex-research/rtdl); its search space is rtdl's CatBoost space with the learning rates the presets' round caps
can bring to early stopping (:mod:`baselines.boosting`). CatBoost wraps an exception raised in a Python
callback in its own error, so ``on_step``'s exception (a pruned trial) is kept by the callback, which then asks
CatBoost to stop, and raised again as itself once ``fit`` returns. Trains on the CPU (the GPU build of CatBoost
has no MAE early stopping on the validation part), whatever device it is given, and says so in its report.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import catboost
import numpy as np

from baselines.boosting import (
    LEARNING_RATE_HIGH,
    LEARNING_RATE_LOW,
    PRUNING_WARMUP_PROGRESS,
    as_training_arrays,
    round_curve,
    stop_reason,
)
from benchmarks.contract import FitCost, FitReport, Model, ModelInfo, StepCallback
from benchmarks.searchspace import ModelSearch, int_range, log_uniform, uniform

TRAIN_NAME, VAL_NAME, METRIC = "learn", "validation", "MAE"  # names in CatBoost's evaluation record


class _StepMonitor:
    """After-iteration callback: seconds per round, ``on_step`` (its exception kept, CatBoost told to stop), and
    the time limit."""

    def __init__(self, start: float, on_step: StepCallback | None, time_limit_s: float | None) -> None:
        self.start = start
        self.on_step = on_step
        self.time_limit_s = time_limit_s
        self.seconds: list[float] = []
        self.hit_time_limit = False
        self.raised: BaseException | None = None

    def after_iteration(self, info: Any) -> bool:
        """True: go on."""
        self.seconds.append(time.perf_counter() - self.start)
        if self.on_step is not None:
            try:
                self.on_step(info.iteration, float(info.metrics[VAL_NAME][METRIC][-1]))
            except BaseException as exc:  # re-raised by fit, unwrapped
                self.raised = exc
                return False
        if self.time_limit_s is not None and self.seconds[-1] > self.time_limit_s:
            self.hit_time_limit = True
            return False
        return True


class CatBoostModel(Model):
    """Gradient-boosted symmetric (oblivious) trees with CatBoost; early stopping on validation MAE. CPU only."""

    name: ClassVar[str] = "catboost"

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(params, seed=seed, device=device)
        self.model_: catboost.CatBoostRegressor | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """CatBoost's own defaults (1.2) under its own names, with the learning rate it used before picking one
        by the data (0.03) and one leaf-estimation step (its choice for RMSE), so that trial 0 lies in the
        space; plus ``iterations`` 2000 and ``early_stopping_rounds`` 50 (Gorishniy et al. 2021; None or 0
        disables it) and ``thread_count`` 1 so parallel tuning workers do not oversubscribe."""
        return {
            "iterations": 2000,
            "early_stopping_rounds": 50,
            "loss_function": "RMSE",
            "depth": 6,
            "learning_rate": 0.03,
            "l2_leaf_reg": 3.0,
            "bagging_temperature": 1.0,
            "leaf_estimation_iterations": 1,
            "border_count": 254,
            "thread_count": 1,
        }

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
        """Boost up to ``iterations`` rounds, stopping early on validation MAE; keep the best round.

        The time limit is checked after every round, so a fit overruns it by at most one round.
        """
        start = time.perf_counter()
        X_train, y_train, X_val, y_val = as_training_arrays("catboost", X_train, y_train, X_val, y_val)
        params = dict(self.params)
        n_rounds = int(params["iterations"])
        patience = params.pop("early_stopping_rounds")
        model = catboost.CatBoostRegressor(
            **params,
            eval_metric=METRIC,
            random_seed=self.seed,
            early_stopping_rounds=int(patience) if patience else None,
            use_best_model=bool(patience),  # as the other boosters: without early stopping every round is kept
            allow_writing_files=False,
            verbose=False,
            task_type="CPU",
        )
        monitor = _StepMonitor(start, on_step, time_limit_s)
        try:
            model.fit(X_train, y_train, eval_set=(X_val, y_val), callbacks=[monitor])
        except catboost.CatBoostError as exc:  # a configuration CatBoost refuses: the contract's ValueError
            raise ValueError(f"catboost: {exc}") from exc
        if monitor.raised is not None:
            raise monitor.raised
        record = model.get_evals_result()
        train_mae, val_mae = record[TRAIN_NAME][METRIC], record[VAL_NAME][METRIC]
        n_done = len(val_mae)
        best = int(model.get_best_iteration()) + 1 if patience else n_done  # 1-based; the trees kept
        self.model_ = model
        extra: dict[str, Any] = {"n_rounds_trained": n_done}
        if str(self.device) != "cpu":
            extra["device_note"] = f"catboost trains on the cpu here; asked for {self.device}"
        return FitReport(
            curve=round_curve(train_mae, val_mae, monitor.seconds, n_done),
            best_step=best,
            best_val_mae=float(val_mae[best - 1]),
            fit_seconds=time.perf_counter() - start,
            device="cpu",
            stopped=stop_reason(monitor.hit_time_limit, n_done, n_rounds),
            extra=extra,
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions of the trees up to and including the best round."""
        if self.model_ is None:
            raise RuntimeError("catboost: predict called before fit")
        out = self.model_.predict(np.asarray(X, dtype=np.float64), thread_count=int(self.params["thread_count"]))
        return np.asarray(out, dtype=np.float64).ravel()

    def state(self) -> Any:
        if self.model_ is None:
            raise RuntimeError("catboost: nothing to save before fit")
        # CatBoost's own binary format, from memory (no file): the trees kept (up to the best round).
        return {"model": bytes(self.model_._serialize_model()), "catboost": catboost.__version__}

    def load_state(self, state: Any) -> None:
        self.model_ = catboost.CatBoostRegressor().load_model(blob=state["model"])


MODELS = (
    ModelInfo(
        name="catboost",
        model_class=CatBoostModel,
        family="tree",
        group="boosters",
        # rtdl's CatBoost space (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data",
        # supplementary Table: depth, L2 regularisation, bagging temperature, leaf estimation iterations), but the
        # learning rate: baselines.boosting's range (0.02..0.3, which holds CatBoost's trial 0, 0.03), that the
        # presets' round caps can bring to early stopping, instead of rtdl's 1e-5..1. Depth 3..10 already reaches
        # 1,024 leaves (symmetric trees), above TabArena's 4..8 ("not too large for compute/memory reasons",
        # https://github.com/autogluon/tabarena packages/tabarena/src/tabarena/models/catboost/hpo.py, commit
        # 84093d6). The round cap and early stopping come from the defaults or the preset.
        search=ModelSearch(
            {
                "depth": int_range(3, 10),
                "learning_rate": log_uniform(LEARNING_RATE_LOW, LEARNING_RATE_HIGH),
                "bagging_temperature": uniform(0.0, 1.0),
                "l2_leaf_reg": log_uniform(1.0, 10.0),
                "leaf_estimation_iterations": int_range(1, 10),
            },
            progress_param="learning_rate",  # pruned at equal learning rate x rounds (baselines.boosting)
            warmup_steps=PRUNING_WARMUP_PROGRESS,
            source="rtdl CatBoost ranges; learning rate by the round caps (baselines.boosting)",
        ),
        color="#e377c2",
        packages={"catboost": ("catboost",)},
        roles={"step_cap": "iterations", "patience": "early_stopping_rounds", "threads": "thread_count"},
        step_name="boosting round",
        # Measured 2026-12-05 (one thread, the defaults, to early stopping or the 2,000-round cap): 12 s on 224
        # matbench_steels rows, 17 s on 3,000 and 25 s on 10,000 formation_energy rows (5.5-12 ms per round,
        # mostly fixed cost: 145 features at 254 borders each); XGBoost takes ~1.5 s on the 10,000.
        fit_cost=FitCost(seconds_per_1k_rows=2.5, min_seconds=15.0),
        summary="CatBoost (Prokhorenkova et al., NeurIPS 2018): gradient-boosted oblivious trees with ordered "
        "boosting, early stopping on the validation MAE",
        bibtex="@inproceedings{Prokhorenkova2018CatBoost, author = {Prokhorenkova, Liudmila and Gusev, Gleb and "
        "Vorobev, Aleksandr and Dorogush, Anna Veronika and Gulin, Andrey}, title = {{CatBoost}: unbiased "
        "boosting with categorical features}, booktitle = {Advances in Neural Information Processing Systems 31}, "
        "pages = {6638--6648}, year = {2018}}",
    ),
)
