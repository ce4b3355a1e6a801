"""The classical baselines on small real data: Matbench steels fold 0 (224 training, 25 validation rows, 145 Magpie
features). Step caps are small so the whole file runs in seconds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from baselines.catboost_model import CatBoostModel
from baselines.dummy import DummyModel
from baselines.forest import RandomForestModel, curve_steps
from baselines.lgbm import LightGBMModel
from baselines.xgb import XGBoostModel, cuda_available
from benchmarks.contract import FitReport, Model
from benchmarks.errors import UsageError
from studies.registry import model_info


def caps(name: str, steps: int, patience: int | str | None = "default") -> dict:
    """The model's own parameters for a step cap and (unless "default") a patience, through its declared roles."""
    info = model_info(name)
    out = {info.param("step_cap"): steps}
    if patience != "default":
        out[info.param("patience")] = patience
    return out


# Small, fast settings. The boosters' learning rates are high enough to early-stop within the cap on steels.
FAST = {
    "rf": {"n_estimators": 40},
    "xgboost": {"n_estimators": 300, "early_stopping_rounds": 20},
    "lightgbm": {"n_estimators": 300, "early_stopping_rounds": 20, "learning_rate": 0.3},
    "catboost": {"iterations": 300, "early_stopping_rounds": 20, "learning_rate": 0.3},
    "dummy": {},
}
TREES = ("rf", "xgboost", "lightgbm", "catboost")
BOOSTERS = ("xgboost", "lightgbm", "catboost")


BASELINES = {cls.name: cls for cls in (RandomForestModel, XGBoostModel, LightGBMModel, CatBoostModel, DummyModel)}


def _mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=np.float64) - p)))


def _args(data) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return data.X_train, data.y_train, data.X_val, data.y_val


@pytest.fixture(scope="module")
def fitted(steels_training) -> dict[str, tuple[Model, FitReport]]:
    """Each baseline fitted once with FAST settings and seed 0 (shared by the read-only tests)."""
    out = {}
    for name, cls in BASELINES.items():
        model = cls(FAST[name], seed=0)
        out[name] = (model, model.fit(*_args(steels_training)))
    return out


def test_dummy_predicts_training_mean(steels_training, fitted) -> None:
    model, report = fitted["dummy"]
    d = steels_training
    pred = model.predict(d.X_val)
    assert pred.dtype == np.float64 and pred.shape == (len(d.y_val),)
    assert np.allclose(pred, np.mean(d.y_train.astype(np.float64)))
    assert report.best_step == 1 and len(report.curve) == 1 and report.stopped == "completed"
    assert report.best_val_mae == pytest.approx(_mae(d.y_val, pred), rel=1e-12)
    assert report.curve[0].train_mae == pytest.approx(_mae(d.y_train, model.predict(d.X_train)), rel=1e-12)


@pytest.mark.parametrize("name", TREES)
def test_learns_well_below_dummy(name: str, steels_training, fitted) -> None:
    model, report = fitted[name]
    d = steels_training
    val_mae = _mae(d.y_val, model.predict(d.X_val))
    dummy_mae = fitted["dummy"][1].best_val_mae
    # Dummy ~293 MPa on this fold; the Matbench leaderboard has tree models near 100 MPa on steels.
    assert val_mae < 0.6 * dummy_mae, (name, val_mae, dummy_mae)
    assert report.device == "cpu"
    assert report.fit_seconds > 0


@pytest.mark.parametrize("name", TREES)
def test_curve_matches_independent_mae_at_best_step(name: str, steels_training, fitted) -> None:
    model, report = fitted[name]
    d = steels_training
    steps = [p.step for p in report.curve]
    assert steps == sorted(set(steps)) and steps[0] == 1
    assert all(b.seconds >= a.seconds for a, b in itertools.pairwise(report.curve))
    best = next(p for p in report.curve if p.step == report.best_step)
    assert report.best_val_mae == best.val_mae
    # The libraries compute these in float32 internally: agree to ~1e-7 relative.
    assert best.val_mae == pytest.approx(_mae(d.y_val, model.predict(d.X_val)), rel=1e-6)
    # rf measures the training curve on <= 5000 rows: all 224 here.
    assert best.train_mae == pytest.approx(_mae(d.y_train, model.predict(d.X_train)), rel=1e-6)


def test_forest_curve_steps_and_growth(fitted) -> None:
    model, report = fitted["rf"]
    n = FAST["rf"]["n_estimators"]
    assert [p.step for p in report.curve] == curve_steps(n)
    assert report.best_step == n and report.stopped == "completed"
    assert len(model.forest_.estimators_) == n
    # One tree is far worse than the forest: the curve really is measured as trees are added.
    assert report.curve[0].val_mae > 1.2 * report.curve[-1].val_mae


def test_forest_chunked_growth_equals_one_fit(steels_training, fitted) -> None:
    """warm_start growth gives exactly the forest scikit-learn grows in one call with the same seed."""
    from sklearn.ensemble import RandomForestRegressor

    model, _ = fitted["rf"]
    d = steels_training
    one = RandomForestRegressor(n_estimators=FAST["rf"]["n_estimators"], random_state=0, n_jobs=1)
    one.fit(d.X_train.astype(np.float64), d.y_train)
    assert np.array_equal(one.predict(d.X_val.astype(np.float64)), model.predict(d.X_val))


@pytest.mark.parametrize("name", BOOSTERS)
def test_boosters_early_stop_and_keep_best_round(name: str, steels_training, fitted) -> None:
    model, report = fitted[name]
    d = steels_training
    info = model_info(name)
    cap, patience = FAST[name][info.param("step_cap")], FAST[name][info.param("patience")]
    assert report.stopped == "early_stopping"
    assert report.best_step < cap
    assert len(report.curve) == report.best_step + patience
    val = np.array([p.val_mae for p in report.curve])
    assert report.best_step == int(np.argmin(val)) + 1  # the first minimum
    assert report.extra["n_rounds_trained"] == len(report.curve)
    # Predicting with every round would give the last curve point, which is worse than the best one.
    assert val[-1] > report.best_val_mae
    assert _mae(d.y_val, model.predict(d.X_val)) == pytest.approx(report.best_val_mae, rel=1e-6)


@pytest.mark.parametrize("name", BOOSTERS)
def test_boosters_round_cap_and_no_early_stopping(name: str, steels_training) -> None:
    d = steels_training
    capped = BASELINES[name]({**caps(name, 7), "learning_rate": 0.01}, seed=0)
    report = capped.fit(*_args(d))
    assert report.stopped == "max_steps" and len(report.curve) == 7
    assert report.best_step == int(np.argmin([p.val_mae for p in report.curve])) + 1

    # Without early stopping every round is kept, so predictions match the last curve point.
    free = BASELINES[name]({**caps(name, 30, None), "learning_rate": 0.3}, seed=0)
    report = free.fit(*_args(d))
    assert report.best_step == 30 and len(report.curve) == 30 and report.stopped == "max_steps"
    assert _mae(d.y_val, free.predict(d.X_val)) == pytest.approx(report.curve[-1].val_mae, rel=1e-6)


@pytest.mark.parametrize("name", list(BASELINES))
def test_on_step_reports_each_curve_point(name: str, steels_training) -> None:
    seen: list[tuple[int, float]] = []
    model = BASELINES[name](FAST[name], seed=0)
    report = model.fit(*_args(steels_training), on_step=lambda step, mae: seen.append((step, mae)))
    assert seen == [(p.step, p.val_mae) for p in report.curve]


class _Pruned(Exception):
    """Stands in for optuna.TrialPruned."""


@pytest.mark.parametrize("name", TREES)
def test_on_step_exception_propagates(name: str, steels_training) -> None:
    steps: list[int] = []

    def prune_at_5(step: int, val_mae: float) -> None:
        steps.append(step)
        if step == 5:
            raise _Pruned(step)

    # rf's curve steps for 20 trees are 1..20, so step 5 is reached.
    model = BASELINES[name](FAST[name] if name != "rf" else {"n_estimators": 20}, seed=0)
    with pytest.raises(_Pruned):
        model.fit(*_args(steels_training), on_step=prune_at_5)
    assert steps == [1, 2, 3, 4, 5]  # training stopped there: no further step was reported


@pytest.mark.parametrize("name", TREES)
def test_time_limit_stops_after_first_step(name: str, steels_training) -> None:
    model = BASELINES[name](caps(name, 200), seed=0)
    report = model.fit(*_args(steels_training), time_limit_s=0.0)
    assert report.stopped == "time_limit"
    assert len(report.curve) == 1 and report.best_step == 1
    assert _mae(steels_training.y_val, model.predict(steels_training.X_val)) == pytest.approx(
        report.curve[0].val_mae, rel=1e-6
    )


@pytest.mark.parametrize("name", list(BASELINES))
def test_save_load_round_trip(name: str, steels_training, fitted, tmp_path) -> None:
    model, _ = fitted[name]
    X = np.concatenate([steels_training.X_train, steels_training.X_val])
    path = model.save(tmp_path / f"{name}.pkl")
    loaded = Model.load(path)
    assert type(loaded) is type(model)
    assert loaded.params == model.params and loaded.seed == model.seed
    assert np.array_equal(loaded.predict(X), model.predict(X))


# Seeds only matter where there is randomness: bootstrap (rf, by default) and row subsampling (boosters).
SEEDED = {
    "rf": {"n_estimators": 20},
    "xgboost": {"n_estimators": 40, "early_stopping_rounds": None, "subsample": 0.7},
    "lightgbm": {"n_estimators": 40, "early_stopping_rounds": None, "subsample": 0.7, "subsample_freq": 1},
    "catboost": {"iterations": 40, "early_stopping_rounds": None, "bagging_temperature": 1.0},  # Bayesian bootstrap
}


@pytest.mark.parametrize("name", TREES)
def test_seeded_fit_repeats_and_seed_matters(name: str, steels_training) -> None:
    d = steels_training
    runs = []
    for seed in (3, 3, 4):
        model = BASELINES[name](SEEDED[name], seed=seed)
        report = model.fit(*_args(d))
        runs.append((model.predict(d.X_val), [(p.step, p.train_mae, p.val_mae) for p in report.curve]))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])


@pytest.mark.parametrize("name", list(BASELINES))
def test_unknown_parameter_rejected(name: str) -> None:
    with pytest.raises(UsageError, match="unknown parameter"):
        BASELINES[name]({"not_a_param": 1}, seed=0)


def test_defaults_use_the_names_the_search_spaces_use() -> None:
    """The rtdl / Grinsztajn et al. search spaces are declared over these exact keys."""
    assert {
        "max_depth",
        "learning_rate",
        "min_child_weight",
        "subsample",
        "colsample_bytree",
        "reg_alpha",
        "reg_lambda",
        "gamma",
    } <= set(XGBoostModel.default_params())
    assert {
        "num_leaves",
        "learning_rate",
        "min_child_samples",
        "min_child_weight",
        "subsample",
        "subsample_freq",
        "colsample_bytree",
        "reg_lambda",
    } <= set(LightGBMModel.default_params())
    assert {"max_features", "max_depth", "min_samples_leaf", "bootstrap", "criterion"} <= set(
        RandomForestModel.default_params()
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("xgboost", {"reg_lambda": 1000.0, "n_estimators": 60}),
        ("xgboost", {"gamma": 1e6}),
        ("lightgbm", {"min_child_samples": 200}),
        ("rf", {"min_samples_leaf": 100}),
        ("catboost", {"depth": 2}),
        ("catboost", {"l2_leaf_reg": 1000.0}),
    ],
)
def test_hyperparameters_reach_the_library(name: str, params: dict, steels_training, fitted) -> None:
    """A value the library silently ignored would leave predictions unchanged."""
    base_model, _ = fitted[name]
    model = BASELINES[name]({**FAST[name], **params}, seed=0)
    model.fit(*_args(steels_training))
    assert not np.allclose(model.predict(steels_training.X_val), base_model.predict(steels_training.X_val))


def test_gpu_request_without_gpu_build_trains_on_cpu(steels_training) -> None:
    if cuda_available():
        pytest.skip("this xgboost build has CUDA")
    with pytest.warns(RuntimeWarning, match="no CUDA"):
        report = XGBoostModel({"n_estimators": 3}, seed=0, device="cuda").fit(*_args(steels_training))
    assert report.device == "cpu" and "device_note" in report.extra
    report = LightGBMModel({"n_estimators": 3}, seed=0, device="cuda").fit(*_args(steels_training))
    assert report.device == "cpu" and "CPU-only" in report.extra["device_note"]
