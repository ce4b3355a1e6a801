"""Presets, declared as data: how much tuning a run does and on how much data.

A preset fixes the training-row cap, step caps and patience settings, the default folds and seeds, and the
study budget (trials, tuning seconds, per-fit time limit). The budget is either one fixed
:class:`TrialBudget` for every model (``smoke``) or derived by :func:`derive_budget` from the number of
training rows and the model's group (``ModelInfo.group``: networks, boosters, forest, reference) through the
preset's :class:`GroupBudget` rules (``quick``): a fit's expected seconds (``ModelInfo.fit_cost``) grow with the
rows, the tuning seconds are a number of such fits (never below a floor), and the per-fit time cap is a generous
multiple of the expected fit, so that every model can reach its own stopping rule (networks: early stopping) and
the cap is only a safety net. Command-line flags (``--trials``, ``--timeout``, ``--fit-timeout``,
``--max-train-rows``, ``--folds``, ``--seeds``) override a preset's values for every model.

What a preset sets or narrows for a model group (step caps, patience, batch sizes, ...) is keyed by role
(:data:`benchmarks.contract.ROLES`), never by a model's parameter names: each model's ``ModelInfo.roles`` says
which of its parameters plays the role. A model that lacks a role its group's settings name, or a group a
rule-based preset has no rule for, is refused with one line before any work (UsageError, exit 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.contract import REFERENCE_THREADS, FitCost, ModelInfo
from benchmarks.errors import UsageError
from benchmarks.searchspace import Spec, choice, fixed, fixed_values
from studies.registry import model_info


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
    # Multi-fidelity studies (a SuccessiveHalving pruner): the steps a new trial is expected to run, its first
    # rung, from which the cost of the next trial is predicted; None: the next trial is expected to last as long
    # as the mean trial so far.
    expected_trial_steps: int | None = None
    # True: trial 0 (the queued regime, run to its own stopping rule under ``fit_seconds``) is not charged to
    # ``tuning_seconds``, which then buy the search after it, however long trial 0 took.
    trial0_apart: bool = False

    def fit_limit(self, charged_seconds: float | None) -> tuple[float | None, bool]:
        """The one rule for how long a fit may run under this budget, and whether the limit is the tuning
        seconds left (a fit cut there was cut by the budget, not by the per-fit safety cap).

        ``charged_seconds`` None: a fit that must reach its own stopping rule (a study's trial 0, the refit)
        gets the per-fit cap. Otherwise (any other trial, also one a second worker starts while trial 0 runs)
        the tuning seconds left after ``charged_seconds`` (at least 1 s) where fewer than the cap, so a slow
        configuration cannot overrun the budget by a whole fit."""
        cap = self.fit_seconds
        if self.tuning_seconds is None or charged_seconds is None:
            return cap, False
        left = max(1.0, self.tuning_seconds - charged_seconds)
        return (left, True) if cap is None or left < cap else (cap, False)

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.n_trials}")
        for name in ("tuning_seconds", "fit_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"{name} must be a positive number of seconds, got {value}")


def expected_fit_seconds(model: str, n_train: int, device: str = "cpu", *, threads: int = REFERENCE_THREADS,
                         bf16: bool = False, epochs: int | None = None) -> float:  # fmt: skip
    """Expected seconds of one fit of ``model`` on ``n_train`` rows (its declared ``fit_cost``), ``epochs`` long
    where a budgeted schedule sets them."""
    return model_info(model).fit_cost.expected_seconds(n_train, device, threads=threads, bf16=bf16, epochs=epochs)


@dataclass(frozen=True)
class EpochBudget:
    """The epochs a budgeted learning-rate schedule spends (``irnet.training``, ``schedule="cosine"``), by the
    training rows ``n``: ``round(ref_epochs * (ref_rows / n) ** exponent)`` within ``[min_epochs, max_epochs]``.

    Fewer rows give fewer optimiser steps per epoch, so a smaller set needs more epochs for the same schedule
    to converge; the anchors are measured (docs/measurements.md "Budgeted schedules, measured"). The budget is the
    fits' step cap and the last rung of successive halving: every configuration of a study is compared at the same
    fractions of the same schedule."""

    ref_rows: int
    ref_epochs: int
    exponent: float
    min_epochs: int
    max_epochs: int

    def __post_init__(self) -> None:
        if not (1 <= self.min_epochs <= self.ref_epochs <= self.max_epochs and self.ref_rows >= 1
                and self.exponent >= 0):  # fmt: skip
            raise ValueError(f"epoch budget: need 1 <= min_epochs <= ref_epochs <= max_epochs, ref_rows >= 1 and "
                             f"exponent >= 0; got {self}")  # fmt: skip

    def epochs(self, n_train: int) -> int:
        """The epochs of a fit on ``n_train`` rows."""
        scaled = self.ref_epochs * (self.ref_rows / max(1, int(n_train))) ** self.exponent
        return int(min(self.max_epochs, max(self.min_epochs, round(scaled))))


@dataclass(frozen=True)
class RowRungs:
    """Multi-fidelity over training rows as well as epochs: a rung scheme of this suite over Optuna trials.

    A study on ``n`` training rows first searches on a nested subsample of ``n * fraction`` rows per lower rung
    (the group's usual search there: trial 0, then TPE with successive halving over the epochs, under the
    group's budget for that many rows); the ``promote`` best configurations of a rung (ranked by the furthest
    epoch rung they reached, then their validation MAE there) are fitted again, from scratch, on the next
    rung's rows, up to every row; the study selects among the configurations fitted on every row. Every rung
    scores on the same validation rows. Successive halving over the rows (Jamieson & Talwalkar 2016; Li et al.,
    "Hyperband", JMLR 2018, which names training-set size as a resource) rather than Optuna's pruners: an
    Optuna trial cannot change its rows mid-fit, and a fit on more rows is a new fit, not more epochs of one.

    A rung with fewer than ``min_rows`` rows is left out; with none left, the study is a plain one.

    ``search_fits``: the tuning seconds of a lower rung's search after trial 0, in expected fits on that rung's
    rows (None: the group's rule). Above the rule's because the search on a lower rung is the whole study's
    search: the rule's 1.3 fits buy 3-9 configurations, a study on every row must compare at least 16."""

    fractions: tuple[float, ...]  # of the rows, ascending, each below 1: the lower rungs
    promote: int = 3  # configurations each rung passes to the next (at least this many reach every row)
    min_rows: int = 10_000
    search_fits: float | None = None

    def __post_init__(self) -> None:
        if not (all(0 < f < 1 for f in self.fractions) and list(self.fractions) == sorted(set(self.fractions))
                and self.promote >= 1 and self.min_rows >= 1
                and (self.search_fits is None or self.search_fits > 0)):  # fmt: skip
            raise ValueError(f"row rungs: fractions must rise within (0, 1), promote and min_rows be >= 1 and "
                             f"search_fits positive; got {self}")  # fmt: skip

    def rows(self, n_train: int) -> list[int]:
        """The training rows of each rung for a study on ``n_train`` rows, ascending; the last is ``n_train``."""
        lower = [int(n_train * f) for f in self.fractions if int(n_train * f) >= self.min_rows]
        return [*dict.fromkeys(lower), n_train]


@dataclass(frozen=True)
class GroupBudget:
    """How a preset budgets one model group; turned into a :class:`TrialBudget` by :func:`derive_budget`.

    ``n_trials``: cap on trials. ``tuning_fits``: tuning seconds as a number of expected fits, never below
    ``min_tuning_seconds``. ``fit_margin``: the per-fit cap is this multiple of the expected fit, never below
    the tuning seconds (None: no cap); a generous margin because the machine may be loaded and other
    configurations are slower. ``trial0_apart``: the tuning seconds are the search after trial 0, which runs
    to its stopping rule and is not charged to them (:attr:`TrialBudget.trial0_apart`).
    """

    n_trials: int
    tuning_fits: float | None  # None: no limit in seconds
    min_tuning_seconds: float = 0.0
    fit_margin: float | None = 4.0
    trial0_apart: bool = False


def derive_budget(rule: GroupBudget, cost: FitCost, n_train: int, device: str = "cpu", *,
                  threads: int = REFERENCE_THREADS, bf16: bool = False,
                  epochs: int | None = None) -> TrialBudget:  # fmt: skip
    """The budget of one study of a model with fit ``cost`` on ``n_train`` training rows (the rule of
    docs/guide/budgets.md "Budgets");
    ``epochs``: the fits' epochs where a budgeted schedule fixes them."""
    fit = cost.expected_seconds(n_train, device, threads=threads, bf16=bf16, epochs=epochs)
    tuning = None if rule.tuning_fits is None else round(max(rule.min_tuning_seconds, rule.tuning_fits * fit), 1)
    # Never below the tuning seconds: a fit that the tuning budget could hold is not cut by the cap (a booster
    # on one thread took more than 20 expected fits, and its refit would have been cut short).
    cap = None if rule.fit_margin is None else round(max(rule.fit_margin * fit, tuning or 0.0), 1)
    return TrialBudget(n_trials=rule.n_trials, tuning_seconds=tuning, fit_seconds=cap, trial0_apart=rule.trial0_apart)


@dataclass(frozen=True)
class SuccessiveHalving:
    """Multi-fidelity pruning over a model's reported steps: asynchronous successive halving (Li et al., MLSys
    2020; ``optuna.pruners.SuccessiveHalvingPruner``). A trial goes on past ``min_steps * reduction_factor**k``
    steps (a rung) only if its validation MAE there is among the best ``1 / reduction_factor`` of the trials
    that reached that rung, so a study tries many configurations for the price of a few whole fits.

    Both resources are set explicitly, in steps (epochs): Optuna's ``min_resource="auto"`` infers the minimum
    from the first finished trial, which early stopping makes unreliable (optuna PR #1252). ``max_steps`` is
    the group's step cap (a preset fixes it; :meth:`check` holds the two equal), so the last rung lies below it.

    ``bootstrap_count`` (ASHA's, Optuna's ``bootstrap_count``): a trial is promoted past a rung only once more
    than this many trials have reached it. Without it the first trial after trial 0 competes with trial 0
    alone: at 10,000 formation_energy rows a small-batch configuration beat the batch-1024 trial 0 at 4 and
    12 epochs (many more steps per epoch), ran on and took the rest of the budget (2 configurations tried).
    """

    min_steps: int
    max_steps: int
    reduction_factor: int = 3
    bootstrap_count: int = 2

    def rungs(self) -> list[int]:
        """The steps at which trials are compared."""
        rungs, step = [], self.min_steps
        while step < self.max_steps:
            rungs.append(step)
            step *= self.reduction_factor
        return rungs

    def check(self, group: str, settings: Mapping[str, Spec], epoch_budget: EpochBudget | None = None) -> None:
        """Raise ValueError when the resources are not positive or ``max_steps`` is not the step cap the preset
        fixes for the group (its ``step_cap`` setting); under an epoch budget, which sets ``max_steps`` by rows,
        when the first rung would not lie below its fewest epochs."""
        if not (1 <= self.min_steps < self.max_steps and self.reduction_factor >= 2 and self.bootstrap_count >= 0):
            raise ValueError(f"{group}: successive halving needs 1 <= min_steps < max_steps and a reduction "
                             f"factor >= 2 and bootstrap_count >= 0, got {self.min_steps}, {self.max_steps}, "
                             f"{self.reduction_factor}, {self.bootstrap_count}")  # fmt: skip
        if epoch_budget is not None:
            if self.min_steps >= epoch_budget.min_epochs:
                raise ValueError(f"{group}: successive halving's first rung ({self.min_steps} steps) must lie below "
                                 f"the epoch budget's fewest epochs ({epoch_budget.min_epochs})")  # fmt: skip
            return
        cap = fixed_values(settings).get("step_cap")
        if cap != self.max_steps:
            raise ValueError(f"{group}: successive halving's max_steps {self.max_steps} is not the step cap the "
                             f"preset fixes for the group ({cap})")  # fmt: skip


@dataclass(frozen=True)
class Preset:
    """A named run configuration; see the module docstring."""

    name: str
    description: str
    # The budget of every model, or None for a preset that budgets by ``rules`` (model group -> rule) and
    # refuses a group it has no rule for.
    budget: TrialBudget | None
    max_train_rows: int | None  # training rows per fold (validation subsampled in proportion); test never
    rules: Mapping[str, GroupBudget] = field(default_factory=dict)
    # Command line, every model: TrialBudget field -> value.
    budget_overrides: Mapping[str, Any] = field(default_factory=dict)
    # Model group -> role -> spec: what the preset fixes or narrows for every model of the group.
    settings: Mapping[str, Mapping[str, Spec]] = field(default_factory=dict)
    folds: tuple[int, ...] | None = None  # None: every fold of the task
    seeds: tuple[int, ...] = (0,)
    tpe_startup_trials: int = 10  # random trials before TPE models the space
    # Trial 0 of a study: "defaults" (the model's defaults; for networks the paper's regime) or "converging"
    # (the model's declared ModelInfo.converging_regime, where it has one: converges in minutes on a CPU; the
    # defaults are then queued as trial 1 where the space holds them and the budget has room for them).
    trial0: str = "defaults"
    pruner_startup_trials: int = 3  # complete trials before the median pruner may prune
    # Model group -> multi-fidelity pruning; groups without an entry get the median pruner.
    pruning: Mapping[str, SuccessiveHalving] = field(default_factory=dict)
    # Model group -> the step cap of the refit of the selected configuration, above the one its trials ran under
    # (the group's ``step_cap`` setting, else the model's default): the cheaper cap bounds the search, the
    # scored refit goes on to its own stopping rule (:meth:`refit_configuration`).
    refit_step_caps: Mapping[str, int] = field(default_factory=dict)
    # Model group -> the epochs of its budgeted schedule by training rows: the step cap of every fit of the
    # group (trials and refit) and the last rung of its successive halving (:meth:`step_cap_for`).
    epoch_budgets: Mapping[str, EpochBudget] = field(default_factory=dict)
    # Model group -> multi-fidelity over training rows (:class:`RowRungs`); groups without an entry search on
    # every row from the start.
    row_rungs: Mapping[str, RowRungs] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.budget is None) == (not self.rules):
            raise ValueError(f"preset {self.name}: give either one budget for every model or rules by group")
        for group, pruning in self.pruning.items():
            pruning.check(group, self.settings.get(group, {}), self.epoch_budgets.get(group))

    def step_cap_for(self, model: str, n_train: int | None) -> int | None:
        """The step cap of ``model``'s fits on ``n_train`` rows where the group's epoch budget sets it by rows;
        None where the settings fix it (or leave the model's default)."""
        if not self.epoch_budgets or not n_train:
            return None
        budget = self.epoch_budgets.get(model_info(model).group)
        return None if budget is None else budget.epochs(n_train)

    def refit_configuration(self, model: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
        """The selected configuration ``params`` (a trial's full parameters) as its refit runs it, and how many
        times the trials' step cap the refit's is (1.0 where unchanged): the group's ``refit_step_caps`` entry
        replaces a smaller step cap, so a fit the tuning cap stopped goes on to its early stopping. The refit's
        time limit grows by the same factor (:func:`studies.protocol.refit_and_score`)."""
        info = model_info(model)
        params = {**info.model_class.default_params(), **params}
        cap, param = self.refit_step_caps.get(info.group), info.param("step_cap")
        if cap is None or param is None or int(params[param]) >= cap:
            return params, 1.0
        factor = cap / int(params[param])
        params[param] = cap
        return params, factor

    def rung_rows(self, model: str, n_train: int | None) -> list[int]:
        """The training rows of each rung of ``model``'s study on ``n_train`` rows (:class:`RowRungs`); one
        rung, every row, where the group has no row rungs."""
        rungs = self.row_rungs.get(model_info(model).group) if self.row_rungs and n_train else None
        return [] if not n_train else (rungs.rows(n_train) if rungs is not None else [n_train])

    def pruning_for(self, model: str, n_train: int | None = None) -> SuccessiveHalving | None:
        """The multi-fidelity pruning of ``model``'s group, or None (median pruning); where an epoch budget sets
        the step cap by rows, its last resource is that budget on ``n_train`` rows."""
        pruning = self.pruning.get(model_info(model).group) if self.pruning else None
        cap = None if pruning is None else self.step_cap_for(model, n_train)
        return pruning if pruning is None or cap is None else dataclasses.replace(pruning, max_steps=cap)

    def settings_for(self, model: str | ModelInfo) -> dict[str, Spec]:
        """What this preset fixes or narrows for ``model``, keyed by the model's own parameter names; UsageError
        naming the roles the model lacks."""
        info = model if isinstance(model, ModelInfo) else model_info(model)
        settings = self.settings.get(info.group, {})
        missing = [role for role in settings if info.param(role) is None]
        if missing:
            raise UsageError(f"preset {self.name} sets {', '.join(missing)} for the {info.group} group, but model "
                             f"{info.name} declares no parameter for it; map the role(s) in roles= of its "
                             f"ModelInfo ({info.model_class.__module__})")  # fmt: skip
        return {info.roles[role]: spec for role, spec in settings.items()}

    def rule_for(self, model: str) -> GroupBudget | None:
        """The budget rule of ``model``'s group; None under a preset with one budget for every model; UsageError
        when a rule-based preset has none for the group (no silent fallback budget)."""
        if self.budget is not None:
            return None
        info = model_info(model)
        if info.group not in self.rules:
            raise UsageError(f"preset {self.name} has no budget rule for the {info.group} group of model {info.name} "
                             f"(rules: {', '.join(self.rules)}); add a GroupBudget for {info.group!r} to the preset's "
                             "rules in studies/presets.py, or set the model's group to one of those")  # fmt: skip
        return self.rules[info.group]

    def check_model(self, model: str) -> None:
        """UsageError (one line) when this preset cannot run ``model``: a role or a budget rule is missing."""
        self.settings_for(model)
        self.rule_for(model)

    def trains_in_bf16(self, model: str, device: str = "cpu") -> bool:
        """Whether ``model``'s fits run in bf16 under this preset on ``device``: the preset fixes its
        ``mixed_precision`` role on and the device runs bf16 natively (:func:`irnet.training.native_cpu_bf16`)."""
        info = model_info(model)
        param = info.param("mixed_precision")
        if param is None:
            return False
        if not fixed_values(self.settings_for(info)).get(param, info.model_class.default_params().get(param)):
            return False
        from irnet.training import native_cpu_bf16

        return device.startswith("cuda") or native_cpu_bf16() is not None

    def budget_for(
        self, model: str, n_train: int, device: str = "cpu", threads: int = REFERENCE_THREADS
    ) -> TrialBudget:
        """The study budget of ``model`` on ``n_train`` training rows with ``threads`` CPU threads: the family
        rule (or the fixed budget), then the command-line overrides."""
        rule = self.rule_for(model)
        if rule is None:
            assert self.budget is not None  # a preset has one budget or rules (__post_init__)
            budget = self.budget
        else:
            cost, bf16 = model_info(model).fit_cost, self.trains_in_bf16(model, device)
            budget = derive_budget(rule, cost, n_train, device, threads=threads, bf16=bf16,
                                   epochs=self.step_cap_for(model, n_train))  # fmt: skip
        pruning = self.pruning_for(model, n_train)
        if pruning is not None:
            budget = dataclasses.replace(budget, expected_trial_steps=pruning.min_steps)
        return dataclasses.replace(budget, **self.budget_overrides) if self.budget_overrides else budget

    def expected_fit(self, model: str, n_train: int, device: str = "cpu", threads: int = REFERENCE_THREADS) -> float:
        """Expected seconds of one fit of ``model`` on ``n_train`` rows under this preset: its precision on
        ``device`` and, where an epoch budget sets them, its epochs."""
        return expected_fit_seconds(model, n_train, device, threads=threads, bf16=self.trains_in_bf16(model, device),
                                    epochs=self.step_cap_for(model, n_train))  # fmt: skip

    def lower_rung_budget(
        self, model: str, n_rows: int, device: str = "cpu", threads: int = REFERENCE_THREADS
    ) -> TrialBudget:
        """The budget of the search on a lower row rung of ``n_rows`` rows: the group's budget for that many rows,
        its tuning seconds ``search_fits`` expected fits there where the rungs set them (:class:`RowRungs`)."""
        budget = self.budget_for(model, n_rows, device, threads)
        rungs = self.row_rungs.get(model_info(model).group)
        if rungs is None or rungs.search_fits is None or "tuning_seconds" in self.budget_overrides:
            return budget
        tuning = round(rungs.search_fits * self.expected_fit(model, n_rows, device, threads), 1)
        cap = budget.fit_seconds
        if cap is not None and "fit_seconds" not in self.budget_overrides:
            cap = max(cap, tuning)
        return dataclasses.replace(budget, tuning_seconds=tuning, fit_seconds=cap)

    def with_changes(self, **changes: Any) -> Preset:
        """A copy with some fields replaced (command-line overrides)."""
        return dataclasses.replace(self, **changes)


# The `quick` networks' cosine schedule spends 40 epochs on all 239,190 formation_energy rows and 80 on 10,000
# (exponent ln 2 / ln 23.9 = 0.218): measured, IRNet-17 in the `quick` trial-0 regime reached test MAE 0.0449 in
# 40 epochs on all rows (13 min on 2 cores) and 0.1274 in 80 epochs on 10,000 rows against 0.1340 in 40; longer
# at 10,000 rows would not keep the default run within 15 minutes (docs/guide/budgets.md "Budgeted schedules").
NETWORK_EPOCH_BUDGET = EpochBudget(ref_rows=239_190, ref_epochs=40, exponent=0.218, min_epochs=20, max_epochs=300)
NETWORK_PRUNING = SuccessiveHalving(min_steps=3, max_steps=NETWORK_EPOCH_BUDGET.max_epochs, reduction_factor=3)

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset(
            name="smoke",
            description="CI check: a few minutes on 2 cores; tiny budgets, numbers not meaningful",
            budget=TrialBudget(n_trials=3, tuning_seconds=60.0, fit_seconds=20.0),
            max_train_rows=2_000,
            settings={
                # Batch 64 and 5 epochs keep a network fit to seconds; trial 0 is the defaults under these caps.
                "networks": {"batch_size": fixed(64), "step_cap": fixed(5), "patience": fixed(3)},
                "boosters": {"step_cap": fixed(200), "patience": fixed(20)},
                # absolute_error trees are orders of magnitude slower in scikit-learn; kept for `paper`.
                "forest": {"step_cap": fixed(50), "split_criterion": choice("squared_error")},
            },
            tpe_startup_trials=3,
            pruner_startup_trials=2,
        ),
        Preset(
            name="quick",
            description=(
                "laptop CPU: ~15 min for all six models on formation_energy; 10,000 training rows, full test "
                "set; budgets from the rows and the model family (one converged network fit at 10k rows)"
            ),
            budget=None,
            max_train_rows=10_000,
            rules={
                # Trial 0 runs to its stopping rule (under the cap, 4 expected fits) and is not charged to the
                # tuning seconds: 1.3 expected fits (at least 90 s) buy the search after it, which successive
                # halving spends on many configurations of 3 epochs each. Charging trial 0 too (2.3 fits in all,
                # until 2026-12-05) left the search whatever trial 0 did not use: at 10,000 rows, idle, trial 0
                # took 65-112 s of 186 s and IRNet tried 5-9 configurations. On average the three networks'
                # studies still fit the 15 minutes of the default run (docs/measurements.md "The default quick run,
                # measured").
                "networks": GroupBudget(
                    n_trials=50, tuning_fits=1.3, min_tuning_seconds=90.0, fit_margin=4.0, trial0_apart=True
                ),
                # 50 booster trials (75 s at 10k rows), each fit capped far above its early stopping.
                "boosters": GroupBudget(n_trials=50, tuning_fits=50.0, min_tuning_seconds=60.0, fit_margin=20.0),
                "forest": GroupBudget(n_trials=50, tuning_fits=5.0, min_tuning_seconds=60.0, fit_margin=4.0),
                "reference": GroupBudget(n_trials=2, tuning_fits=None, fit_margin=None),
            },
            settings={
                # CPU-sane regimes only: large batches; the paper's batch 32 needs minutes per epoch at 10k+.
                # The rate is cut to 0.3x after 4 epochs without improvement, early stopping after 8: at 10k
                # formation_energy rows the quick trial 0 reaches test MAE 0.145 instead of 0.157 at constant
                # rate, in 61 epochs instead of 49 (docs/measurements.md "Budgeted schedules, measured").
                # bf16 autocast where the CPU has it natively and it measures faster than float32 (float32
                # elsewhere; irnet.training.native_cpu_bf16): 2.2x float32 at batch 1024 on AMX, test MAE within the
                # seed spread (docs/measurements.md "bf16", `python -m benchmarks.speed
                # --accuracy-check`).
                "networks": {
                    "batch_size": choice(128, 256, 512, 1024, 2048),
                    # A budgeted schedule: 5% linear warm-up, cosine decay to zero over the epoch budget below,
                    # which every fit spends (patience above any budget; the best validation epoch is kept).
                    # Until 2026-12-08 the plateau rule (lr x0.3 after 4 epochs without improvement, early
                    # stopping after 8, at most 300 epochs), under which a configuration that starts slower looks
                    # worse at every rung whatever it would reach (docs/guide/budgets.md "Budgeted schedules").
                    "lr_schedule": fixed("cosine"),
                    "warmup": fixed(0.05),
                    "patience": fixed(NETWORK_EPOCH_BUDGET.max_epochs),
                    "mixed_precision": fixed(True),
                },
                # Booster trials boost up to 5,000 rounds, patience 50 (rtdl's): the boosters' lowest learning rate,
                # 0.02, times 5,000 is 100, the median learning rate x rounds at which the tuned boosters' refits
                # early-stopped at this preset's 10,000 formation_energy rows (47-174; baselines/boosting.py), so a
                # trial at the lowest rate can reach its early stopping; rtdl's 2,000 allowed 40. (A 1,000-round cap
                # stopped the tuned boosters at 10k and 30k rows before early stopping did; docs/results.md,
                # 2026-11-26.) Most trials are pruned within ~100 rounds and the tuning seconds stay 50 expected fits,
                # so the higher cap costs configurations tried, not minutes. 2,000 until 2026-12-08.
                "boosters": {"step_cap": fixed(5000), "patience": fixed(50)},
                # 100 trees at every size, 239,190 rows too: more trees only lower a forest's variance, and the
                # forest selected on all 239,190 formation_energy rows (seed 0, max_features 0.2) had validation MAE
                # 0.0870, 0.0856 and 0.0853 at 48, 78 and 100 trees (docs/results/scaling/export, curves): its last
                # 22 trees took 0.35% off, at ~1.6 s a tree there (100 trees in 165 s, docs/results.md). `paper`
                # keeps the model's 500.
                "forest": {"step_cap": fixed(100), "split_criterion": choice("squared_error")},
            },
            tpe_startup_trials=5,
            pruner_startup_trials=3,
            # Network trials after trial 0 are compared at 3, 9, 27 (and 81 where the epoch budget is longer)
            # epochs of the same cosine schedule; only the best third of those reaching a rung go on, so most
            # configurations cost 3 epochs, not a whole fit. (A first rung of 4 epochs, until 2026-12-05: at 10k
            # rows a depth-48, batch-128 configuration took 26 s to reach it and IRNet tried 7 configurations in
            # its 105 s of search.)
            pruning={"networks": NETWORK_PRUNING},
            epoch_budgets={"networks": NETWORK_EPOCH_BUDGET},
            # From 90,000 training rows on, the networks search first on a ninth of the rows (at least 10,000),
            # then fit the 3 best configurations on every row and select among those: on all 239,190
            # formation_energy rows, 26,576-row fits of 65 epochs (~3 min each on 2 cores, most pruned after 3 or
            # 9 epochs) instead of 40-epoch fits of ~16 min, then three of those (docs/guide/budgets.md
            # "Multi-fidelity over training rows"). That search gets 6 expected fits after trial 0 (17 min for
            # IRNet-17 there): at the rule's 1.3 the 10,000-row studies compared 3-9 configurations, and a study on
            # every row must compare at least 16.
            row_rungs={"networks": RowRungs(fractions=(1 / 9,), promote=3, min_rows=10_000, search_fits=6.0)},
            # The selected booster configuration's refit may boost 50,000 rounds: its trials' 5,000 bound the
            # search, but at 30,000 and 239,190 formation_energy rows the selected fits (then capped at 2,000) needed
            # up to learning rate x rounds 970 (XGBoost, depth 9, lr 0.102: 9,586 rounds; 8,445 at 30,000 rows; test
            # MAE 0.0942 and 0.0661 instead of 0.0977 and 0.0686 at 2,000; docs/measurements.md "The boosters' round
            # cap ..."), and 50,000 x the lowest rate, 0.02, is 1,000 (baselines/boosting.py). 20,000 until 2026-12-08.
            refit_step_caps={"boosters": 50_000},
            trial0="converging",
        ),
        Preset(
            name="paper",
            description=(
                "GPU: full training data and the published network regime (raw inputs and targets, MAE loss, "
                "patience 200; trial 0 is the paper's Adam, lr 1e-4, batch 32); 30 trials per model; 3 seeds"
            ),
            budget=TrialBudget(n_trials=30, tuning_seconds=12 * 3600.0, fit_seconds=None),
            max_train_rows=None,
            settings={
                "networks": {
                    "patience": fixed(200),
                    "loss": fixed("mae"),
                    "standardize_inputs": fixed(False),
                    "clip_inputs": fixed(False),
                    "standardize_target": fixed(False),
                },
                "boosters": {"step_cap": fixed(5000), "patience": fixed(50)},  # as quick's (baselines/boosting.py)
            },
            seeds=(0, 1, 2),
            tpe_startup_trials=10,
            pruner_startup_trials=5,
            refit_step_caps={"boosters": 50_000},  # as quick's: on the full data a booster outgrows its 5,000
        ),
    ]
}
DEFAULT_PRESET = "quick"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; UsageError listing the presets otherwise."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name]
