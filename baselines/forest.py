"""Random forest (scikit-learn ``RandomForestRegressor``) under the model contract.

A forest has no early stopping, but it still gets a convergence curve: the forest is grown in chunks with
``warm_start`` (scikit-learn draws the per-tree seeds so that chunked growth gives exactly the trees one call
would), and after each chunk the validation MAE (and the training MAE on at most ``TRAIN_CURVE_ROWS`` rows) of
the forest so far is recorded and reported through ``on_step``. The step is the number of trees. Growing in
chunks also lets ``on_step`` prune a trial part-way and lets a time limit stop the growth.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, ClassVar

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor

from benchmarks.contract import CurvePoint, FitCost, FitReport, Model, ModelInfo, StepCallback
from benchmarks.errors import UsageError
from benchmarks.metrics import mae
from benchmarks.searchspace import ModelSearch, choice, int_range

TRAIN_CURVE_ROWS = 5000  # training MAE of the curve is measured on at most this many rows (seeded subsample)
CURVE_POINTS = 20  # about this many log-spaced tree counts per curve


def curve_steps(n_estimators: int, points: int = CURVE_POINTS) -> list[int]:
    """Tree counts at which the curve is measured: about ``points`` log-spaced counts, always ending at
    ``n_estimators``. Deterministic in ``n_estimators`` so trials of one study report the same steps."""
    if n_estimators < 1:
        raise UsageError(f"rf: n_estimators must be >= 1, got {n_estimators}")
    steps = np.unique(np.round(np.geomspace(1, n_estimators, num=min(n_estimators, points))).astype(int))
    return [int(s) for s in steps if s >= 1]


class RandomForestModel(Model):
    """scikit-learn random forest; library defaults except the tree count, threads and seed."""

    name: ClassVar[str] = "rf"

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(params, seed=seed, device=device)
        self.forest_: RandomForestRegressor | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """scikit-learn 1.x defaults, written out so they are recorded, except:

        - ``n_estimators`` 500 instead of 100: more trees only lower the variance of a forest, never its
          fit, and at a few hundred trees the validation curve is flat (see the curve each fit records), so
          the tree count is a cost cap rather than a hyperparameter to tune. 500 trees took 40 s on 3,683 x 145 rows
          on 2 cores (measured); lower it for very large tasks.
        - ``n_jobs`` 1 instead of None: parallel tuning workers would otherwise oversubscribe the cores.
        """
        return {
            "n_estimators": 500,
            "criterion": "squared_error",
            "max_depth": None,
            "min_samples_split": 2,
            "min_samples_leaf": 1,
            "max_features": 1.0,
            "bootstrap": True,
            "max_samples": None,
            "n_jobs": 1,
        }

    def _estimator(self) -> RandomForestRegressor:
        p = self.params
        return RandomForestRegressor(
            n_estimators=0,  # grown chunk by chunk in fit
            criterion=p["criterion"],
            max_depth=p["max_depth"],
            min_samples_split=p["min_samples_split"],
            min_samples_leaf=p["min_samples_leaf"],
            max_features=p["max_features"],
            bootstrap=p["bootstrap"],
            max_samples=p["max_samples"] if p["bootstrap"] else None,
            n_jobs=p["n_jobs"],
            random_state=self.seed,
            warm_start=True,
        )

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
        """Grow the forest up to ``n_estimators`` trees, measuring the curve at :func:`curve_steps`.

        ``time_limit_s`` is honoured only loosely: it is checked between chunks, so a fit may overrun by one
        chunk (up to about a third of the trees near the end); the forest then keeps the trees grown so far
        and ``stopped`` is "time_limit".
        """
        start = time.perf_counter()
        X_train = np.asarray(X_train, dtype=np.float64)
        X_val = np.asarray(X_val, dtype=np.float64)
        y_train = np.asarray(y_train, dtype=np.float64).ravel()
        y_val = np.asarray(y_val, dtype=np.float64).ravel()
        if X_train.ndim != 2 or len(X_train) != y_train.size or len(X_val) != y_val.size or y_val.size == 0:
            raise UsageError("rf: need 2-D X and matching, non-empty y for training and validation")
        n_total = int(self.params["n_estimators"])
        steps = curve_steps(n_total)

        # Training MAE on a seeded subsample: predicting every tree on a huge training set would cost more
        # than growing it. Trees see float32 inputs, as inside RandomForestRegressor.predict.
        rng = np.random.default_rng(self.seed)
        if len(X_train) > TRAIN_CURVE_ROWS:
            rows = np.sort(rng.choice(len(X_train), size=TRAIN_CURVE_ROWS, replace=False))
        else:
            rows = np.arange(len(X_train))
        X_tr_curve = X_train[rows].astype(np.float32)
        y_tr_curve = y_train[rows]
        X_val32 = X_val.astype(np.float32)
        sum_val = np.zeros(len(X_val), dtype=np.float64)
        sum_tr = np.zeros(len(rows), dtype=np.float64)

        forest = self._estimator()
        self.forest_ = forest
        curve: list[CurvePoint] = []
        stopped = "completed"
        n_done = 0  # trees already added to the running sums
        for n_trees in steps:
            forest.set_params(n_estimators=n_trees)
            forest.fit(X_train, y_train)
            # Running sums of per-tree predictions: the forest's prediction is their mean.
            for tree in forest.estimators_[n_done:]:
                sum_val += tree.predict(X_val32)
                sum_tr += tree.predict(X_tr_curve)
            n_done = len(forest.estimators_)
            point = CurvePoint(
                step=n_trees,
                train_mae=mae(y_tr_curve, sum_tr / n_trees),
                val_mae=mae(y_val, sum_val / n_trees),
                seconds=time.perf_counter() - start,
            )
            curve.append(point)
            if on_step is not None:
                on_step(n_trees, point.val_mae)
            if time_limit_s is not None and n_trees < n_total and point.seconds > time_limit_s:
                stopped = "time_limit"
                break
        return FitReport(
            curve=curve,
            best_step=curve[-1].step,  # a forest keeps all its trees
            best_val_mae=curve[-1].val_mae,
            fit_seconds=time.perf_counter() - start,
            device="cpu",  # scikit-learn has no GPU path
            stopped=stopped,
            extra={"train_curve_rows": len(rows), "n_trees": len(forest.estimators_)},
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean of the trees' predictions, summed on one thread: scikit-learn's threads add the trees in the
        order they finish, so the last bits of a prediction would differ from one call to the next."""
        if self.forest_ is None:
            raise RuntimeError("rf: predict called before fit")
        threads = self.forest_.n_jobs
        self.forest_.n_jobs = 1
        try:
            return np.asarray(self.forest_.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64).ravel()
        finally:
            self.forest_.n_jobs = threads

    def state(self) -> Any:
        if self.forest_ is None:
            raise RuntimeError("rf: nothing to save before fit")
        return {"forest": pickle.dumps(self.forest_, protocol=pickle.HIGHEST_PROTOCOL), "sklearn": sklearn.__version__}

    def load_state(self, state: Any) -> None:
        # A pickle is only guaranteed to load in the scikit-learn version that wrote it; sklearn warns otherwise.
        self.forest_ = pickle.loads(state["forest"])
        self.forest_.set_params(n_jobs=self.params["n_jobs"])


MODELS = (
    ModelInfo(
        name="rf",
        model_class=RandomForestModel,
        family="tree",
        group="forest",
        # Grinsztajn et al. 2022 random forest ranges. max_features 1.0 stands for their None (all features,
        # scikit-learn's regressor default); min_samples_leaf starts at 1 so the library default is in the space.
        search=ModelSearch(
            {
                "max_features": choice("sqrt", "log2", 1.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                "max_depth": choice(None, 2, 3, 4),
                "min_samples_leaf": int_range(1, 50, log=True),
                "bootstrap": choice(True, False),
                "criterion": choice("squared_error", "absolute_error"),
            },
            report_every=1,
            warmup_steps=10,  # steps are tree counts
            source="Grinsztajn et al. 2022 ranges",
        ),
        color="#2ca02c",
        packages={"sklearn": ("scikit-learn",)},
        roles={"step_cap": "n_estimators", "split_criterion": "criterion", "threads": "n_jobs"},
        step_name="trees",
        fit_cost=FitCost(seconds_per_1k_rows=1.5, min_seconds=5.0),  # 100 squared-error trees, 10k x 145 rows: ~15 s
        summary="random forest (Breiman 2001; scikit-learn's RandomForestRegressor), 100 trees, tuned over "
        "Grinsztajn et al. (2022)'s ranges",
        bibtex="@article{Breiman2001, author = {Breiman, Leo}, title = {Random Forests}, journal = {Machine "
        "Learning}, volume = {45}, number = {1}, pages = {5--32}, year = {2001}, doi = {10.1023/A:1010933404324}}",
    ),
)
