"""The scikit-learn face of the networks (``irnet.estimators``): scikit-learn's own estimator checks, the same
network as the benchmark's model, pipelines from formulas, and the README's example."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_regressors_train, parametrize_with_checks

from irnet import (
    ElemNetRegressor,
    IRNetModel,
    IRNetRegressor,
    MagpieFeaturizer,
    PlainNetRegressor,
    SRNetRegressor,
    build_model,
)
from irnet.estimators import NetworkRegressor
from irnet.models import NetworkModel

REPO = Path(__file__).resolve().parents[1]
# A depth-17 network (the smallest published one) for two epochs of one or two steps (the checks' data has
# 20-200 rows): the checks test the API, not the fit; ~0.1 s a fit, ~130 fits.
TINY = {"max_epochs": 2, "patience": 2, "batch_size": 128, "lr": 1e-3, "random_state": 0}
REGRESSORS = (IRNetRegressor, SRNetRegressor, PlainNetRegressor, ElemNetRegressor)

# The checks these estimators do not pass, and why (also in irnet/estimators.py's docstring).
SKIPPED_CHECKS = {
    # The network computes in float32: a row predicted in a batch of 20 and alone differs in the last float32
    # bits (BLAS picks other kernels by batch size), ~2e-7 relative, above the check's rtol of 1e-7.
    "check_methods_subset_invariance": "float32 network: batch-size-dependent rounding of ~2e-7 relative",
    # R² > 0.5 on the check's data needs ~10 epochs; with TINY's two it is a test of the epochs, so it runs
    # below (test_regressors_learn_the_checks_regression_data) with settings that can pass it.
    "check_regressors_train": "two epochs cannot reach R² 0.5; run with 10 epochs in its own test",
}


def _run_check(estimator, check) -> None:
    name = getattr(check, "func", check).__name__
    if name in SKIPPED_CHECKS:  # skipped rather than xfailed: an expected failure would still cost its fits
        pytest.skip(SKIPPED_CHECKS[name])
    check(estimator)


@parametrize_with_checks([IRNetRegressor(**TINY)])
def test_irnet_regressor_passes_sklearn_checks(estimator, check):
    _run_check(estimator, check)


@pytest.mark.slow
@parametrize_with_checks([cls(**TINY) for cls in REGRESSORS[1:]])
def test_other_network_regressors_pass_sklearn_checks(estimator, check):
    _run_check(estimator, check)


@pytest.mark.slow
@pytest.mark.parametrize("cls", REGRESSORS, ids=lambda c: c.__name__)
def test_regressors_learn_the_checks_regression_data(cls):
    # 10 epochs at lr 1e-3, batch 32: train R² 0.52 (plain) to 0.92 (SRNet) on this machine, above the 0.5 bar.
    check_regressors_train(cls.__name__, cls(max_epochs=10, patience=10, batch_size=32, lr=1e-3))


def test_defaults_are_the_benchmark_models_and_the_fit_is_its_fit(steels_training):
    """Same parameters, seed and rows: the estimator's network is the one the benchmark's model fits."""
    names = set(NetworkModel.default_params())
    assert names <= set(IRNetRegressor().get_params())
    assert {k: IRNetRegressor().get_params()[k] for k in names} == NetworkModel.default_params()
    d = steels_training
    settings = {"max_epochs": 3, "patience": 3, "batch_size": 128, "lr": 1e-3}
    reference = IRNetModel(settings, seed=7)
    report = reference.fit(d.X_train, d.y_train, d.X_val, d.y_val)
    estimator = IRNetRegressor(**settings, random_state=7).fit(d.X_train, d.y_train, eval_set=(d.X_val, d.y_val))
    np.testing.assert_array_equal(estimator.predict(d.X_val), reference.predict(d.X_val))
    assert [p.val_mae for p in estimator.fit_report_.curve] == [p.val_mae for p in report.curve]
    assert estimator.fit_report_.best_step == report.best_step


@pytest.mark.parametrize("cls", REGRESSORS, ids=lambda c: c.__name__)
def test_each_regressor_wraps_its_architecture_and_pickles(cls, steels_training):
    d = steels_training
    estimator = cls(**TINY).fit(d.X_train[:200], d.y_train[:200])
    assert estimator.model_.network.arch == cls.model_class.arch and estimator.n_features_in_ == 145
    assert estimator.fit_report_.stopped in ("max_steps", "early_stopping")
    restored = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(restored.predict(d.X_val), estimator.predict(d.X_val))
    assert clone(estimator).get_params() == estimator.get_params() and not hasattr(clone(estimator), "model_")


def test_validation_fraction_holds_out_rows_and_bad_settings_fail_in_fit(steels_training):
    d = steels_training
    estimator = IRNetRegressor(**TINY, validation_fraction=0.25).fit(d.X_train[:100], d.y_train[:100])
    assert estimator.fit_report_.best_val_mae == pytest.approx(min(p.val_mae for p in estimator.fit_report_.curve))
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\)"):
        IRNetRegressor(**{**TINY, "validation_fraction": 0}).fit(d.X_train[:50], d.y_train[:50])
    with pytest.raises(ValueError, match="unknown depth 18"):
        IRNetRegressor(**{**TINY, "depth": 18}).fit(d.X_train[:50], d.y_train[:50])


def test_pipeline_from_formulas_and_cross_val_score(steels_task):
    formulas, y = list(steels_task.formulas[:120]), steels_task.targets[:120]
    pipeline = make_pipeline(MagpieFeaturizer(), IRNetRegressor(**TINY))
    scores = cross_val_score(pipeline, formulas, y, cv=2, scoring="neg_mean_absolute_error")
    assert scores.shape == (2,) and np.isfinite(scores).all()
    pipeline.fit(formulas, y)
    assert pipeline.predict(["Fe0.7Cr0.2Ni0.1"]).shape == (1,)


def test_featurizer_names_the_row_it_cannot_read():
    import pandas as pd

    from benchmarks.features import MAGPIE_NAMES, featurize_formulas

    featurizer = MagpieFeaturizer().fit(["NaCl"])
    np.testing.assert_array_equal(featurizer.transform(["NaCl", "Fe2O3"]), featurize_formulas(["NaCl", "Fe2O3"]))
    assert list(featurizer.get_feature_names_out()) == list(MAGPIE_NAMES) and len(MAGPIE_NAMES) == 145
    frame = pd.DataFrame({"formula": ["NaCl", "Xx2"], "other": [1, 2]}, index=["a", "b"])
    with pytest.raises(ValueError, match="row b: formula 'Xx2' cannot be featurised"):
        featurizer.transform(frame)
    nan = MagpieFeaturizer(on_invalid="nan").fit(frame).transform(frame)
    assert np.isfinite(nan[0]).all() and np.isnan(nan[1]).all()
    with pytest.raises(ValueError, match="no column 'formula'"):
        featurizer.transform(pd.DataFrame({"a": ["NaCl"], "b": ["MgO"]}))


def test_package_exports_its_public_names():
    import irnet

    assert irnet.build_model is build_model and issubclass(irnet.IRNetRegressor, NetworkRegressor)
    assert build_model("irnet", 17, 145).depth == 17
    with pytest.raises(AttributeError):
        irnet.IRNet  # noqa: B018


def test_readme_example_runs():
    """The README's scikit-learn example, run as written (its ``python`` block under "Use IRNet ...")."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Use IRNet outside the benchmark", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert np.isfinite(namespace["mae"])
