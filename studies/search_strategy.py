"""The sampler and pruners of a study, made so that a study resumed after a kill searches as it would have left
alone (issue 38): TPE seeded by each trial's place in the search, successive halving blind to interrupted trials.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any, cast

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from benchmarks.searchspace import ModelSearch
from studies.coordination import ATTR_RETRY_OF, is_interrupted
from studies.presets import Preset, SuccessiveHalving


def make_pruner(pruning: SuccessiveHalving | None, preset: Preset, search: ModelSearch) -> optuna.pruners.BasePruner:
    """Successive halving with explicit resources, or the median rule after the preset's startup trials."""
    if pruning is not None:
        return _SuccessiveHalvingPruner(
            min_resource=pruning.min_steps,
            reduction_factor=pruning.reduction_factor,
            min_early_stopping_rate=0,
            bootstrap_count=pruning.bootstrap_count,
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=preset.pruner_startup_trials, n_warmup_steps=search.warmup_steps
    )


class _SuccessiveHalvingPruner(optuna.pruners.SuccessiveHalvingPruner):
    """Optuna's successive halving, blind to interrupted trials.

    An interrupted trial keeps the values it recorded at the rungs it reached (Optuna cannot change a finished
    trial), and its retry records them again: counted twice, they changed the comparisons. A resumed trial 0
    made up the bootstrap on its own, so the first configuration after it was compared with trial 0 alone and
    went on past every rung where it did better, until the tuning seconds cut it (issue 38).
    """

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return bool(super().prune(cast(optuna.Study, _WithoutInterrupted(study)), trial))


class _WithoutInterrupted:
    """``study`` as a pruner reads it, less its interrupted trials (each has a retry in its place)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states) if not is_interrupted(t)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class PlaceSeededTPESampler(optuna.samplers.BaseSampler):
    """Optuna's TPE, its random draws for a trial seeded by the study's seed and the trial's place in the search
    (its number less the retries before it) instead of by the process that runs it.

    A TPESampler seeds one random stream when it is built, so every process that resumed a study started that
    stream again: after a kill at trial 7 the rerun drew the configurations of trials 1, 2, ... a second time
    (and two workers that joined one study drew the same ones). Seeded by place, a resumed study draws what it
    would have drawn left alone: a retry draws nothing (its parameters are queued) and shifts no later place.
    """

    def __init__(self, seed: int, *, n_startup_trials: int) -> None:
        self._seed, self._n_startup_trials = seed, n_startup_trials
        self._tpe = self._for_place(0)

    def _for_place(self, place: int) -> optuna.samplers.TPESampler:
        seed = int(np.random.SeedSequence([self._seed, place]).generate_state(1)[0])
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self._n_startup_trials)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        self._tpe = self._for_place(trial.number - sum(ATTR_RETRY_OF in t.user_attrs for t in earlier))
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._tpe.after_trial(study, trial, state, values)
