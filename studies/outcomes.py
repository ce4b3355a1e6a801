"""What tuning produces, as plain records: one trial's outcome (for the trial recorder) and a study's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.contract import CurvePoint, FitReport


@dataclass
class TrialOutcome:
    """What one trial did, for the tracker: state, parameters, validation curve, no test data."""

    number: int
    state: str  # "COMPLETE", "PRUNED" or "FAIL"
    params: dict[str, Any]  # the full model parameters
    value: float | None  # best validation MAE (COMPLETE), last reported (PRUNED), None (FAIL)
    curve: list[CurvePoint]  # from the fit report; for a pruned trial, the steps seen (train_mae NaN)
    started: float  # unix time
    finished: float
    report: FitReport | None = None
    failure: str | None = None
    retry_of: int | None = None
    is_defaults: bool = False


class TrialRecorder(Protocol):
    """Where trials are recorded besides Optuna (MLflow: :class:`studies.tracking.MlflowTrialRecorder`)."""

    def record(self, outcome: TrialOutcome) -> None: ...

    def interrupted(self, numbers: list[int]) -> None: ...


@dataclass(frozen=True)
class RungSummary:
    """One row rung of a study (:mod:`studies.row_rungs`): its training rows, the trials that finished on it,
    and the Spearman rank correlation between their validation MAE there and on the next rung (NaN for the last
    rung, or fewer than two configurations on both)."""

    rows: int
    configurations: int
    spearman_next: float


@dataclass
class TuningResult:
    """The outcome of a study: the best configuration and what the budget bought."""

    best_params: dict[str, Any]
    best_value: float
    best_trial_number: int
    n_trials: int  # trials that counted (complete, pruned, crashed)
    n_complete: int  # run to their own stopping rule
    tuning_seconds: float  # summed trial durations
    history: list[tuple[int, str, float | None]] = field(default_factory=list)  # (number, state, value)
    best_fit_identity: str | None = None  # set when the best trial's fitted model was saved
    best_model_file: str | None = None
    n_pruned: int = 0  # stopped by the pruner
    n_cut_by_budget: int = 0  # pruned because the tuning seconds ran out (not by the pruner)
    n_failed: int = 0  # crashed by the model (diverged, out of memory, a refused configuration)
    # One entry per interrupted trial that ran again (a kill, a dead worker, Ctrl-C): the trial whose
    # configuration it was (the first of its retry chain), so (0, 0, 7): trial 0 resumed twice, trial 7 once.
    resumed_trials: tuple[int, ...] = ()
    # A study with row rungs (studies.row_rungs): per rung, its rows, configurations and rank agreement with the next.
    rungs: tuple[RungSummary, ...] = ()
