"""What one benchmark run covers: the task, models, folds, seeds, training sizes, preset and stores.

Built and validated by ``benchmarks.run`` before any work; :meth:`RunPlan.jobs` lists its (training-row cap,
:class:`studies.schema.RunKey`) pairs in the order the protocol runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies import schema
from studies.presets import Preset, TrialBudget
from studies.registry import model_info
from studies.schema import RunKey


@dataclass(frozen=True)
class RunPlan:
    """Everything one benchmark run needs, validated by the command line before any work starts."""

    task: Any  # benchmarks.loader.TaskData
    models: tuple[str, ...]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    preset: Preset  # with command-line overrides applied (budget, max_train_rows)
    out_dir: Path
    storage_url: str
    tracking_uri: str
    device: str = "cpu"
    threads: int = 1
    featurizer: str = "magpie"
    cache_dir: Path | None = None
    val_seed: int = 0  # the same validation rows for every model and seed: only the model seed varies
    progress: bool = True
    fold_tags: dict[int, dict[str, str]] = field(default_factory=dict)  # extra parent-run tags per fold
    # Training-row caps of a scaling study (None in it: all rows), increasing; empty: the preset's cap only.
    train_sizes: tuple[int | None, ...] = ()
    command: str = ""  # the command line that made the plan, recorded on every parent run ("" when not known)

    @property
    def task_name(self) -> str:
        return str(self.task.spec.name)

    def caps(self) -> tuple[int | None, ...]:
        """The training-row caps the run covers, smallest first."""
        return self.train_sizes or (self.preset.max_train_rows,)

    def effective_cap(self, cap: int | None, fold: int) -> int | None:
        """``cap``, or None where it does not bind on ``fold`` (so "all" and a cap above the fold's training
        part are one configuration with one key)."""
        from benchmarks.loader import training_size

        if cap is None or cap >= training_size(self.task, fold, val_seed=self.val_seed):
            return None
        return cap

    def jobs(self) -> list[tuple[int | None, RunKey]]:
        """Every (training-row cap, key) of the run: size by size, smallest first, and within a size
        fold-major, so an interrupted run has whole sizes and folds. The key carries the training rows."""
        return [(cap, key) for jobs in self.jobs_by_size().values() for cap, key in jobs]

    def jobs_by_size(self) -> dict[int | None, list[tuple[int | None, RunKey]]]:
        """:meth:`jobs` under the cap each was asked for (None: all rows); folds of one cap may differ by a row
        or two in training size (Matbench folds are not all equal), so tables group by this."""
        from benchmarks.loader import training_size

        out: dict[int | None, list[tuple[int | None, RunKey]]] = {}
        for requested in self.caps():
            for fold in self.folds:
                cap = self.effective_cap(requested, fold)
                n_train = training_size(self.task, fold, val_seed=self.val_seed, max_train_rows=cap)
                for seed in self.seeds:
                    for model in self.models:
                        key = RunKey(self.task_name, model, fold, seed, self.preset.name, n_train)
                        out.setdefault(requested, []).append((cap, key))
        return out

    def keys(self) -> list[RunKey]:
        """Every (model, fold, seed, training size) of the run, in :meth:`jobs` order."""
        return [key for _, key in self.jobs()]

    def config(self, cap: int | None = None) -> dict[str, str]:
        """What the runs of one training-row cap are trained on; a rerun with other values is refused rather
        than mixed in."""
        return {
            schema.TAG_DATA_SHA256: str(self.task.sha256),
            schema.TAG_FEATURIZER: self.featurizer,
            schema.TAG_MAX_TRAIN_ROWS: "all" if cap is None else str(cap),
            schema.TAG_VAL_SEED: str(self.val_seed),
        }

    def expected_fit_seconds(self, key: RunKey) -> float:
        """Expected seconds of one fit of ``key``'s model on its rows, on this plan's device, threads and precision."""
        return self._fit_seconds(key.model, int(key.train_size or 0))

    def _fit_seconds(self, model: str, n_train: int) -> float:
        return self.preset.expected_fit(model, n_train, self.device, self.threads)

    def _search_seconds(self, model: str, n_train: int, budget: TrialBudget | None = None) -> float:
        """What a search on ``n_train`` rows under ``budget`` (default: the preset's for those rows) is expected to
        take: the budget's seconds, plus one fit for trial 0 where the budget keeps it apart, or its trials'
        expected fits where those are fewer or no seconds are set."""
        budget = budget or self.preset.budget_for(model, n_train, self.device, self.threads)
        fit = self._fit_seconds(model, n_train)
        tuning = budget.n_trials * fit
        if budget.tuning_seconds is not None:
            tuning = min(tuning, budget.tuning_seconds + (fit if budget.trial0_apart else 0.0))
        return tuning

    def expected_seconds(self, key: RunKey) -> float:
        """What the budget rule expects ``key`` to take: its search (:meth:`_search_seconds`) plus one refit (at
        most the per-fit cap). With row rungs (:class:`studies.presets.RowRungs`): the search on each lower rung,
        then the promoted configurations' fits on every row, the best of which is the refit."""
        n_train = int(key.train_size or 0)
        rows = self.preset.rung_rows(key.model, n_train)
        fit = self._fit_seconds(key.model, n_train)
        if len(rows) > 1:
            promote = self.preset.row_rungs[model_info(key.model).group].promote
            searches = [self._search_seconds(key.model, n, self.preset.lower_rung_budget(key.model, n, self.device,
                                                                                          self.threads))
                        for n in rows[:-1]]  # fmt: skip
            return sum(searches) + promote * fit
        budget = self.budget(key)
        return self._search_seconds(key.model, n_train) + (
            fit if budget.fit_seconds is None else min(fit, budget.fit_seconds)
        )

    def budget(self, key: RunKey) -> TrialBudget:
        """The study budget of ``key``: by the preset's rule from its model family and training rows."""
        return self.preset.budget_for(key.model, int(key.train_size or 0), self.device, self.threads)
