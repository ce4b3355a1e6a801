"""The tree ensembles' search spaces are sized for large data: they hold the configurations published for all
239,190 formation_energy rows, their lowest learning rate can converge under the presets' round caps, and large
trees fit. Small real data (Matbench steels, 224 training rows) for the fits, so the file runs in seconds."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import optuna
import pytest

from baselines.boosting import LEARNING_RATE_HIGH, LEARNING_RATE_LOW, REFIT_RATE_ROUNDS, TRIAL_RATE_ROUNDS
from baselines.lgbm import LightGBMModel
from baselines.xgb import XGBoostModel
from benchmarks.errors import UsageError
from benchmarks.searchspace import check_space, fixed_values, int_range, log_uniform, merge_space
from studies.presets import get_preset
from studies.protocol import resolved_space
from studies.registry import model_info
from studies.spaces import default_trial_params, suggest

BOOSTERS = ("lightgbm", "xgboost", "catboost")

# Configurations published on all 239,190 formation_energy training rows (docs/measurements.md "A network on the full
# training part, measured" and "The boosters' round cap on the full training part, measured";
# docs/results/scaling/export, seed 0).
PUBLISHED = {
    "one hand-set LightGBM, test 0.0839": ("lightgbm", {"num_leaves": 127, "learning_rate": 0.1}),
    "tuned LightGBM, test 0.0913": (
        "lightgbm",
        {
            "num_leaves": 79,
            "learning_rate": 0.09295629572147569,
            "min_child_samples": 52,
            "min_child_weight": 0.0003637644950043965,
        },
    ),
    "tuned XGBoost, test 0.0661": (
        "xgboost",
        {
            "max_depth": 9,
            "learning_rate": 0.10168975837188327,
            "min_child_weight": 3.388433576645239e-07,
            "subsample": 0.7434370633219907,
            "colsample_bytree": 0.6889604173113557,
            "reg_alpha": 0.0,
            "reg_lambda": 0.5441812274519652,
            "gamma": 0.0,
        },
    ),
}

# Learning rate x best round of the tracked formation_energy refits, all ended by early stopping
# (docs/results/scaling/export; baselines/boosting.py).
RATE_ROUNDS_10K = (47, 60, 118, 70, 159, 174)
RATE_ROUNDS_MAX = 970  # XGBoost, depth 9, lr 0.102, best round 9,536, all 239,190 rows


@pytest.mark.parametrize("preset", ["quick", "paper"])
@pytest.mark.parametrize("label", sorted(PUBLISHED))
def test_the_published_large_data_configurations_lie_in_the_space(label: str, preset: str) -> None:
    """Trial 0 could be queued as each of them: the space represents it exactly (no clipping)."""
    model, params = PUBLISHED[label]
    space = resolved_space(model, get_preset(preset), threads=1)
    wanted = {**model_info(model).model_class.default_params(), **params}
    study = optuna.create_study()
    study.enqueue_trial(default_trial_params(space, wanted))  # ValueError where a value lies outside
    drawn = suggest(study.ask(), space)
    assert {name: drawn[name] for name in params} == params


@pytest.mark.parametrize("model", BOOSTERS)
def test_every_booster_searches_the_shared_rate_range(model: str) -> None:
    space = model_info(model).search.space
    assert space["learning_rate"] == log_uniform(LEARNING_RATE_LOW, LEARNING_RATE_HIGH)
    default_rate = model_info(model).model_class.default_params()["learning_rate"]
    assert LEARNING_RATE_LOW <= default_rate <= LEARNING_RATE_HIGH  # trial 0 stays the library's defaults


def test_capacity_grows_past_rtdls_small_data_ranges() -> None:
    lgbm, xgb = model_info("lightgbm").search.space, model_info("xgboost").search.space
    assert lgbm["num_leaves"] == int_range(8, 1024, log=True)
    assert lgbm["min_child_samples"] == int_range(2, 1000, log=True)
    assert lgbm["subsample_freq"] == {"type": "fixed", "value": 1}  # subsample bags at all
    assert xgb["max_depth"] == int_range(3, 12)
    forest = model_info("rf").search.space
    assert {"max_features", "min_samples_leaf"} <= set(forest)


def test_the_rule_for_the_rates_holds_the_measurements() -> None:
    assert statistics.median(RATE_ROUNDS_10K) <= TRIAL_RATE_ROUNDS
    assert RATE_ROUNDS_MAX <= REFIT_RATE_ROUNDS


@pytest.mark.parametrize("preset", ["quick", "paper"])
@pytest.mark.parametrize("model", BOOSTERS)
def test_the_lowest_rate_can_converge_under_the_trial_and_refit_caps(model: str, preset: str) -> None:
    """lowest rate x trial cap >= TRIAL_RATE_ROUNDS, lowest rate x refit cap >= REFIT_RATE_ROUNDS."""
    chosen = get_preset(preset)
    info = model_info(model)
    cap_param = info.param("step_cap")
    assert cap_param is not None
    space = resolved_space(model, chosen, threads=1)
    trial_cap = fixed_values(space)[cap_param]
    low = space["learning_rate"]["low"]
    assert low * trial_cap >= TRIAL_RATE_ROUNDS, (low, trial_cap)
    refit, factor = chosen.refit_configuration(model, {cap_param: trial_cap})
    assert low * refit[cap_param] >= REFIT_RATE_ROUNDS and factor == refit[cap_param] / trial_cap


def test_a_bad_range_is_a_one_line_error() -> None:
    space = merge_space(model_info("lightgbm").search.space, {"num_leaves": int_range(1024, 8, log=True)})
    with pytest.raises(ValueError, match=r"lightgbm\.num_leaves: bad range \[1024, 8\]") as raised:
        check_space(space, LightGBMModel.default_params(), model="lightgbm")
    assert "\n" not in str(raised.value)
    quick = get_preset("quick")
    bad = quick.with_changes(settings={**quick.settings, "boosters": {"step_cap": int_range(5000, 10)}})
    with pytest.raises(UsageError, match="bad range") as refused:
        resolved_space("xgboost", bad, threads=1)
    assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match=r"^lightgbm: ") as library:  # LightGBM's own check, as before
        LightGBMModel({"num_leaves": 1, "n_estimators": 3}, seed=0).fit(*_args_of(_tiny()))
    assert "\n" not in str(library.value).strip()


def _tiny() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    return X, X[:, 0] + 0.1 * rng.normal(size=60)


def _args_of(data: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = data
    return X[:40], y[:40], X[40:], y[40:]


def _args(d: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return d.X_train, d.y_train, d.X_val, d.y_val


def test_a_large_leaf_count_reaches_lightgbm(steels_training) -> None:
    """1,024 leaves allowed: the trees grow past the default's 31 (as many as 224 rows of 2 allow)."""
    model = LightGBMModel({"num_leaves": 1024, "min_child_samples": 2, "n_estimators": 30, "learning_rate": 0.1},
                          seed=0)  # fmt: skip
    report = model.fit(*_args(steels_training))
    assert np.isfinite(report.best_val_mae) and np.isfinite(model.predict(steels_training.X_val)).all()
    assert model.booster_ is not None
    leaves = [tree["num_leaves"] for tree in model.booster_.dump_model()["tree_info"]]
    assert max(leaves) > 31, leaves


def test_a_depth_12_xgboost_fits(steels_training) -> None:
    model = XGBoostModel({"max_depth": 12, "min_child_weight": 1e-3, "n_estimators": 30, "learning_rate": 0.1},
                         seed=0)  # fmt: skip
    report = model.fit(*_args(steels_training))
    assert np.isfinite(report.best_val_mae) and np.isfinite(model.predict(steels_training.X_val)).all()
    assert model.booster_ is not None
    depth = max(line.count("\t") for tree in model.booster_.get_dump() for line in tree.splitlines())
    assert depth > 6  # deeper than XGBoost's default depth


def test_subsample_bags_only_with_its_fixed_frequency_and_trial_0_is_the_library_default(steels_training) -> None:
    """LightGBM ignores bagging_fraction without bagging_freq; at subsample 1.0 frequency 1 changes nothing."""
    d = steels_training

    def predictions(**params: float) -> np.ndarray:
        model = LightGBMModel({"n_estimators": 40, **params}, seed=0)
        model.fit(*_args(d))
        return model.predict(d.X_val)

    default = predictions()
    assert np.array_equal(predictions(subsample_freq=1), default)  # trial 0: the library's trees
    assert np.array_equal(predictions(subsample=0.6), default)  # rtdl's subsample alone: no bagging
    assert not np.array_equal(predictions(subsample=0.6, subsample_freq=1), default)


def test_a_trial_stopped_by_its_round_cap_says_so(tmp_path, steels_training) -> None:
    """The trial's user attribute "stopped" (and its MLflow run's tag) is the fit's reason, "max_steps" at the cap."""
    from benchmarks.searchspace import fixed
    from studies.coordination import open_storage
    from studies.registry import get_model_class
    from studies.schema import RunKey
    from studies.tuning import TuningJob, open_study, tune

    preset = get_preset("smoke")
    search = model_info("xgboost").search
    study = open_study(open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"),
                       RunKey("matbench_steels", "xgboost", 0, 0, "smoke"),
                       search=search, preset=preset, config={"data": "steels"})  # fmt: skip
    space = {**resolved_space("xgboost", preset, 1), "learning_rate": fixed(LEARNING_RATE_LOW),
             "n_estimators": fixed(20)}  # fmt: skip
    job = TuningJob(model_cls=get_model_class("xgboost"), search=search, space=space, training=steels_training,
                    budget=preset.budget, seed=0, device="cpu")  # fmt: skip
    tune(study, job, progress=False)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(t.user_attrs["stopped"] == "max_steps" for t in complete)
