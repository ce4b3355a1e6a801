"""studies/: search spaces, presets, the model registry, and tuning (budgets, failures, resumption, joining).

Tuning tests use the real matbench_steels fold 0 (``steels_training``) with small stand-in models where the
point is the study's bookkeeping rather than a model (a model that sleeps, crashes, or reports a set curve).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from benchmarks import searchspace as spaces
from benchmarks.contract import CurvePoint, FitReport, Model
from benchmarks.errors import BenchError, UsageError
from benchmarks.searchspace import ModelSearch
from studies import coordination, outcomes, tuning
from studies.coordination import (
    ATTR_DEFAULTS,
    ATTR_FAILURE,
    ATTR_INTERRUPTED,
    ATTR_RETRY_OF,
    ATTR_SURPLUS,
    ATTR_WORKER,
    open_storage,
)
from studies.presets import PRESETS, SuccessiveHalving, TrialBudget, get_preset
from studies.protocol import resolved_space
from studies.registry import BENCHMARK_MODELS, get_model_class, model_info, model_names, parse_model_list
from studies.schema import RunKey
from studies.search_strategy import make_pruner
from studies.spaces import ENABLED_SUFFIX, default_trial_params, suggest
from studies.tuning import ATTR_MODEL_PARAMS, TuningJob, counts_toward_budget, finished_trials, open_study, tune

TESTS_DIR = Path(__file__).resolve().parent
optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------------------- stand-in models ---


class _StandIn(Model):
    """Base of the stand-ins: predicts the training mean; subclasses decide what fit reports."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.mean_, dtype=np.float64)

    def state(self) -> Any:
        return {"mean": self.mean_}

    def load_state(self, state: Any) -> None:
        self.mean_ = state["mean"]

    def _report(self, y_val: np.ndarray, curve: list[CurvePoint], start: float) -> FitReport:
        best = min(curve, key=lambda p: p.val_mae)
        return FitReport(curve, best.step, best.val_mae, time.perf_counter() - start, "cpu", "completed")


class SleepyModel(_StandIn):
    """Takes ``seconds`` per fit; its validation MAE is |x - 0.3|, so TPE has something to minimise."""

    name: ClassVar[str] = "sleepy"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"x": 0.5, "seconds": 0.3}

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None) -> FitReport:
        start = time.perf_counter()
        time.sleep(float(self.params["seconds"]))
        self.mean_ = float(np.mean(y_train))
        value = abs(float(self.params["x"]) - 0.3)
        if on_step is not None:
            on_step(1, value)
        return self._report(y_val, [CurvePoint(1, value, value, time.perf_counter() - start)], start)


SLEEPY_SEARCH = ModelSearch({"x": spaces.uniform(0.0, 1.0), "seconds": spaces.fixed(0.3)})


class CrashingModel(_StandIn):
    """Diverges (FloatingPointError) whenever x > 0.5, the way a network with too high a learning rate does."""

    name: ClassVar[str] = "crashing"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"x": 0.1}

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None) -> FitReport:
        start = time.perf_counter()
        if self.params["x"] > 0.5:
            raise FloatingPointError("training diverged: loss is nan at epoch 3")
        self.mean_ = float(np.mean(y_train))
        value = float(np.mean(np.abs(y_val - self.mean_))) + self.params["x"]
        return self._report(y_val, [CurvePoint(1, value, value, 0.0)], start)


class CurveModel(_StandIn):
    """Reports a 20-step validation curve offset + 10/step: higher offsets are worse at every step."""

    name: ClassVar[str] = "curve"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"offset": 0.0}

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None) -> FitReport:
        start = time.perf_counter()
        self.mean_ = float(np.mean(y_train))
        curve = []
        for step in range(1, 21):
            value = float(self.params["offset"]) + 10.0 / step
            curve.append(CurvePoint(step, value, value, 0.0))
            if on_step is not None:
                on_step(step, value)
        return self._report(y_val, curve, start)


class ListRecorder:
    """A TrialRecorder that keeps outcomes in memory."""

    def __init__(self) -> None:
        self.outcomes: list[outcomes.TrialOutcome] = []
        self.interrupted_numbers: list[int] = []

    def record(self, outcome: outcomes.TrialOutcome) -> None:
        self.outcomes.append(outcome)

    def interrupted(self, numbers: list[int]) -> None:
        self.interrupted_numbers.extend(numbers)


def _study(tmp_path: Path, search: ModelSearch, *, name: str = "t", seed: int = 0, preset: str = "smoke"):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    key = RunKey("matbench_steels", name, 0, seed, preset)
    return open_study(storage, key, search=search, preset=get_preset(preset), config={"data": "steels"})


def _job(model_cls, search, training, budget, **rest):
    return TuningJob(model_cls=model_cls, search=search, space=rest.pop("space", search.space), training=training,
                     budget=budget, seed=0, device="cpu", **rest)  # fmt: skip


def _tune(study, model_cls, search, training, budget, recorder=None):
    return tune(study, _job(model_cls, search, training, budget), recorder=recorder, progress=False)


# ------------------------------------------------------------------------------------------------ spaces ---


def _in_spec(value: Any, spec: dict) -> bool:
    kind = spec["type"]
    if kind == "fixed":
        return value == spec["value"]
    if kind == "categorical":
        return any(value is c or (type(value) is type(c) and value == c) for c in spec["choices"])
    if kind == "optional":
        return value == spec["off"] or _in_spec(value, spec["on"])
    return spec["low"] <= value <= spec["high"] and (kind != "int" or isinstance(value, int))


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("model", model_names())
def test_every_space_gives_parameters_the_model_accepts(model, preset):
    space = resolved_space(model, PRESETS[preset], threads=2)
    cls = get_model_class(model)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(25):
        trial = study.ask()
        params = suggest(trial, space)
        assert set(params) == set(space)
        for name, value in params.items():
            assert _in_spec(value, space[name]), (name, value, space[name])
        built = cls(params, seed=0, device="cpu")  # the model's own checks (unknown keys, bad values)
        assert {k: built.params[k] for k in params} == params
        study.tell(trial, 1.0)


def test_network_spaces_cover_the_required_ranges():
    space = model_info("irnet").search.space
    assert space["lr"] == {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}
    assert space["batch_size"]["choices"] == [32, 64, 128, 256, 512, 1024, 2048]
    assert space["depth"]["choices"] == [17, 24, 48]
    assert space["optimizer"]["choices"] == ["adam", "adamw"]
    assert space["weight_decay"]["type"] == "optional" and space["weight_decay"]["off"] == 0.0
    assert space["weight_decay"]["on"] == {"type": "float", "low": 1e-6, "high": 1e-3, "log": True}
    assert all(model_info(m).search.space == space for m in ("srnet", "plain"))
    # ElemNet is published at depth 17 only: the same space without the depth.
    assert model_info("elemnet").search.space == {k: v for k, v in space.items() if k != "depth"}


def test_thread_count_is_fixed_for_every_model_that_has_one():
    assert resolved_space("rf", PRESETS["quick"], threads=3)["n_jobs"] == spaces.fixed(3)
    assert resolved_space("xgboost", PRESETS["quick"], threads=3)["n_jobs"] == spaces.fixed(3)
    assert resolved_space("lightgbm", PRESETS["quick"], threads=3)["num_threads"] == spaces.fixed(3)


@pytest.mark.parametrize("model", model_names())
def test_defaults_round_trip_through_the_space(model):
    """Trial 0 must reproduce its configuration exactly (under the preset's fixed caps): the model's defaults,
    or for a network under `quick` the converging CPU regime at 10k rows."""
    space = resolved_space(model, PRESETS["quick"], threads=2)
    info = model_info(model)
    defaults = info.model_class.default_params()
    if info.converging_regime is not None:
        defaults = {**defaults, **info.converging_regime(10_000)}
    study = optuna.create_study()
    study.enqueue_trial(default_trial_params(space, defaults))
    params = suggest(study.ask(), space)
    fixed = spaces.fixed_values(space)
    assert params == {name: fixed.get(name, defaults[name]) for name in space}


def test_optional_parameter_switches_off_to_its_off_value():
    space = {"weight_decay": spaces.optional(spaces.log_uniform(1e-6, 1e-3), off=0.0)}
    assert default_trial_params(space, {"weight_decay": 0.0}) == {"weight_decay" + ENABLED_SUFFIX: False}
    assert default_trial_params(space, {"weight_decay": 1e-4}) == {
        "weight_decay" + ENABLED_SUFFIX: True,
        "weight_decay": 1e-4,
    }


def test_a_default_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="outside"):
        default_trial_params({"lr": spaces.log_uniform(1e-5, 1e-2)}, {"lr": 0.5})
    with pytest.raises(ValueError, match="choices"):
        default_trial_params({"depth": spaces.choice(24, 48)}, {"depth": 17})


def test_space_naming_an_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameter 'learning_rate'"):
        spaces.check_space({"learning_rate": spaces.log_uniform(1e-5, 1e-2)}, {"lr": 1e-4}, model="irnet")


# ------------------------------------------------------------------------------------ presets, registry ---


def test_smoke_has_one_small_budget_quick_budgets_by_rule_only_and_presets_set_roles():
    smoke, quick, paper = PRESETS["smoke"], PRESETS["quick"], PRESETS["paper"]
    assert smoke.budget is not None and smoke.budget.n_trials <= 3 and smoke.max_train_rows is not None
    assert quick.max_train_rows is not None and quick.budget is None and quick.rules  # budgets by rule only
    assert paper.max_train_rows is None
    # A preset sets roles; each model's declaration names the parameter that plays it.
    assert smoke.settings_for("irnet")["max_epochs"] == spaces.fixed(5)
    booster_caps = {"n_estimators": spaces.fixed(200), "early_stopping_rounds": spaces.fixed(20)}
    assert smoke.settings_for("xgboost") == booster_caps
    assert smoke.settings_for("lightgbm") == smoke.settings_for("xgboost")
    assert smoke.settings_for("rf")["n_estimators"]["value"] <= 100 and "criterion" in smoke.settings_for("rf")
    assert quick.settings_for("irnet")["amp"] == spaces.fixed(True)
    with pytest.raises(UsageError, match="smoke, quick, paper"):
        get_preset("fast")
    with pytest.raises(UsageError):
        TrialBudget(n_trials=0, tuning_seconds=None, fit_seconds=None)


def test_registry_fails_loudly_with_the_valid_names():
    assert parse_model_list(None) == list(BENCHMARK_MODELS)
    assert parse_model_list("irnet, rf") == ["irnet", "rf"]
    with pytest.raises(UsageError, match=r"unknown model 'irnte'.*did you mean irnet.*valid models: irnet"):
        parse_model_list("irnte,rf")
    with pytest.raises(UsageError, match="more than once"):
        parse_model_list("rf,rf")
    for empty in ("", " ", ",,"):  # an unset shell variable must not mean "all six models"
        with pytest.raises(UsageError, match="--models is empty"):
            parse_model_list(empty)
    assert parse_model_list("all") == list(BENCHMARK_MODELS)


# ------------------------------------------------------------------------------------------------ tuning ---


def test_trial_zero_runs_the_defaults_and_a_resumed_study_does_not_queue_them_again(tmp_path, steels_training):
    search = SLEEPY_SEARCH
    budget = TrialBudget(n_trials=3, tuning_seconds=None, fit_seconds=None)
    study = _study(tmp_path, search)
    result = _tune(study, SleepyModel, search, steels_training, budget)
    trials = study.get_trials()
    assert trials[0].user_attrs[ATTR_DEFAULTS] is True
    assert trials[0].user_attrs[ATTR_MODEL_PARAMS] == SleepyModel.default_params()
    assert result.n_trials == 3
    assert sum(1 for t in trials if t.user_attrs.get(ATTR_DEFAULTS)) == 1

    # Same study, larger total: continues from 3 to 5 without a second defaults trial.
    again = _study(tmp_path, search)
    result = _tune(again, SleepyModel, search, steels_training, TrialBudget(5, None, None))
    trials = again.get_trials()
    assert result.n_trials == 5 and len(trials) == 5
    assert sum(1 for t in trials if t.user_attrs.get(ATTR_DEFAULTS)) == 1
    assert result.best_value == min(t.value for t in trials)


def test_a_crashing_trial_is_failed_and_the_study_goes_on(tmp_path, steels_training):
    search = ModelSearch({"x": spaces.uniform(0.0, 1.0)})
    recorder = ListRecorder()
    study = _study(tmp_path, search, name="crashing")
    result = _tune(study, CrashingModel, search, steels_training, TrialBudget(8, None, None), recorder)
    states = [t.state for t in study.get_trials()]
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert TrialState.FAIL in states and TrialState.COMPLETE in states
    assert all("FloatingPointError" in t.user_attrs[ATTR_FAILURE] for t in failed)
    assert len(states) == 8 and result.n_trials == 8  # crashed trials count toward the budget
    assert result.best_params["x"] <= 0.5
    assert sorted(o.state for o in recorder.outcomes) == sorted(s.name for s in states)
    assert all(o.failure and o.value is None for o in recorder.outcomes if o.state == "FAIL")


def test_every_trial_crashing_is_a_clear_error(tmp_path, steels_training):
    search = ModelSearch({"x": spaces.uniform(0.6, 1.0)})
    study = _study(tmp_path, search, name="crashing-all")
    with pytest.raises(BenchError, match="none of its 3 trials completed; first failure: FloatingPointError"):
        job = _job(CrashingModel, search, steels_training, TrialBudget(3, None, None), space={"x": spaces.fixed(0.9)})
        tune(study, job, progress=False)


def test_unpromising_trials_are_pruned_from_intermediate_scores(tmp_path, steels_training):
    search = ModelSearch({"offset": spaces.uniform(0.0, 5.0)}, report_every=2, warmup_steps=3)
    recorder = ListRecorder()
    study = _study(tmp_path, search, name="curve")  # smoke: the pruner needs 2 complete trials
    # Trial 0 (offset 0, the default) is the best possible curve; later trials are worse at every step.
    _tune(study, CurveModel, search, steels_training, TrialBudget(5, None, None), recorder)
    trials = study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert trials[0].state == TrialState.COMPLETE and pruned
    for t in pruned:
        assert 4 <= max(t.intermediate_values) < 20  # stopped after the 3 warm-up steps, before the end
        assert all(step % 2 == 0 for step in t.intermediate_values)
    pruned_outcomes = [o for o in recorder.outcomes if o.state == "PRUNED"]
    assert pruned_outcomes and all(len(o.curve) < 20 for o in pruned_outcomes)


class ShrinkageModel(CurveModel):
    """A booster stand-in over 200 rounds whose curve depends on learning rate x rounds, as shrinkage makes it:
    1 / (rate x round) + rate, so a lower rate is behind at equal rounds but ahead at equal rate x rounds."""

    name: ClassVar[str] = "shrinkage"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"learning_rate": 0.3}

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None) -> FitReport:
        start, rate = time.perf_counter(), float(self.params["learning_rate"])
        self.mean_ = float(np.mean(y_train))
        curve = []
        for step in range(1, 201):
            value = 1.0 / (rate * step) + rate
            curve.append(CurvePoint(step, value, value, 0.0))
            if on_step is not None:
                on_step(step, value)
        return self._report(y_val, curve, start)


def test_booster_trials_are_compared_at_equal_learning_rate_times_rounds(tmp_path, steels_training):
    """With ``progress_param`` the pruner sees each whole unit of rate x rounds once, as that unit, so a low rate
    is judged where it has gone as far as a high one, and the search can beat a high-rate trial 0."""
    search = ModelSearch({"learning_rate": spaces.log_uniform(0.02, 0.3)}, warmup_steps=2,
                         progress_param="learning_rate")  # fmt: skip
    study = _study(tmp_path, search, name="shrinkage")
    _tune(study, ShrinkageModel, search, steels_training, TrialBudget(10, None, None))
    trials = study.get_trials()
    for t in trials:
        rate = t.user_attrs[ATTR_MODEL_PARAMS]["learning_rate"]
        last = max(t.intermediate_values)
        assert sorted(t.intermediate_values) == list(range(1, last + 1))
        if t.state == TrialState.COMPLETE:
            assert last == int(rate * 200)
        unit = 1  # the value reported at unit u is the curve's at the first round where rate x round reaches u
        assert t.intermediate_values[unit] == pytest.approx(1.0 / (rate * math.ceil(unit / rate - 1e-9)) + rate)
    assert trials[0].user_attrs[ATTR_MODEL_PARAMS]["learning_rate"] == 0.3
    assert study.best_trial.number != 0 and study.best_trial.params["learning_rate"] < 0.3


class LateBloomer(CurveModel):
    """CurveModel whose default (trial 0) has the highest offset of its space: every later trial beats it."""

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"offset": 3.0}


def test_successive_halving_runs_trial_0_to_the_end_and_bootstraps_each_rung(tmp_path, steels_training):
    search = ModelSearch({"offset": spaces.uniform(0.0, 3.0)})
    pruning = SuccessiveHalving(min_steps=2, max_steps=20, reduction_factor=3, bootstrap_count=2)  # rungs 2, 6, 18
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"), direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=make_pruner(pruning, get_preset("quick"), search))  # fmt: skip
    _tune(study, LateBloomer, search, steels_training, TrialBudget(30, None, None))
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    # Trial 0 is worse than every other trial at every step and still runs to its own end.
    assert trials[0].state == TrialState.COMPLETE and max(trials[0].intermediate_values) == 20
    # Trial 1 is better than trial 0 at step 2, but two values at a rung are not enough to promote it ...
    assert trials[1].state == TrialState.PRUNED and max(trials[1].intermediate_values) == 2
    # ... and so is the first trial to reach each later rung; every pruned trial stopped at a rung.
    pruned_at = [max(t.intermediate_values) for t in trials if t.state == TrialState.PRUNED]
    assert set(pruned_at) <= set(pruning.rungs()) and 6 in pruned_at
    assert study.best_trial.number != 0  # a trial that went on past the rungs beat trial 0


def test_one_rule_gives_every_fit_its_time_limit():
    budget = TrialBudget(10, tuning_seconds=100.0, fit_seconds=40.0)
    assert budget.fit_limit(None) == (40.0, False)  # trial 0 and the refit: the per-fit cap
    assert budget.fit_limit(10.0) == (40.0, False)  # 90 s of tuning left: still the cap
    assert budget.fit_limit(80.0) == (20.0, True)  # the tuning seconds left, fewer than the cap: cut by budget
    assert budget.fit_limit(150.0) == (1.0, True)  # overspent by running trials: at least a second
    assert TrialBudget(10, None, 40.0).fit_limit(500.0) == (40.0, False)  # no tuning seconds: the cap
    assert TrialBudget(10, 100.0, None).fit_limit(30.0) == (70.0, True)  # no cap: the seconds left


def test_tuning_seconds_budget_stops_the_study(tmp_path, steels_training):
    study = _study(tmp_path, SLEEPY_SEARCH, name="timed")
    result = _tune(study, SleepyModel, SLEEPY_SEARCH, steels_training, TrialBudget(100, 1.0, None))
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished_trials(study)]
    # A trial starts only while the summed durations plus the mean trial so far stay within 1 s.
    before_last = sum(durations[:-1])
    assert before_last + before_last / max(1, len(durations) - 1) <= 1.0 or len(durations) == 1
    assert sum(durations) + sum(durations) / len(durations) > 1.0
    assert sum(durations) == pytest.approx(result.tuning_seconds)
    assert 2 <= result.n_trials <= 3  # each trial sleeps 0.3 s


class CappedSleepyModel(SleepyModel):
    """A SleepyModel that honours its time limit: it stops there, reporting "time_limit"."""

    name: ClassVar[str] = "capped_sleepy"

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None) -> FitReport:
        start = time.perf_counter()
        seconds = float(self.params["seconds"])
        cut = time_limit_s is not None and time_limit_s < seconds
        time.sleep(time_limit_s if cut else seconds)
        self.mean_ = float(np.mean(y_train))
        value = abs(float(self.params["x"]) - 0.3)
        if on_step is not None:
            on_step(1, value)
        report = self._report(y_val, [CurvePoint(1, value, value, time.perf_counter() - start)], start)
        return dataclasses.replace(report, stopped="time_limit") if cut else report


def test_a_later_trial_gets_only_the_tuning_seconds_left_and_cannot_be_selected_when_cut(tmp_path, steels_training):
    search = ModelSearch({"x": spaces.uniform(0.0, 1.0), "seconds": spaces.choice(0.3, 30.0)})
    study = _study(tmp_path, search, name="capped")
    recorder = ListRecorder()
    # Trial 0: the defaults (x 0.5, 0.3 s). Trial 1: a better x that would need 30 s, more than the 1.5 s budget.
    started = time.perf_counter()
    job = _job(CappedSleepyModel, search, steels_training, TrialBudget(10, 1.5, 60.0),
               extra_trials=[{"x": 0.3, "seconds": 30.0}])  # fmt: skip
    result = tune(study, job, recorder=recorder, progress=False)
    assert time.perf_counter() - started < 10  # not 30 s: trial 1 was cut at the ~1.2 s left
    first, second = study.get_trials()[:2]
    assert first.state == TrialState.COMPLETE and second.state == TrialState.PRUNED
    assert 0.9 <= second.user_attrs["cut_by_budget"] <= 1.5
    assert result.best_trial_number == 0 and result.best_value == pytest.approx(0.2)
    assert [o.state for o in recorder.outcomes[:2]] == ["COMPLETE", "PRUNED"]


class SlowStartModel(CappedSleepyModel):
    """A CappedSleepyModel whose defaults (trial 0) take 1.2 s and every other configuration 0.2 s."""

    name: ClassVar[str] = "slow_start"

    def __init__(self, params=None, *, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(params, seed=seed, device=device)
        self.params["seconds"] = 1.2 if self.params["x"] == 0.5 else 0.2


@pytest.mark.parametrize("apart", [False, True])
def test_a_budget_that_keeps_trial_0_apart_spends_its_seconds_on_the_search_after_it(tmp_path, steels_training, apart):
    study = _study(tmp_path, SLEEPY_SEARCH, name=f"apart{apart}")
    # Trial 0 (the defaults, x = 0.5) takes 1.2 s, more than the whole 1.0 s of tuning; the 60 s cap lets it end.
    budget = TrialBudget(20, 1.0, 60.0, trial0_apart=apart)
    result = _tune(study, SlowStartModel, SLEEPY_SEARCH, steels_training, budget)
    trials = finished_trials(study)
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    assert trials[0].user_attrs["defaults"] and durations[0] >= 1.2
    if not apart:  # trial 0 spent the budget: nothing is searched
        assert result.n_trials == 1
        return
    # The 1.0 s buy the search after trial 0: 0.2 s trials (plus the storage's overhead) start while their
    # seconds stay within it; the last one is cut at what is left.
    assert 2 <= result.n_trials - 1 <= 5 and sum(durations[1:]) <= 1.0 + 0.5
    assert tuning.charged_seconds(trials, budget) == pytest.approx(sum(durations[1:]))
    assert result.tuning_seconds == pytest.approx(sum(durations))  # the study's tuning time still counts trial 0


def test_a_trial_left_running_by_a_dead_process_is_failed_and_requeued(tmp_path, steels_training):
    study = _study(tmp_path, SLEEPY_SEARCH, name="killed")
    budget = TrialBudget(3, None, None)
    _tune(study, SleepyModel, SLEEPY_SEARCH, steels_training, TrialBudget(1, None, None))
    # A trial as a killed process leaves it: RUNNING, owned by a pid that does not exist on this host.
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    study._storage.set_trial_user_attr(orphan._trial_id, ATTR_WORKER, f"{socket.gethostname()}:999999999:1")
    orphan_x = orphan.params["x"]
    recorder = ListRecorder()
    _tune(study, SleepyModel, SLEEPY_SEARCH, steels_training, budget, recorder)
    trials = study.get_trials()
    dead = trials[orphan.number]
    assert dead.state == TrialState.FAIL and dead.user_attrs[ATTR_INTERRUPTED] is True
    assert not counts_toward_budget(dead)
    retry = [t for t in trials if t.user_attrs.get(ATTR_RETRY_OF) == orphan.number]
    assert len(retry) == 1 and retry[0].params["x"] == orphan_x and retry[0].state == TrialState.COMPLETE
    assert len(finished_trials(study)) == 3 and recorder.interrupted_numbers == [orphan.number]

    # Resuming again re-queues nothing more.
    _tune(study, SleepyModel, SLEEPY_SEARCH, steels_training, budget)
    assert len(study.get_trials()) == len(trials)


def _worker_id(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{coordination.process_start_time(pid)}"


def test_a_trial_killed_before_it_recorded_its_worker_is_recovered_when_no_other_worker_lives(
    tmp_path, steels_training
):
    study = _study(tmp_path, SLEEPY_SEARCH, name="ownerless")
    study.set_user_attr(coordination.STUDY_ATTR_WORKER_PREFIX + f"{socket.gethostname()}:999999999:1", 0.0)  # killed
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})  # RUNNING, owner never recorded
    _tune(study, SleepyModel, SLEEPY_SEARCH, steels_training, TrialBudget(2, None, None))
    dead = study.get_trials()[orphan.number]
    assert dead.state == TrialState.FAIL and dead.user_attrs[ATTR_INTERRUPTED] is True
    assert len(finished_trials(study)) == 2


def test_an_ownerless_running_trial_of_a_live_worker_is_left_alone(tmp_path, steels_training):
    study = _study(tmp_path, SLEEPY_SEARCH, name="joined")
    study.set_user_attr(coordination.STUDY_ATTR_WORKER_PREFIX + _worker_id(os.getppid()), 0.0)  # a live process
    running = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})  # its trial, just started
    result = _tune(study, SleepyModel, SLEEPY_SEARCH, steels_training, TrialBudget(2, None, None))
    assert study.get_trials()[running.number].state == TrialState.RUNNING  # not taken for dead
    assert result.n_trials == 1  # its trial completes the budget of 2; this process ran only one


def test_a_worker_with_no_complete_trial_waits_for_the_trial_another_worker_runs(
    tmp_path, steels_training, monkeypatch
):
    """Two workers on one study: the other's trial 0 is still running when this one's budget is spent (here:
    a budget of one trial, taken by it). This worker waits for it instead of failing the study."""
    monkeypatch.setattr(tuning, "TRIAL_POLL_S", 0.1)
    study = _study(tmp_path, SLEEPY_SEARCH, name="waits")
    other = _worker_id(os.getppid())  # a live process
    study.set_user_attr(coordination.STUDY_ATTR_WORKER_PREFIX + other, 0.0)
    theirs = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    theirs.set_user_attr(coordination.ATTR_WORKER, other)
    theirs.set_user_attr(ATTR_MODEL_PARAMS, {"x": 0.3, "seconds": 0.3})
    finisher = threading.Timer(1.0, lambda: study.tell(theirs, 0.0))
    finisher.start()
    started = time.perf_counter()
    result = _tune(study, SleepyModel, SLEEPY_SEARCH, steels_training, TrialBudget(1, None, None))
    finisher.join()
    assert time.perf_counter() - started >= 0.9  # it waited for the other worker's trial
    assert result.best_trial_number == theirs.number and result.n_trials == 1 and result.best_value == 0.0


def test_study_config_mismatch_is_refused(tmp_path):
    _study(tmp_path, SLEEPY_SEARCH, name="cfg")
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    with pytest.raises(UsageError, match="other settings"):
        open_study(storage, RunKey("matbench_steels", "cfg", 0, 0, "smoke"), search=SLEEPY_SEARCH,
                   preset=get_preset("smoke"), config={"data": "other"})  # fmt: skip


def test_unreachable_storage_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot open Optuna storage"):
        open_storage(f"sqlite:///{tmp_path / 'missing-folder' / 'optuna.db'}")


WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests_dir!r})
    from benchmarks.loader import load_task, task_fold
    from studies.presets import TrialBudget, get_preset
    from studies.schema import RunKey
    from studies.coordination import open_storage
    from studies.tuning import TuningJob, open_study, tune
    from test_studies import SLEEPY_SEARCH, SleepyModel

    training, _ = task_fold(load_task("matbench_steels"), 0, progress=False)
    storage = open_storage({url!r})
    study = open_study(storage, RunKey("matbench_steels", "sleepy", 0, 0, "smoke"), search=SLEEPY_SEARCH,
                       preset=get_preset("smoke"), config={{"data": "steels"}})
    # Start barrier: both workers are ready before either runs a trial, so that they really overlap.
    barrier = Path({barrier!r})
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.05)
    tune(study, TuningJob(model_cls=SleepyModel, search=SLEEPY_SEARCH, space=SLEEPY_SEARCH.space, training=training,
                          budget=TrialBudget({n}, None, None), seed=0, device="cpu"), progress=False)
    """
)


CLAIM_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import optuna
    from studies.coordination import open_storage

    study = optuna.load_study(study_name="queue", storage=open_storage({url!r}))
    go = Path({go!r})
    while not go.exists():
        time.sleep(0.01)
    claimed = []
    while (trial_id := study._pop_waiting_trial_id()) is not None:  # what study.ask does for a queued trial
        claimed.append(trial_id)
    print(json.dumps(claimed))
    """
)


def test_each_queued_trial_is_claimed_by_one_process_on_sqlite(tmp_path):
    # sqlite ignores SELECT ... FOR UPDATE: without a write lock at BEGIN, three processes popping one queue
    # together claimed 66-77 trials of 60 (so two workers ran the same trial, and the second failed to tell it).
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="queue", storage=coordination.open_storage(url))
    for x in range(60):
        study.enqueue_trial({"x": float(x)})
    go = tmp_path / "go"
    script = tmp_path / "claim.py"
    script.write_text(CLAIM_SCRIPT.format(url=url, go=str(go)))
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR.parent)}
    workers = [subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(3)]  # fmt: skip
    time.sleep(3)  # let all three import and open the storage, so that they really claim at once
    go.touch()
    claimed = [trial_id for w in workers for trial_id in json.loads(w.communicate(timeout=120)[0])]
    assert all(w.returncode == 0 for w in workers)
    assert sorted(claimed) == sorted(t._trial_id for t in study.get_trials())


def test_two_processes_on_one_storage_stop_at_exactly_n_trials(tmp_path, steels_training):
    n = 10
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    script = tmp_path / "worker.py"
    barrier = tmp_path / "ready"
    barrier.mkdir()
    script.write_text(WORKER_SCRIPT.format(tests_dir=str(TESTS_DIR), url=url, n=n, barrier=str(barrier)))
    # Create the study first so the two workers only join it (creating one storage twice at once is the
    # command line's job: it takes a lock).
    _study(tmp_path, SLEEPY_SEARCH, name="sleepy")
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR.parent)}
    workers = [
        subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    errors = [w.communicate(timeout=180)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    study = optuna.load_study(study_name="matbench_steels/sleepy/fold0/seed0/smoke", storage=url)
    counted = finished_trials(study)
    assert len(counted) == n
    assert len({t.user_attrs[ATTR_WORKER] for t in counted}) == 2  # both processes did trials
    assert sum(1 for t in counted if t.user_attrs.get(ATTR_DEFAULTS)) == 1  # a racing second copy never runs
    extra = [t for t in study.get_trials() if not counts_toward_budget(t)]
    assert all(t.user_attrs.get(ATTR_SURPLUS) for t in extra)  # only racing surplus trials, never run
