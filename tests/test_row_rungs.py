"""Multi-fidelity over training rows (studies.row_rungs, studies.presets.RowRungs, studies.tuning.tune_by_rows):
a search on a subsample, the best configurations fitted again on every row, the selection among those only."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, ClassVar

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from benchmarks import searchspace as spaces
from benchmarks.contract import CurvePoint, FitReport
from benchmarks.searchspace import ModelSearch
from studies.outcomes import RungSummary
from studies.presets import PRESETS, RowRungs, TrialBudget, get_preset
from studies.row_rungs import ATTR_PROMOTED_FROM, ATTR_ROW_RUNG, promotion_order, rung_of, spearman_rho
from studies.schema import RunKey
from studies.tuning import TuningJob, finished_trials, open_study, tune_by_rows
from tests.test_studies import _StandIn

optuna.logging.set_verbosity(optuna.logging.WARNING)


class RowsModel(_StandIn):
    """Validation MAE |x - 0.3| + 1 / training rows at its last step, 2 more at the first: a configuration ranks
    the same on every number of rows, and more rows lower every configuration's MAE."""

    name: ClassVar[str] = "rows"
    fitted_rows: ClassVar[list[int]] = []

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"x": 0.9, "max_epochs": 4}

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None) -> FitReport:
        start = time.perf_counter()
        RowsModel.fitted_rows.append(len(y_train))
        self.mean_ = float(np.mean(y_train))
        final = abs(float(self.params["x"]) - 0.3) + 1.0 / len(y_train)
        epochs = int(self.params["max_epochs"])
        curve = []
        for step in range(1, epochs + 1):
            value = final + 2.0 * (epochs - step) / epochs
            curve.append(CurvePoint(step, value, value, 0.0))
            if on_step is not None:
                on_step(step, value)
        return self._report(y_val, curve, start)


ROWS_SEARCH = ModelSearch({"x": spaces.uniform(0.0, 1.0)}, report_every=1)


def _stages(training, rows: list[int], n_trials: int) -> list[TuningJob]:
    base = TuningJob(model_cls=RowsModel, search=ROWS_SEARCH, space=dict(ROWS_SEARCH.space), training=training,
                     budget=TrialBudget(n_trials=n_trials, tuning_seconds=None, fit_seconds=None), seed=0,
                     device="cpu")  # fmt: skip
    stages = []
    for rung, n in enumerate(rows):
        view = training if rung == len(rows) - 1 else training.with_training_rows(n, seed=0)
        stages.append(dataclasses.replace(base, training=view, row_rung=rung))
    return stages


def _study(tmp_path):
    key = RunKey("matbench_steels", "rows", 0, 0, "smoke", None)
    return open_study(f"sqlite:///{tmp_path / 'optuna.db'}", key, search=ROWS_SEARCH, preset=PRESETS["smoke"],
                      config={"data": "steels"})  # fmt: skip


def test_a_study_with_row_rungs_searches_a_subsample_then_selects_among_the_best_refitted_on_every_row(
    tmp_path, steels_training
):
    n_all = len(steels_training.y_train)
    RowsModel.fitted_rows.clear()
    study = _study(tmp_path)
    result = tune_by_rows(study, _stages(steels_training, [60, n_all], n_trials=10), promote=3, progress=False)

    trials = finished_trials(study)
    lower = [t for t in trials if rung_of(t) == 0]
    top = [t for t in trials if rung_of(t) == 1]
    assert len(lower) == 10 and len(top) == 3
    assert RowsModel.fitted_rows == [60] * 10 + [n_all] * 3  # a subsample first, then every row
    # The three promoted are the three best of the lower rung, each refitted from scratch on every row.
    best_three = sorted(lower, key=lambda t: t.value)[:3]
    assert sorted(int(t.user_attrs[ATTR_PROMOTED_FROM]) for t in top) == sorted(t.number for t in best_three)
    for trial in top:
        original = next(t for t in lower if t.number == trial.user_attrs[ATTR_PROMOTED_FROM])
        assert trial.params == original.params
        assert trial.value == pytest.approx(abs(trial.params["x"] - 0.3) + 1 / n_all)
    # Selected among the trials on every row only, though every lower-rung value is higher here by 1/60 - 1/n.
    assert result.best_trial_number == min(top, key=lambda t: t.value).number
    assert result.best_value == min(t.value for t in top)
    assert result.n_trials == 13
    assert result.rungs[0] == RungSummary(rows=60, configurations=10, spearman_next=pytest.approx(1.0))
    assert result.rungs[1].rows == n_all and result.rungs[1].configurations == 3
    assert math.isnan(result.rungs[1].spearman_next)

    # Run again (a resumed study): nothing is fitted or queued twice.
    again = tune_by_rows(_study(tmp_path), _stages(steels_training, [60, n_all], n_trials=10), promote=3,
                         progress=False)  # fmt: skip
    assert RowsModel.fitted_rows == [60] * 10 + [n_all] * 3
    assert again.best_trial_number == result.best_trial_number and len(finished_trials(study)) == 13


def test_a_promotion_is_queued_once_and_a_copy_taken_by_a_worker_on_another_rung_runs_on_its_own(
    tmp_path, steels_training
):
    """Stopped right after queuing the promotions, the rerun fits each once; a promoted trial taken by a stage of
    another rung is queued again, not lost."""
    from studies.row_rungs import promote

    n_all = len(steels_training.y_train)
    stages = _stages(steels_training, [60, n_all], n_trials=6)
    study = _study(tmp_path)
    tune_by_rows(study, stages[:1], promote=3, progress=False)  # rung 0 only
    promote(study, finished_trials(study, 0), 0, 3, n_all)
    promote(study, finished_trials(study, 0), 0, 3, n_all)  # twice: still three queued
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 3 and {rung_of(t) for t in waiting} == {1}
    # A worker still on rung 0 takes one: it is queued again, not run on the subsample, and that worker's rung 0
    # ends (another worker finished it).
    from studies.tuning import tune

    tune(study, dataclasses.replace(stages[0], budget=dataclasses.replace(stages[0].budget, n_trials=7)),
         progress=False)  # fmt: skip
    assert len([t for t in study.get_trials() if t.state == TrialState.WAITING and rung_of(t) == 1]) == 3
    result = tune_by_rows(study, stages, promote=3, progress=False)
    top = [t for t in finished_trials(study) if rung_of(t) == 1]
    assert len(top) == 3 and len({t.user_attrs[ATTR_PROMOTED_FROM] for t in top}) == 3
    assert result.best_trial_number in {t.number for t in top}


def _finished(number: int, state: TrialState, values: dict[int, float], value: float | None = None):
    trial = create_trial(state=state, value=value, params={"x": 0.1 * number},
                         distributions={"x": FloatDistribution(0.0, 1.0)}, intermediate_values=values,
                         user_attrs={ATTR_ROW_RUNG: 0})  # fmt: skip
    trial.number = number
    return trial


def test_promotion_ranks_whole_schedules_first_then_pruned_trials_by_how_far_they_went():
    complete_worse = _finished(0, TrialState.COMPLETE, {3: 0.5, 9: 0.4}, value=0.40)
    complete_better = _finished(1, TrialState.COMPLETE, {3: 0.5, 9: 0.3}, value=0.30)
    pruned_at_9 = _finished(2, TrialState.PRUNED, {3: 0.2, 9: 0.25})
    pruned_at_3_low = _finished(3, TrialState.PRUNED, {3: 0.1})
    pruned_at_3_high = _finished(4, TrialState.PRUNED, {3: 0.6})
    crashed = _finished(5, TrialState.FAIL, {})
    trials = [pruned_at_3_high, crashed, complete_worse, pruned_at_3_low, pruned_at_9, complete_better]
    assert [t.number for t in promotion_order(trials)] == [1, 0, 2, 3, 4]


def test_spearman_of_rungs_is_the_rank_correlation_and_nan_when_it_cannot_be_told():
    assert spearman_rho([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert spearman_rho([0.1, 0.2, 0.3], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert math.isnan(spearman_rho([0.1], [1.0])) and math.isnan(spearman_rho([0.1, 0.1], [1.0, 2.0]))


def test_the_quick_networks_search_a_ninth_of_the_rows_from_90000_rows_and_every_row_below():
    quick = get_preset("quick")
    assert quick.rung_rows("irnet", 239_190) == [26_576, 239_190]
    assert quick.rung_rows("irnet", 120_000) == [13_333, 120_000]
    assert quick.rung_rows("irnet", 60_000) == [60_000] and quick.rung_rows("irnet", 10_000) == [10_000]
    assert quick.rung_rows("xgboost", 239_190) == [239_190]  # the trees search on every row
    assert quick.row_rungs["networks"].promote == 3
    with pytest.raises(ValueError, match="fractions must rise within"):
        RowRungs(fractions=(0.5, 0.2))
    with pytest.raises(ValueError, match="fractions must rise within"):
        RowRungs(fractions=(1.0,))  # a rung as large as the training rows
    with pytest.raises(ValueError, match="search_fits positive"):
        RowRungs(fractions=(0.1,), search_fits=0.0)


def test_a_lower_rung_searches_for_its_search_fits_and_an_explicit_timeout_wins():
    """The search on the ninth of all rows gets 6 expected fits there after trial 0, not the group rule's 1.3; the
    per-fit cap never lies below those seconds; `--timeout` (a budget override) replaces both."""
    quick = get_preset("quick")
    rule = quick.budget_for("irnet", 26_576)
    lower = quick.lower_rung_budget("irnet", 26_576)
    fit = rule.tuning_seconds / 1.3
    assert lower.tuning_seconds == pytest.approx(6 * fit, abs=0.5) and lower.fit_seconds >= lower.tuning_seconds
    assert (lower.n_trials, lower.trial0_apart) == (rule.n_trials, rule.trial0_apart)
    assert quick.lower_rung_budget("xgboost", 26_576) == quick.budget_for("xgboost", 26_576)  # no row rungs
    timed = quick.with_changes(budget_overrides={"tuning_seconds": 500.0})
    assert timed.lower_rung_budget("irnet", 26_576).tuning_seconds == 500.0


def test_a_rung_view_keeps_every_validation_row_and_nests_its_training_rows(steels_training):
    small = steels_training.with_training_rows(50, seed=3)
    larger = steels_training.with_training_rows(120, seed=3)
    assert len(small.y_train) == 50 and np.array_equal(small.X_val, steels_training.X_val)
    assert set(small.train_ids) <= set(larger.train_ids) <= set(steels_training.train_ids)
    with pytest.raises(ValueError, match="training rows asked for"):
        steels_training.with_training_rows(len(steels_training.y_train) + 1, seed=0)


def test_the_leaderboard_says_the_rungs_of_a_study_and_how_well_they_agreed():
    import pandas as pd

    from reports.collect import rung_summary
    from reports.stats import trial_breakdown
    from studies.tracking import rung_metrics

    metrics = rung_metrics((RungSummary(26_576, 24, 0.5), RungSummary(239_190, 3, math.nan)))
    assert "rung1_spearman_next" in metrics and math.isnan(metrics["rung1_spearman_next"])
    text = rung_summary({k: v for k, v in metrics.items() if math.isfinite(v)})  # MLflow keeps finite metrics only
    assert text == "rows 26,576: 24 (Spearman with the next 0.50) -> 239,190: 3"
    runs = pd.DataFrame({"n_trials": [27.0], "n_trials_complete": [4.0], "n_trials_pruned": [23.0],
                         "n_trials_cut_by_budget": [0.0], "rungs": [text]})  # fmt: skip
    assert trial_breakdown(runs) == f"27 (4 / 23 / 0), {text}"
    assert rung_summary({}) == "" and trial_breakdown(runs.assign(rungs=[""])) == "27 (4 / 23 / 0)"
