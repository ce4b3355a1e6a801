"""IRNet and its comparison networks as scikit-learn estimators, and formulas -> Magpie attributes as a transformer.

    from sklearn.pipeline import make_pipeline
    from irnet import IRNetRegressor, MagpieFeaturizer

    model = make_pipeline(MagpieFeaturizer(), IRNetRegressor(max_epochs=50, batch_size=256, lr=1e-3))
    model.fit(["NaCl", "Fe2O3", ...], y)
    model.predict(["MgO"])

Each regressor wraps the benchmark's own model (:class:`irnet.models.NetworkModel`: the network of
:func:`irnet.networks.build_model` trained by :func:`irnet.training.train_network`), so a network fitted here is
the network a benchmark run fits with the same parameters, seed and rows. Its parameters are the model's
(``NetworkModel.default_params()``: the paper's regime, Adam, lr 1e-4, batch 32, patience 200; on a CPU
``lr=3e-3, batch_size=1024, optimizer="adamw"`` converges much sooner, docs/guide/budgets.md "Trial 0 of a network
study") plus:

- ``validation_fraction`` (default 0.1): the share of the rows held out, seeded by ``random_state``, for early
  stopping (the network keeps its best validation epoch); ``fit(X, y, eval_set=(X_val, y_val))`` gives the
  validation rows instead and trains on all of ``X``.
- ``time_limit``: seconds after which the fit stops (``fit_report_.stopped == "time_limit"``); None: no limit.
- ``random_state``: an int seeds weights, batch order and the validation split (the benchmark's ``seed``);
  None draws one from numpy's global generator.
- ``device``: ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.

After ``fit``: ``model_`` (the fitted :class:`NetworkModel`), ``fit_report_`` (its curve, best epoch and why
it stopped), ``n_features_in_`` (and ``feature_names_in_`` for a DataFrame).

The estimators pass ``sklearn.utils.estimator_checks`` (``tests/test_estimators.py``) except two, skipped:
``check_methods_subset_invariance`` (the network computes in float32, so a row predicted alone and in a batch
differ by ~2e-7 relative, BLAS rounding by batch size, above the check's 1e-7) and, in the fast run with two
epochs, ``check_regressors_train`` (R² > 0.5), which a separate test runs with 10 epochs for all four.
``check_array_api_input`` skips itself (no array API support). ``fit`` takes no ``sample_weight``, so the
sample-weight checks do not apply.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from benchmarks.features import MAGPIE_NAMES, featurize_rows
from irnet.models import ElemNetModel, IRNetModel, NetworkModel, PlainNetModel, SRNetModel

_DEFAULTS = NetworkModel.default_params()
MIN_SAMPLES = 3  # batch norm needs two training rows, early stopping one validation row


class NetworkRegressor(RegressorMixin, BaseEstimator):
    """Base of the four network regressors; a subclass names the benchmark model it wraps."""

    model_class: ClassVar[type[NetworkModel]] = IRNetModel

    # The defaults are the wrapped model's (one source); scikit-learn reads the names from this signature.
    def __init__(
        self,
        *,
        depth: int = _DEFAULTS["depth"],
        lr: float = _DEFAULTS["lr"],
        batch_size: int = _DEFAULTS["batch_size"],
        optimizer: str = _DEFAULTS["optimizer"],
        weight_decay: float = _DEFAULTS["weight_decay"],
        loss: str = _DEFAULTS["loss"],
        patience: int = _DEFAULTS["patience"],
        max_epochs: int = _DEFAULTS["max_epochs"],
        lr_decay: float = _DEFAULTS["lr_decay"],
        schedule: str = _DEFAULTS["schedule"],
        warmup: float = _DEFAULTS["warmup"],
        standardize_inputs: bool = _DEFAULTS["standardize_inputs"],
        clip_inputs: bool = _DEFAULTS["clip_inputs"],
        standardize_target: bool = _DEFAULTS["standardize_target"],
        amp: bool = _DEFAULTS["amp"],
        compile: bool = _DEFAULTS["compile"],
        validation_fraction: float = 0.1,
        time_limit: float | None = None,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
    ) -> None:
        self.depth = depth
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.loss = loss
        self.patience = patience
        self.max_epochs = max_epochs
        self.lr_decay = lr_decay
        self.schedule = schedule
        self.warmup = warmup
        self.standardize_inputs = standardize_inputs
        self.clip_inputs = clip_inputs
        self.standardize_target = standardize_target
        self.amp = amp
        self.compile = compile
        self.validation_fraction = validation_fraction
        self.time_limit = time_limit
        self.random_state = random_state
        self.device = device

    def _seed(self) -> int:
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def fit(self, X: Any, y: Any, eval_set: tuple[Any, Any] | None = None) -> NetworkRegressor:
        """Train a fresh network on ``X, y``, early-stopping on ``eval_set`` or on a held-out
        ``validation_fraction`` of the rows; returns self."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        seed = self._seed()
        n = X.shape[0]
        if eval_set is not None:
            X_val, y_val = validate_data(self, *eval_set, reset=False, y_numeric=True, dtype=np.float64)
            X_train, y_train = X, y
            if n < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 training samples, got {n} sample(s)")
        else:
            if not 0 < self.validation_fraction < 1:
                raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}; "
                                 "or give eval_set=(X_val, y_val)")  # fmt: skip
            if n < MIN_SAMPLES:
                raise ValueError(f"{type(self).__name__} needs at least {MIN_SAMPLES} samples (2 to train, 1 to "
                                 f"validate), got {n} sample(s)")  # fmt: skip
            n_val = min(n - 2, max(1, round(self.validation_fraction * n)))
            order = np.random.default_rng(seed).permutation(n)
            X_train, y_train, X_val, y_val = X[order[n_val:]], y[order[n_val:]], X[order[:n_val]], y[order[:n_val]]
        params = {name: getattr(self, name) for name in _DEFAULTS}
        model = self.model_class(params, seed=seed, device=self.device)
        self.fit_report_ = model.fit(X_train, y_train, X_val, y_val, time_limit_s=self.time_limit)
        self.model_ = model
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in the units of the ``y`` it was fitted on, 1-D float64."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.model_.predict(X)

    # Pickle the weights as CPU tensors (NetworkModel.state), so a model fitted on a GPU loads on a CPU.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if "model_" in state:
            model = state.pop("model_")
            state["_model_payload"] = {"params": model.params, "seed": model.seed, "state": model.state()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        payload = state.pop("_model_payload", None)
        super().__setstate__(state)
        if payload is not None:
            model = self.model_class(payload["params"], seed=payload["seed"], device=self.device)
            model.load_state(payload["state"])
            self.model_ = model


class IRNetRegressor(NetworkRegressor):
    """IRNet (Jha et al., KDD 2019): a residual shortcut around every layer. See :mod:`irnet.estimators`."""

    model_class = IRNetModel


class SRNetRegressor(NetworkRegressor):
    """SRNet: one residual shortcut around every stack of equal-width layers. See :mod:`irnet.estimators`."""

    model_class = SRNetModel


class PlainNetRegressor(NetworkRegressor):
    """The plain deep network: IRNet's layers without shortcuts. See :mod:`irnet.estimators`."""

    model_class = PlainNetModel


class ElemNetRegressor(NetworkRegressor):
    """ElemNet's layout (ReLU, no batch norm, dropout). See :mod:`irnet.estimators`; ElemNet itself reads
    element fractions, which ``benchmarks.features.featurize_formulas(formulas, "elemnet")`` gives."""

    model_class = ElemNetModel


class MagpieFeaturizer(TransformerMixin, BaseEstimator):
    """Formulas -> the 145 Magpie attributes (Ward et al. 2016) of :func:`benchmarks.features.featurize_formulas`,
    the features every benchmark run uses. Stateless: ``fit`` only records the input.

    Input: a sequence of formula strings, a one-column 2-D array or DataFrame, or a DataFrame with a
    ``formula`` column. A formula that cannot be read raises ``ValueError`` naming its row; with
    ``on_invalid="nan"`` its row is NaN instead (and a regressor after it will refuse it).
    """

    def __init__(self, on_invalid: str = "raise", column: str = "formula") -> None:
        self.on_invalid = on_invalid
        self.column = column

    def fit(self, X: Any, y: Any = None) -> MagpieFeaturizer:
        self._formulas(X)
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        formulas, labels = self._formulas(X)
        return featurize_rows(formulas, "magpie", on_invalid=self.on_invalid, row_labels=labels)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(MAGPIE_NAMES, dtype=object)

    def _formulas(self, X: Any) -> tuple[np.ndarray, list[Any] | None]:
        """(formulas, row labels: a DataFrame's or Series' index, else None for positions)."""
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            if self.column in X.columns:
                return X[self.column].to_numpy(dtype=object), list(X.index)
            if X.shape[1] == 1:
                return X.iloc[:, 0].to_numpy(dtype=object), list(X.index)
            raise ValueError(f"MagpieFeaturizer: no column {self.column!r} among {list(X.columns)}; give a "
                             f"{self.column!r} column of formulas (or set column=)")  # fmt: skip
        if isinstance(X, pd.Series):
            return X.to_numpy(dtype=object), list(X.index)
        if isinstance(X, str):
            raise ValueError("MagpieFeaturizer takes a sequence of formulas, not one string: wrap it in a list")
        array = np.asarray(X, dtype=object)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(
                f"MagpieFeaturizer takes a 1-D sequence of formulas or one column, got shape {array.shape}"
            )
        return array, None
