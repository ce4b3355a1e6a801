"""LightGBM (``lightgbm.train``) under the model contract.

Library defaults throughout, with the step cap and early stopping of Gorishniy et al. 2021 (2000 rounds,
patience 50 on the validation MAE; yandex-research/rtdl). The search space (``MODELS`` below) is sized for large
data: up to 1,024 leaves, leaf sizes up to 1,000 rows, learning rates the presets' round caps can bring to early
stopping (:mod:`baselines.boosting`). Sources: LightGBM's "Parameters Tuning" page
(https://lightgbm.readthedocs.io/en/latest/Parameters-Tuning.html), TabArena (autogluon/tabarena) and FLAML
(microsoft/FLAML). LightGBM's pip wheel is built for CPU only (its GPU and CUDA
builds need compiling from source), so this model trains on CPU whatever device it is given and says so in
its report.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import lightgbm as lgb
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
from benchmarks.searchspace import ModelSearch, fixed, int_range, log_uniform, optional, uniform

TRAIN_NAME, VAL_NAME, METRIC = "train", "val", "l1"  # names in LightGBM's evaluation record


class _StepMonitor:
    """After-iteration callback: seconds per round, ``on_step``, and the time limit.

    ``order`` 25 puts it after ``record_evaluation`` (20), whose record it reads, and before
    ``early_stopping`` (30), so the round that triggers early stopping is still reported.
    """

    def __init__(
        self,
        start: float,
        record: dict[str, Any],
        on_step: StepCallback | None,
        time_limit_s: float | None,
        keep_best: bool,
    ) -> None:
        # Instance attributes: lgb.train overwrites an `order` missing from the instance __dict__.
        self.order = 25
        self.before_iteration = False
        self.start = start
        self.keep_best = keep_best  # on a time-limit stop, keep the best round (early stopping on) or all
        self.record = record
        self.on_step = on_step
        self.time_limit_s = time_limit_s
        self.seconds: list[float] = []
        self.hit_time_limit = False

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        self.seconds.append(time.perf_counter() - self.start)
        val = self.record[VAL_NAME][METRIC]
        if self.on_step is not None:
            self.on_step(env.iteration - env.begin_iteration + 1, float(val[-1]))
        if self.time_limit_s is not None and self.seconds[-1] > self.time_limit_s:
            self.hit_time_limit = True
            # LightGBM's only way to end training from a callback (it sets best_iteration = best + 1).
            best = int(np.argmin(val)) if self.keep_best else len(val) - 1
            raise lgb.callback.EarlyStopException(best, env.evaluation_result_list or [])


class LightGBMModel(Model):
    """Gradient-boosted trees with LightGBM (leaf-wise growth); early stopping on validation MAE. CPU only."""

    name: ClassVar[str] = "lightgbm"

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(params, seed=seed, device=device)
        self.booster_: lgb.Booster | None = None
        self.best_iteration_: int | None = None  # 1-based number of rounds kept for prediction

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """LightGBM's own defaults (4.x) under the scikit-learn-API names LightGBM accepts as aliases
        (``min_child_samples`` = min_data_in_leaf, ``subsample`` = bagging_fraction, ``subsample_freq`` =
        bagging_freq, ``colsample_bytree`` = feature_fraction, ``reg_lambda`` = lambda_l2, ...), plus
        ``n_estimators`` (round cap, 2000) and ``early_stopping_rounds`` (50; None or 0 disables it) from
        Gorishniy et al. 2021, and ``num_threads`` 1 so parallel tuning workers do not oversubscribe.
        Bagging only happens when ``subsample`` < 1 and ``subsample_freq`` > 0.
        """
        return {
            "n_estimators": 2000,
            "early_stopping_rounds": 50,
            "objective": "regression",
            "num_leaves": 31,
            "max_depth": -1,
            "learning_rate": 0.1,
            "min_child_samples": 20,
            "min_child_weight": 1e-3,
            "subsample": 1.0,
            "subsample_freq": 0,
            "colsample_bytree": 1.0,
            "reg_alpha": 0.0,
            "reg_lambda": 0.0,
            "min_split_gain": 0.0,
            "max_bin": 255,
            "num_threads": 1,
        }

    def _train_params(self) -> dict[str, Any]:
        p = {k: v for k, v in self.params.items() if k not in ("n_estimators", "early_stopping_rounds")}
        p.update({"metric": METRIC, "seed": self.seed, "verbosity": -1, "device_type": "cpu"})
        return p

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
        X_train, y_train, X_val, y_val = as_training_arrays("lightgbm", X_train, y_train, X_val, y_val)
        n_rounds = int(self.params["n_estimators"])
        patience = self.params["early_stopping_rounds"]
        params = self._train_params()

        # Dataset parameters (max_bin, seed, ...) reach the datasets through lgb.train's params.
        dtrain = lgb.Dataset(X_train, y_train, free_raw_data=True)
        dval = lgb.Dataset(X_val, y_val, reference=dtrain, free_raw_data=True)
        record: dict[str, Any] = {}
        monitor = _StepMonitor(start, record, on_step, time_limit_s, keep_best=bool(patience))
        callbacks: list[Any] = [lgb.record_evaluation(record), monitor]
        if patience:
            callbacks.append(lgb.early_stopping(int(patience), first_metric_only=True, verbose=False))
        try:
            booster = lgb.train(
                params,
                dtrain,
                num_boost_round=n_rounds,
                # The training set passed as the same object is evaluated from LightGBM's cached scores, and
                # early stopping skips it by name.
                valid_sets=[dtrain, dval],
                valid_names=[TRAIN_NAME, VAL_NAME],
                callbacks=callbacks,
            )
        except lgb.basic.LightGBMError as exc:  # a configuration LightGBM refuses: the contract's ValueError
            raise ValueError(f"lightgbm: {exc}") from exc
        train_mae = record[TRAIN_NAME][METRIC]
        val_mae = record[VAL_NAME][METRIC]
        # Rounds trained, from the record: lgb.train returns a booster rebuilt from model_to_string(), which
        # holds only the rounds up to best_iteration (current_iteration() no longer counts the rest).
        n_done = len(val_mae)
        # LightGBM sets best_iteration (1-based) when early stopping or the time limit ends the loop, and its
        # early-stopping callback also sets it at the last round when patience was never exhausted. Without
        # either it stays 0 and every round is kept.
        best = int(booster.best_iteration) if booster.best_iteration > 0 else n_done
        stopped = stop_reason(monitor.hit_time_limit, n_done, n_rounds)
        self.booster_, self.best_iteration_ = booster, best
        curve = round_curve(train_mae, val_mae, monitor.seconds, n_done)
        extra: dict[str, Any] = {"n_rounds_trained": n_done}
        if str(self.device) != "cpu":
            extra["device_note"] = f"lightgbm pip wheel is CPU-only; asked for {self.device}, trained on cpu"
        return FitReport(
            curve=curve,
            best_step=best,
            best_val_mae=float(val_mae[best - 1]),
            fit_seconds=time.perf_counter() - start,
            device="cpu",
            stopped=stopped,
            extra=extra,
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions of the trees up to and including the best round."""
        if self.booster_ is None or self.best_iteration_ is None:
            raise RuntimeError("lightgbm: predict called before fit")
        out = self.booster_.predict(
            np.asarray(X, dtype=np.float64),
            num_iteration=self.best_iteration_,
            num_threads=int(self.params["num_threads"]),
        )
        return np.asarray(out, dtype=np.float64).ravel()

    def state(self) -> Any:
        if self.booster_ is None:
            raise RuntimeError("lightgbm: nothing to save before fit")
        # Every round the booster holds (lgb.train already dropped those after the best one).
        return {
            "model": self.booster_.model_to_string(num_iteration=-1),
            "best_iteration": self.best_iteration_,
            "lightgbm": lgb.__version__,
        }

    def load_state(self, state: Any) -> None:
        self.booster_ = lgb.Booster(model_str=state["model"])
        self.best_iteration_ = int(state["best_iteration"])


MODELS = (
    ModelInfo(
        name="lightgbm",
        model_class=LightGBMModel,
        family="tree",
        group="boosters",
        # Sized for 1,000 to 239,190 rows; the round cap and early stopping come from the defaults or the preset.
        # - num_leaves, the leaf-wise tree's capacity (LightGBM "Parameters Tuning": "the main parameter to control
        #   the complexity of the tree model"; "use large num_leaves" for better accuracy): log-uniform 8..1,024.
        #   rtdl's 10..100 held the 79-leaf configuration tuned on all 239,190 formation_energy rows (test 0.0913)
        #   below one hand-set 127-leaf fit (0.0839). 8..1,024 is TabArena's range for XGBoost's leaf count
        #   (max_leaves, https://github.com/autogluon/tabarena packages/tabarena/src/tabarena/models/xgboost/hpo.py,
        #   commit 84093d6); FLAML lets num_leaves grow with the rows, log-uniform 4..min(32768, rows)
        #   (https://github.com/microsoft/FLAML flaml/automl/model.py LGBMEstimator.search_space, commit 53e3461).
        # - min_child_samples (min_data_in_leaf), what holds large trees back: log-uniform 2..1,000. The docs: "Its
        #   optimal value depends on the number of training samples and num_leaves ... setting it to hundreds or
        #   thousands is enough for a large dataset"; TabArena 1..64 and FLAML 2..129 (log) stop below that.
        # - learning_rate: baselines.boosting's range (0.02..0.3; why there).
        # - subsample with subsample_freq fixed at 1: LightGBM bags only when bagging_freq > 0 (its Parameters
        #   page), so rtdl's subsample alone never bagged; TabArena fixes bagging_freq at 1. At subsample 1.0 (the
        #   default, trial 0) freq 1 trains exactly the library default's trees (tests/test_booster_spaces.py).
        # - min_child_weight, colsample_bytree, reg_lambda: rtdl's (Gorishniy et al. 2021).
        search=ModelSearch(
            {
                "num_leaves": int_range(8, 1024, log=True),
                "learning_rate": log_uniform(LEARNING_RATE_LOW, LEARNING_RATE_HIGH),
                "min_child_samples": int_range(2, 1000, log=True),
                "min_child_weight": log_uniform(1e-5, 0.1),
                "subsample": uniform(0.5, 1.0),
                "subsample_freq": fixed(1),
                "colsample_bytree": uniform(0.5, 1.0),
                "reg_lambda": optional(log_uniform(1e-5, 1.0), off=0.0),
            },
            progress_param="learning_rate",  # pruned at equal learning rate x rounds (baselines.boosting)
            warmup_steps=PRUNING_WARMUP_PROGRESS,
            source="TabArena / FLAML / LightGBM Parameters Tuning ranges (leaves, leaf size, rate); rtdl otherwise",
        ),
        color="#8c564b",
        packages={"lightgbm": ("lightgbm",)},
        roles={"step_cap": "n_estimators", "patience": "early_stopping_rounds", "threads": "num_threads"},
        step_name="boosting round",
        # The mean trial, most of them pruned (as XGBoost; 50 trials: 56 s on 10k rows). Kept for the larger trees:
        # 2026-12-08, LightGBMModel({"num_leaves": n, "learning_rate": 0.1, "n_estimators": 5000}).fit on
        # task_fold(load_task("formation_energy"), 0, max_train_rows=10000), one thread, `nice` on a loaded 2-core
        # machine, to early stopping (patience 50): 31 leaves 1,228 rounds in 6.0 s
        # (4.9 ms a round), 127 leaves 237 in 4.0 s (16.9 ms), 1,024 leaves 176 in 7.7 s (43.5 ms). Larger trees cost
        # more a round but stop in fewer, so a converged fit costs about the same; a trial pruned after ~60 rounds
        # costs up to ~9x more at 1,024 leaves (2.6 s), which the study's tuning seconds absorb as fewer
        # configurations, not as a longer run.
        fit_cost=FitCost(seconds_per_1k_rows=0.15, min_seconds=1.0),
        summary="LightGBM (Ke et al., NeurIPS 2017): gradient-boosted leaf-wise trees with early stopping on the "
        "validation MAE",
        bibtex="@inproceedings{Ke2017LightGBM, author = {Ke, Guolin and Meng, Qi and Finley, Thomas and Wang, "
        "Taifeng and Chen, Wei and Ma, Weidong and Ye, Qiwei and Liu, Tie-Yan}, title = {{LightGBM}: A Highly "
        "Efficient Gradient Boosting Decision Tree}, booktitle = {Advances in Neural Information Processing "
        "Systems 30}, pages = {3146--3154}, year = {2017}}",
    ),
)
