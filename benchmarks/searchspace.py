"""Search spaces declared as data, so that a model's file can declare its own (no Optuna needed here).

A space maps a model parameter (the key the model's ``default_params`` uses) to a spec:

- ``{"type": "float", "low": a, "high": b, "log": bool}``
- ``{"type": "int", "low": a, "high": b, "log": bool}``
- ``{"type": "categorical", "choices": [...]}``
- ``{"type": "optional", "off": value, "on": <float/int spec>}``: a parameter that is either switched off
  (``off``, e.g. no weight decay) or drawn from ``on``, as in the "optional" ranges of yandex-research/rtdl.
- ``{"type": "fixed", "value": v}``: not tuned, always ``v`` (presets use it for step caps and threads).

:mod:`studies.spaces` is the one interpreter of these specs (it turns them into Optuna suggestions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Spec = Mapping[str, Any]
Space = Mapping[str, Spec]

SPEC_TYPES = ("float", "int", "categorical", "optional", "fixed")


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
    ``source``: where the ranges come from.

    ``progress_param``: where set (a booster's learning rate), the pruner compares trials at equal learning rate x
    rounds, not at equal rounds: the step reported is ``int(rate * round)``, once per whole unit (then
    ``report_every`` is unused and ``warmup_steps`` counts those units). At equal rounds a configuration with a
    lower rate is always behind, however far it would go, and the median pruner stopped every one of them: at
    the ``quick`` preset's 10,000 rows the XGBoost search of 2026-12-08 selected lr 0.18, LightGBM's never beat
    its default lr 0.1 (docs/results/quick-equal-rounds). Shrinkage makes progress roughly proportional to
    rate x rounds (Friedman, "Greedy function approximation", Ann. Statist. 2001, section 5).
    """

    space: Space
    report_every: int = 1
    warmup_steps: int = 0
    source: str = ""
    progress_param: str | None = None


def merge_space(space: Space, overrides: Space) -> dict[str, Spec]:
    """``space`` with some specs replaced or added (a preset narrowing a range or fixing a cap)."""
    return {**space, **overrides}


def fixed_values(space: Space) -> dict[str, Any]:
    """The parameters a space fixes (not tuned)."""
    return {name: spec["value"] for name, spec in space.items() if spec["type"] == "fixed"}


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
