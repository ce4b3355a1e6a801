"""Search spaces, declared as data: one :class:`ModelSearch` per model (ranges of Gorishniy et al. 2021,
yandex-research/rtdl, and Grinsztajn et al. 2022).

A space maps a model parameter (the key the model's ``default_params`` uses) to a spec:

- ``{"type": "float", "low": a, "high": b, "log": bool}``
- ``{"type": "int", "low": a, "high": b, "log": bool}``
- ``{"type": "categorical", "choices": [...]}``
- ``{"type": "optional", "off": value, "on": <float/int spec>}``: a parameter that is either switched off
  (``off``, e.g. no weight decay) or drawn from ``on``. Optuna sees a boolean ``<name>__enabled`` plus the
  conditional ``<name>``, as in rtdl's "optional" ranges.
- ``{"type": "fixed", "value": v}``: not tuned, always ``v`` (presets use it for step caps and threads).

:func:`suggest` is the only interpreter of these specs; :func:`default_trial_params` turns a model's defaults
into the Optuna parameters of "trial 0", and refuses defaults a space cannot represent.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

Spec = Mapping[str, Any]
Space = Mapping[str, Spec]

ENABLED_SUFFIX = "__enabled"  # Optuna name of an optional parameter's on/off switch
SPEC_TYPES = ("float", "int", "categorical", "optional", "fixed")

NETWORK_MODELS = ("irnet", "srnet", "plain", "elemnet")
BOOSTER_MODELS = ("xgboost", "lightgbm")


def fixed(value: Any) -> dict[str, Any]:
    """A parameter that is not tuned."""
    return {"type": "fixed", "value": value}


def log_uniform(low: float, high: float) -> dict[str, Any]:
    """A float drawn log-uniformly from [low, high]."""
    return {"type": "float", "low": low, "high": high, "log": True}


def uniform(low: float, high: float) -> dict[str, Any]:
    """A float drawn uniformly from [low, high]."""
    return {"type": "float", "low": low, "high": high, "log": False}


def int_range(low: int, high: int, *, log: bool = False) -> dict[str, Any]:
    """An integer from [low, high] (log-uniform when ``log``)."""
    return {"type": "int", "low": low, "high": high, "log": log}


def choice(*choices: Any) -> dict[str, Any]:
    """One of ``choices``."""
    return {"type": "categorical", "choices": list(choices)}


def optional(on: Spec, off: Any = 0.0) -> dict[str, Any]:
    """Either ``off`` or a value drawn from ``on``."""
    return {"type": "optional", "on": dict(on), "off": off}


@dataclass(frozen=True)
class ModelSearch:
    """How one model is tuned: its space, and how its per-step validation scores feed the pruner.

    ``report_every``: report every k-th step to the pruner (boosters have thousands of rounds; one storage
    write per round would cost more than the round). ``warmup_steps``: steps before a trial may be pruned.
    """

    model: str
    space: Space
    report_every: int = 1
    warmup_steps: int = 0
    notes: str = ""


# Networks: rtdl's MLP/ResNet ranges for the optimiser (Gorishniy et al. 2021) plus the paper's depths and batch sizes, and
# the larger batches a CPU needs (an epoch at batch 32 takes ~4x as long as at batch 1024 on 2 cores).
# Training rules that are not hyper-parameters of the comparison (loss, patience, max_epochs,
# standardisation) stay at the model defaults unless a preset fixes them.
_NETWORK_SPACE: dict[str, Spec] = {
    "lr": log_uniform(1e-5, 1e-2),
    "batch_size": choice(32, 64, 128, 256, 512, 1024, 2048),
    "depth": choice(17, 24, 48),
    "optimizer": choice("adam", "adamw"),
    "weight_decay": optional(log_uniform(1e-6, 1e-3), off=0.0),
}

# The published training regime (Jha et al., KDD 2019; NU-CUCIS/IRNet): Adam, lr 1e-4, batch 32, no weight decay.
PAPER_NETWORK_REGIME: dict[str, Any] = {"optimizer": "adam", "lr": 1e-4, "batch_size": 32, "weight_decay": 0.0}
CONVERGING_BATCH_SIZES = (1024, 512, 256, 128)
MIN_STEPS_PER_EPOCH = 8


def converging_network_regime(n_train: int) -> dict[str, Any]:
    """A network regime that early-stops within minutes on a 2-core CPU: AdamW, the largest batch that still
    gives ``MIN_STEPS_PER_EPOCH`` steps per epoch (1024 at 10k rows), lr 3e-3 at batch 1024 scaled by the
    square root of the batch ratio (1e-3..3e-3 for batches 128..1024). Measured: README "Budgets"."""
    batch = next((b for b in CONVERGING_BATCH_SIZES if n_train >= MIN_STEPS_PER_EPOCH * b), CONVERGING_BATCH_SIZES[-1])
    lr = round(3e-3 * math.sqrt(batch / 1024), 6)
    return {"optimizer": "adamw", "lr": lr, "batch_size": batch, "weight_decay": 0.0}


SEARCHES: dict[str, ModelSearch] = {
    **{
        name: ModelSearch(name, _NETWORK_SPACE, report_every=1, warmup_steps=5, notes="rtdl MLP ranges + paper depths")
        for name in NETWORK_MODELS
    },
    # rtdl (Gorishniy et al. 2021) XGBoost space; the tree cap and early stopping come from the model/preset.
    "xgboost": ModelSearch(
        "xgboost",
        {
            "max_depth": int_range(3, 10),
            "learning_rate": log_uniform(1e-5, 1.0),
            "min_child_weight": log_uniform(1e-8, 1e5),
            "subsample": uniform(0.5, 1.0),
            "colsample_bytree": uniform(0.5, 1.0),
            "reg_alpha": optional(log_uniform(1e-8, 100.0), off=0.0),
            "reg_lambda": optional(log_uniform(1e-8, 100.0), off=0.0),
            "gamma": optional(log_uniform(1e-8, 100.0), off=0.0),
        },
        report_every=10,
        warmup_steps=50,
        notes="rtdl XGBoost ranges",
    ),
    # rtdl LightGBM space.
    "lightgbm": ModelSearch(
        "lightgbm",
        {
            "num_leaves": int_range(10, 100),
            "learning_rate": log_uniform(1e-3, 1.0),
            "min_child_samples": int_range(2, 100),
            "min_child_weight": log_uniform(1e-5, 0.1),
            "subsample": uniform(0.5, 1.0),
            "colsample_bytree": uniform(0.5, 1.0),
            "reg_lambda": optional(log_uniform(1e-5, 1.0), off=0.0),
        },
        report_every=10,
        warmup_steps=50,
        notes="rtdl LightGBM ranges",
    ),
    # Grinsztajn et al. 2022 random forest space. max_features 1.0 stands for their None (all features,
    # scikit-learn's regressor default); min_samples_leaf starts at 1 so the library default is in the space.
    "rf": ModelSearch(
        "rf",
        {
            "max_features": choice("sqrt", "log2", 1.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
            "max_depth": choice(None, 2, 3, 4),
            "min_samples_leaf": int_range(1, 50, log=True),
            "bootstrap": choice(True, False),
            "criterion": choice("squared_error", "absolute_error"),
        },
        report_every=1,
        warmup_steps=10,  # steps are tree counts
        notes="Grinsztajn et al. 2022 ranges",
    ),
    "dummy": ModelSearch("dummy", {"strategy": choice("mean", "median")}, notes="scale reference"),
}


def get_search(model: str) -> ModelSearch:
    """The declared search of ``model`` (KeyError for an unknown name; the model registry checks names)."""
    return SEARCHES[model]


def merge_space(space: Space, overrides: Space) -> dict[str, Spec]:
    """``space`` with some specs replaced or added (a preset narrowing a range or fixing a cap)."""
    return {**space, **overrides}


def check_space(space: Space, known_params: Mapping[str, Any], *, model: str = "model") -> None:
    """Raise ValueError when a spec is malformed or names a parameter the model does not have."""
    for name, spec in space.items():
        if name not in known_params:
            raise ValueError(f"{model}: search space names unknown parameter {name!r}; known: {sorted(known_params)}")
        _check_spec(name, spec, model)


def _check_spec(name: str, spec: Spec, model: str) -> None:
    kind = spec.get("type")
    if kind not in SPEC_TYPES:
        raise ValueError(f"{model}.{name}: spec type {kind!r} is not one of {SPEC_TYPES}")
    if kind in ("float", "int"):
        low, high = spec["low"], spec["high"]
        if not low <= high or (spec.get("log") and low <= 0):
            raise ValueError(f"{model}.{name}: bad range [{low}, {high}] (log={spec.get('log', False)})")
    elif kind == "categorical":
        if not spec["choices"]:
            raise ValueError(f"{model}.{name}: no choices")
    elif kind == "optional":
        if spec["on"].get("type") not in ("float", "int"):
            raise ValueError(f"{model}.{name}: an optional parameter's 'on' spec must be float or int")
        _check_spec(name, spec["on"], model)


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Draw one configuration from ``space`` through ``trial`` (the single interpreter of the specs)."""
    return {name: _suggest_one(trial, name, spec) for name, spec in space.items()}


def _suggest_one(trial: optuna.Trial, name: str, spec: Spec) -> Any:
    kind = spec["type"]
    if kind == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log", False)))
    if kind == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log", False)))
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec["choices"]))
    if kind == "optional":
        enabled = trial.suggest_categorical(name + ENABLED_SUFFIX, [False, True])
        return _suggest_one(trial, name, spec["on"]) if enabled else spec["off"]
    if kind == "fixed":
        return spec["value"]
    raise ValueError(f"{name}: unknown spec type {kind!r}")


def fixed_values(space: Space) -> dict[str, Any]:
    """The parameters a space fixes (not tuned)."""
    return {name: spec["value"] for name, spec in space.items() if spec["type"] == "fixed"}


def default_trial_params(space: Space, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna parameters that make :func:`suggest` return ``defaults`` (for ``enqueue_trial``).

    Raises ValueError when a default lies outside its range or choices: trial 0 must be exactly the
    published/library configuration, not a silently clipped one.
    """
    raw: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "fixed":
            continue
        value = defaults[name]
        if spec["type"] == "optional":
            enabled = not _same(value, spec["off"])
            raw[name + ENABLED_SUFFIX] = enabled
            if enabled:
                raw[name] = _represent(name, spec["on"], value)
        else:
            raw[name] = _represent(name, spec, value)
    return raw


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a is b or (type(a) is type(b) and a == b)
    return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=0.0)


def _represent(name: str, spec: Spec, value: Any) -> Any:
    if spec["type"] == "categorical":
        for option in spec["choices"]:
            if _same(option, value):
                return option
        raise ValueError(f"default {name}={value!r} is not among the choices {list(spec['choices'])}")
    if value is None or not spec["low"] <= value <= spec["high"]:
        raise ValueError(f"default {name}={value!r} lies outside [{spec['low']}, {spec['high']}]")
    return int(value) if spec["type"] == "int" else float(value)
