"""Model name -> model class: the six benchmark models, plus ElemNet and the dummy reference.

Names are the values of the MLflow ``model`` tag and of ``--models``. An unknown name fails loudly with the
valid names; a model whose module cannot be imported fails with the import error, not a silent gap.
"""
from __future__ import annotations

import difflib
import importlib

from benchmarks.contract import Model
from benchmarks.errors import UsageError

# Order of the default comparison (and of the leaderboard's ties): IRNet first, then what it is compared with.
BENCHMARK_MODELS: tuple[str, ...] = ("irnet", "srnet", "plain", "rf", "xgboost", "lightgbm")
EXTRA_MODELS: tuple[str, ...] = ("elemnet", "dummy")

_CLASS_PATHS: dict[str, str] = {
    "irnet": "irnet.models:IRNetModel",
    "srnet": "irnet.models:SRNetModel",
    "plain": "irnet.models:PlainNetModel",
    "elemnet": "irnet.models:ElemNetModel",
    "rf": "baselines.forest:RandomForestModel",
    "xgboost": "baselines.xgb:XGBoostModel",
    "lightgbm": "baselines.lgbm:LightGBMModel",
    "dummy": "baselines.dummy:DummyModel",
}

MODEL_NAMES: tuple[str, ...] = BENCHMARK_MODELS + EXTRA_MODELS


def get_model_class(name: str) -> type[Model]:
    """The class registered as ``name``; UsageError (exit 2) listing valid names when there is none."""
    if name not in _CLASS_PATHS:
        close = difflib.get_close_matches(name, MODEL_NAMES, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"unknown model {name!r}; {hint}valid models: {', '.join(MODEL_NAMES)}")
    module_name, class_name = _CLASS_PATHS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if getattr(cls, "name", None) != name:  # the tag value and the registry key must agree
        raise RuntimeError(f"{_CLASS_PATHS[name]} has name {getattr(cls, 'name', None)!r}, registered as {name!r}")
    return cls


def parse_model_list(text: str | None) -> list[str]:
    """``"irnet,rf"`` -> ``["irnet", "rf"]``, checked; None or "all" -> the six benchmark models."""
    if text is None or text.strip() in ("", "all"):
        return list(BENCHMARK_MODELS)
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in _CLASS_PATHS]
    if unknown:
        get_model_class(unknown[0])  # raises with the valid names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"--models names {', '.join(duplicates)} more than once")
    return names
