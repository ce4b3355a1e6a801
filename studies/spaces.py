"""The one interpreter of the search-space specs of :mod:`benchmarks.searchspace`: Optuna suggestions.

:func:`suggest` draws a configuration through an Optuna trial; :func:`default_trial_params` turns a full
parameter dict (a model's defaults, or a preset's first regime) into the Optuna parameters of an enqueued
trial, and refuses values a space cannot represent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna

from benchmarks.searchspace import Space, Spec

ENABLED_SUFFIX = "__enabled"  # Optuna name of an optional parameter's on/off switch


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
