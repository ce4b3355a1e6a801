"""Presets, declared as data: how much tuning a run does and on how much data.

A preset fixes the study budget (trials, tuning seconds, per-fit time limit), the training-row cap, step caps
and patience overrides, and the default folds and seeds. The budget is the same for every model: equal
trials, equal seconds. Command-line flags (``--trials``, ``--timeout``, ``--max-train-rows``, ``--folds``,
``--seeds``) override a preset's values.

Overrides are search-space specs (see :mod:`studies.spaces`) keyed by a model name or a group
(``networks``, ``boosters``); a model's own key wins over its group's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from benchmarks.errors import UsageError
from studies.spaces import BOOSTER_MODELS, NETWORK_MODELS, Spec, choice, fixed

GROUPS: dict[str, tuple[str, ...]] = {"networks": NETWORK_MODELS, "boosters": BOOSTER_MODELS}


@dataclass(frozen=True)
class TrialBudget:
    """The tuning budget of one study (one model, fold and seed), equal for every model.

    ``n_trials``: the study's total of finished trials (complete, pruned or crashed), however many processes
    share it. ``tuning_seconds``: the summed durations of those trials; no new trial starts beyond it
    (None: no limit). ``fit_seconds``: time limit of each trial's fit and of the refit (None: no limit).
    """

    n_trials: int
    tuning_seconds: float | None
    fit_seconds: float | None

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.n_trials}")
        for name in ("tuning_seconds", "fit_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"{name} must be a positive number of seconds, got {value}")


@dataclass(frozen=True)
class Preset:
    """A named run configuration; see the module docstring."""

    name: str
    description: str
    budget: TrialBudget
    max_train_rows: int | None  # training rows per fold (validation subsampled in proportion); test never
    overrides: Mapping[str, Mapping[str, Spec]] = field(default_factory=dict)
    folds: tuple[int, ...] | None = None  # None: every fold of the task
    seeds: tuple[int, ...] = (0,)
    tpe_startup_trials: int = 10  # random trials before TPE models the space
    pruner_startup_trials: int = 3  # complete trials before the median pruner may prune

    def overrides_for(self, model: str) -> dict[str, Spec]:
        """The space overrides that apply to ``model`` (group first, then the model's own)."""
        merged: dict[str, Spec] = {}
        for group, members in GROUPS.items():
            if model in members:
                merged.update(self.overrides.get(group, {}))
        merged.update(self.overrides.get(model, {}))
        return merged

    def with_changes(self, **changes: object) -> "Preset":
        """A copy with some fields replaced (command-line overrides)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset(
            name="smoke",
            description="CI check: a few minutes on 2 cores; tiny budgets, numbers not meaningful",
            budget=TrialBudget(n_trials=3, tuning_seconds=60.0, fit_seconds=20.0),
            max_train_rows=2_000,
            overrides={
                # Depth 17 and batch 64 keep a network fit to seconds; trial 0 is the defaults under these caps.
                "networks": {"depth": choice(17), "batch_size": fixed(64), "max_epochs": fixed(5), "patience": fixed(3)},
                "boosters": {"n_estimators": fixed(200), "early_stopping_rounds": fixed(20)},
                # absolute_error trees are orders of magnitude slower in scikit-learn; kept for `paper`.
                "rf": {"n_estimators": fixed(50), "criterion": choice("squared_error")},
            },
            tpe_startup_trials=3,
            pruner_startup_trials=2,
        ),
        Preset(
            name="quick",
            description=(
                "laptop CPU: ~15 min for all six models on formation_energy; 10,000 training rows, full test "
                "set, 90 s of tuning and 25 s per fit for every model"
            ),
            # Measured: 17 min wall for all six models with 100 s / 30 s on a 2-core machine shared with other
            # work (the last trial may overrun the tuning seconds by one fit); hence 90 s / 25 s.
            budget=TrialBudget(n_trials=50, tuning_seconds=90.0, fit_seconds=25.0),
            max_train_rows=10_000,
            overrides={
                "networks": {"max_epochs": fixed(200), "patience": fixed(10)},
                "boosters": {"n_estimators": fixed(1000), "early_stopping_rounds": fixed(50)},
                "rf": {"n_estimators": fixed(100), "criterion": choice("squared_error")},
            },
            tpe_startup_trials=5,
            pruner_startup_trials=3,
        ),
        Preset(
            name="paper",
            description=(
                "GPU: full training data and the published network regime (raw inputs and targets, MAE loss, "
                "patience 200; trial 0 is the paper's Adam, lr 1e-4, batch 32); 30 trials per model; 3 seeds"
            ),
            budget=TrialBudget(n_trials=30, tuning_seconds=12 * 3600.0, fit_seconds=None),
            max_train_rows=None,
            overrides={
                "networks": {
                    "patience": fixed(200),
                    "loss": fixed("mae"),
                    "standardize_inputs": fixed(False),
                    "standardize_target": fixed(False),
                },
            },
            seeds=(0, 1, 2),
            tpe_startup_trials=10,
            pruner_startup_trials=5,
        ),
    ]
}
DEFAULT_PRESET = "quick"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; UsageError listing the presets otherwise."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name]
