"""A study killed in the middle of a trial and run again searches as it would have left alone (issue 38).

The resumed study must try the same configurations, prune them at the same rungs, charge the same seconds and
select the same configuration as the same study left alone; the console and the report say which trials were
resumed.

The stand-in studies have budgets in seconds, as the presets' are (here about 9 configurations: trial 0, kept
apart, and 8 in 4.5 s), so how many configurations a study tries depends on how long each took. The tolerance is
one configuration, the last: the retry of a killed fit spends seconds the fit left alone did not (the trial's
setup again, the epoch after its last checkpoint, lost with the kill, and the reports of the restored epochs to
the pruner: 0.03-0.06 s here with the storage in memory, 0.3-0.5 s on a busy disk), and every trial's seconds
vary with the machine's load, so the last configuration may or may not fit what is left. Every configuration
before it must be the same, in the same order, ending at the same epoch in the same way. The network study has a
budget of trials, so there the two searches must be equal to the last configuration.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import FrozenTrial, TrialState

from benchmarks import searchspace as spaces
from benchmarks.contract import CurvePoint, FitReport, Model
from benchmarks.searchspace import ModelSearch
from reports.stats import trial_breakdown
from studies.coordination import ATTR_RETRY_OF, ATTR_WORKER, open_storage
from studies.presets import TrialBudget, get_preset
from studies.schema import RunKey
from studies.tuning import (
    ATTR_CUT_BY_BUDGET,
    ATTR_RESUMED_FROM_EPOCH,
    RUNG_ATTR_PREFIX,
    TuningJob,
    charged_seconds,
    finished_trials,
    open_study,
    trial_seconds,
    tune,
)
from tests.test_studies import TESTS_DIR, _StandIn

optuna.logging.set_verbosity(optuna.logging.WARNING)

DEAD_WORKER = f"{socket.gethostname()}:999999999:1"  # a process that does not exist on this host


class Killed(BaseException):
    """Stands for SIGKILL inside a fit: nothing in the study catches it, and its trial is left RUNNING."""


# ---------------------------------------------------------------------------------- a resumable stand-in ---


class EpochModel(_StandIn):
    """A network as the study sees it: ``max_steps`` epochs of ``epoch_seconds`` each, validation MAE
    offset + slowness / epoch, a checkpoint after every epoch, and a fit that finds its checkpoint replays the
    restored epochs to ``on_step`` before it goes on, as :func:`irnet.training.train_network` does; the time limit
    counts the seconds before the checkpoint. Trial 0 (the defaults) starts slowly and ends best, as the
    converging regime of the networks does: most configurations beat it at the first rung, few at the last."""

    name: ClassVar[str] = "epochs"
    resumable: ClassVar[bool] = True

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"offset": 0.0, "slowness": 20.0, "epoch_seconds": 0.1, "max_steps": 12}

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None, checkpoint_path=None):
        self.mean_ = float(np.mean(y_train))
        curve = _read_checkpoint(checkpoint_path)
        resumed_from = curve[-1].step if curve else None
        start = time.perf_counter() - (curve[-1].seconds if curve else 0.0)
        for point in curve:
            if on_step is not None:
                on_step(point.step, point.val_mae)
        stopped = "max_steps"
        tick = time.perf_counter()
        while len(curve) < int(self.params["max_steps"]):
            # Every epoch lasts epoch_seconds, the study's work in on_step included: seconds the load cannot stretch.
            tick += float(self.params["epoch_seconds"])
            time.sleep(max(0.0, tick - time.perf_counter()))
            step = len(curve) + 1
            value = float(self.params["offset"]) + float(self.params["slowness"]) / step
            curve.append(CurvePoint(step, value, value, time.perf_counter() - start))
            if on_step is not None:
                on_step(step, value)
            if time_limit_s is not None and time.perf_counter() - start >= time_limit_s:
                stopped = "time_limit"
                break
            _write_checkpoint(checkpoint_path, curve)
        best = min(curve, key=lambda p: p.val_mae)
        extra = {} if resumed_from is None else {"resumed_from_epoch": resumed_from}
        return FitReport(curve, best.step, best.val_mae, time.perf_counter() - start, "cpu", stopped, extra=extra)


def _read_checkpoint(path: Path | None) -> list[CurvePoint]:
    if path is None or not path.exists():
        return []
    return [CurvePoint(*point) for point in json.loads(path.read_text())]


def _write_checkpoint(path: Path | None, curve: list[CurvePoint]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps([[p.step, p.train_mae, p.val_mae, p.seconds] for p in curve]))
        partial.replace(path)


EPOCH_SEARCH = ModelSearch({"offset": spaces.uniform(0.0, 3.0), "slowness": spaces.uniform(2.0, 20.0),
                            "epoch_seconds": spaces.fixed(0.1), "max_steps": spaces.fixed(12)})  # fmt: skip
# quick's network budget in small: trial 0 runs to its end apart from the seconds, which buy the search after it.
EPOCH_BUDGET = TrialBudget(n_trials=50, tuning_seconds=4.5, fit_seconds=60.0, expected_trial_steps=3,
                           trial0_apart=True)  # fmt: skip
KillWhen = Callable[[dict[str, Any], int], bool]  # (the fit's parameters, the epoch just reported) -> kill now


def killing(model_cls: type[Model], when: KillWhen, kill: Callable[[], None]) -> type[Model]:
    """``model_cls`` whose fit calls ``kill`` once, right after it reported the first epoch for which ``when``
    holds (the checkpoint then holds the epoch before it)."""
    fired: list[bool] = []

    class Killing(model_cls):  # type: ignore[valid-type, misc]
        def fit(self, *args: Any, on_step: Any = None, **kwargs: Any) -> FitReport:
            def step(epoch: int, value: float) -> None:
                on_step(epoch, value)
                if not fired and when(self.params, epoch):
                    fired.append(True)
                    kill()

            return super().fit(*args, on_step=step, **kwargs)

    return Killing


def _raise_killed() -> None:
    raise Killed


# ---------------------------------------------------------------------------------------------- studies ---


def _open(folder: Path, search: ModelSearch) -> optuna.Study:
    """The study of a network under quick (successive halving at 3, 9, 27 epochs) in ``folder``'s storage."""
    storage = open_storage(f"sqlite:///{folder / 'optuna.db'}")
    key = RunKey("matbench_steels", "irnet", 0, 0, "quick")
    return open_study(storage, key, search=search, preset=get_preset("quick"), config={"data": "steels"})


def _job(model_cls: type[Model], search: ModelSearch, training: Any, folder: Path, budget: TrialBudget) -> TuningJob:
    return TuningJob(model_cls=model_cls, search=search, space=search.space, training=training, budget=budget,
                     seed=0, device="cpu", checkpoint_dir=folder / "checkpoints")  # fmt: skip


def _tune(model_cls: type[Model], search: ModelSearch, training: Any, folder: Path, budget: TrialBudget) -> Any:
    folder.mkdir(exist_ok=True)
    return tune(_open(folder, search), _job(model_cls, search, training, folder, budget), progress=False)


def _left_for_dead(study: optuna.Study) -> int:
    """Make the trial a kill left RUNNING look as it does after SIGKILL: owned by a process that is gone.
    Returns its number."""
    [running] = study.get_trials(states=(TrialState.RUNNING,))
    study._storage.set_trial_user_attr(running._trial_id, ATTR_WORKER, DEAD_WORKER)
    return running.number


def _killed_then_rerun(model_cls: type[Model], search: ModelSearch, training: Any, folder: Path,
                       budget: TrialBudget, when: KillWhen) -> tuple[Any, int]:  # fmt: skip
    """Tune, killed in the fit where ``when`` first holds; then tune the same study again. Returns the rerun's
    result and the number of the trial the kill interrupted."""
    with pytest.raises(Killed):
        _tune(killing(model_cls, when, _raise_killed), search, training, folder, budget)
    interrupted = _left_for_dead(_open(folder, search))
    time.sleep(1.0)  # the machine was down a while: seconds no trial spent
    return _tune(model_cls, search, training, folder, budget), interrupted


def _retry(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials() if t.user_attrs.get(ATTR_RETRY_OF) == number)


def configurations(study: optuna.Study) -> list[tuple[dict[str, Any], str, int]]:
    """What a study tried, in order: each configuration's parameters, how it ended (COMPLETE, PRUNED, or CUT at
    the tuning seconds) and the last epoch it reported; a retry stands in the place of the trial it re-runs."""
    return [
        (t.params, "CUT" if ATTR_CUT_BY_BUDGET in t.user_attrs else t.state.name, max(t.intermediate_values))
        for t in finished_trials(study)
    ]


def assert_same_search(resumed: optuna.Study, alone: optuna.Study, tolerance: int = 1) -> None:
    """The resumed study tried the configurations of the one left alone, in the same order, each ending at the
    same epoch in the same way, up to the last one of the shorter (which the seconds left may cut at another
    epoch); and within ``tolerance`` as many (see the module's docstring)."""
    ours, theirs = configurations(resumed), configurations(alone)
    assert abs(len(ours) - len(theirs)) <= tolerance, (len(ours), len(theirs))
    shorter = min(len(ours), len(theirs))
    assert ours[: shorter - 1] == theirs[: shorter - 1]
    assert [c[0] for c in ours[:shorter]] == [c[0] for c in theirs[:shorter]]


def rungs(trial: FrozenTrial) -> dict[str, float]:
    """The values successive halving recorded for ``trial`` at the rungs it reached."""
    return {k: v for k, v in trial.system_attrs.items() if k.startswith(RUNG_ATTR_PREFIX)}


def _at_epoch(kill_at: int, *, of_trial_0: bool) -> KillWhen:
    """Kill at epoch ``kill_at`` (the checkpoint holds the epoch before) of trial 0, or of the first other
    configuration to get there."""

    def when(params: dict[str, Any], epoch: int) -> bool:
        is_trial_0 = params["offset"] == 0.0 and params["slowness"] == 20.0  # EpochModel's defaults
        return epoch == kill_at and is_trial_0 == of_trial_0

    return when


@pytest.fixture
def fast_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory where the machine has one (/dev/shm), else ``tmp_path``: sqlite's syncs to disk are most
    of what a trial costs beside its epochs here, and what varies most from one run to the next."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="irnet-bench-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_study_killed_during_trial_0_resumes_to_the_search_it_would_have_run(fast_folder, steels_training):
    alone = _tune(EpochModel, EPOCH_SEARCH, steels_training, fast_folder / "alone", EPOCH_BUDGET)
    # Killed at epoch 10 of trial 0, after the rungs at 3 and 9: its checkpoint holds epoch 9.
    resumed, interrupted = _killed_then_rerun(EpochModel, EPOCH_SEARCH, steels_training, fast_folder / "killed",
                                              EPOCH_BUDGET, _at_epoch(10, of_trial_0=True))  # fmt: skip
    study, left_alone = _open(fast_folder / "killed", EPOCH_SEARCH), _open(fast_folder / "alone", EPOCH_SEARCH)
    retry = _retry(study, interrupted)
    assert interrupted == 0 and retry.user_attrs[ATTR_RESUMED_FROM_EPOCH] == 9
    assert sorted(retry.intermediate_values) == list(range(1, 13))  # its whole curve, restored epochs included
    assert charged_seconds([retry], EPOCH_BUDGET) == 0.0  # still trial 0, kept apart from the search's seconds
    assert_same_search(study, left_alone)
    assert len(configurations(left_alone)) >= 6  # a search of many configurations, most pruned at 3 epochs
    assert resumed.best_params == alone.best_params
    assert resumed.resumed_trials == (0,) and alone.resumed_trials == ()


def test_a_study_killed_during_a_search_trial_resumes_to_the_search_it_would_have_run(fast_folder, steels_training):
    alone = _tune(EpochModel, EPOCH_SEARCH, steels_training, fast_folder / "alone", EPOCH_BUDGET)
    # Killed at epoch 4 of the first configuration after trial 0 that passed the rung at 3 epochs.
    resumed, interrupted = _killed_then_rerun(EpochModel, EPOCH_SEARCH, steels_training, fast_folder / "killed",
                                              EPOCH_BUDGET, _at_epoch(4, of_trial_0=False))  # fmt: skip
    study, left_alone = _open(fast_folder / "killed", EPOCH_SEARCH), _open(fast_folder / "alone", EPOCH_SEARCH)
    retry, original = _retry(study, interrupted), study.get_trials()[interrupted]
    assert interrupted > 0 and max(retry.intermediate_values) > 4
    # The retry kept the rung its original passed, and was charged what the trial cost left alone: the seconds
    # of its fit before the checkpoint (not the second the machine was down) with its own, which repeat the
    # fit's setup, epoch 4 (lost with the kill) and the report of epochs 1 to 3 to the pruner.
    assert len(rungs(original)) == 1 and rungs(original).items() <= rungs(retry).items()
    same = next(t for t in finished_trials(left_alone) if t.params == retry.params)
    assert trial_seconds(same) - 0.1 <= trial_seconds(retry) <= trial_seconds(same) + 0.6
    assert_same_search(study, left_alone)
    assert resumed.best_params == alone.best_params
    assert resumed.resumed_trials == (interrupted,)


def test_a_retry_keeps_the_rungs_its_original_passed(tmp_path, steels_training):
    """Another worker's configurations that reached the first rung while the killed trial was dead do not
    prune its retry there: it passed that rung, and is next judged at the one after."""
    folder, worse, better = tmp_path / "study", {"offset": 3.0, "slowness": 20.0}, {"offset": 0.5, "slowness": 2.0}
    budget = TrialBudget(n_trials=50, tuning_seconds=None, fit_seconds=None)
    job = _job(killing(EpochModel, lambda params, epoch: params["offset"] == 0.5 and epoch == 4, _raise_killed),
               EPOCH_SEARCH, steels_training, folder, budget)  # fmt: skip
    folder.mkdir()
    with pytest.raises(Killed):  # trial 1 (worse) is pruned at 3 epochs; trial 2 (better) goes on and is killed
        tune(_open(folder, EPOCH_SEARCH), dataclasses.replace(job, extra_trials=[worse, better]), progress=False)
    study = _open(folder, EPOCH_SEARCH)
    interrupted = _left_for_dead(study)
    for _ in range(3):  # what another worker finished meanwhile: better than trial 2 at 3 epochs
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={3: 0.1},
                                                  system_attrs={RUNG_ATTR_PREFIX + "0": 0.1}))  # fmt: skip
    again = dataclasses.replace(job, model_cls=EpochModel, budget=dataclasses.replace(budget, n_trials=6))
    tune(study, again, progress=False)  # the retry is the last trial of the budget
    retry = _retry(study, interrupted)
    assert interrupted == 2 and retry.number == len(study.get_trials()) - 1
    assert rungs(retry)[RUNG_ATTR_PREFIX + "0"] == rungs(study.get_trials()[interrupted])[RUNG_ATTR_PREFIX + "0"]
    assert retry.state == TrialState.PRUNED and max(retry.intermediate_values) == 9


# --------------------------------------------------------------------------------------- a real network ---

# IRNet on matbench_steels in one batch per epoch, 10 epochs: trial 0 (the paper's learning rate, 1e-4) starts
# slowly, so the configurations after it beat it at the first rung, as the converging regime's do under quick.
NETWORK_SEARCH = ModelSearch({"lr": spaces.log_uniform(1e-4, 1e-2), "optimizer": spaces.choice("adam", "adamw"),
                              "batch_size": spaces.fixed(2048), "max_epochs": spaces.fixed(10),
                              "patience": spaces.fixed(10)})  # fmt: skip
NETWORK_BUDGET = TrialBudget(n_trials=5, tuning_seconds=None, fit_seconds=None)

KILLED_NETWORK_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    import torch
    torch.set_num_threads(1)  # as the test's process
    import irnet.training
    irnet.training.CHECKPOINT_EVERY_S = 0.0  # a checkpoint after every epoch
    from benchmarks.loader import load_task, task_fold
    from irnet.models import IRNetModel
    from tests.test_resumed_studies import NETWORK_BUDGET, NETWORK_SEARCH, _tune, killing

    training = task_fold(load_task("matbench_steels"), 0, featurizer="magpie", val_seed=0, progress=False)[0]
    kill = killing(IRNetModel, lambda params, epoch: params["lr"] == 1e-4 and epoch == {epoch},
                   lambda: os.kill(os.getpid(), signal.SIGKILL))
    _tune(kill, NETWORK_SEARCH, training, Path({folder!r}), NETWORK_BUDGET)
    """
)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread, here and in the killed process: the same arithmetic in both (so the same values at
    the rungs), and no threads spinning against each other on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_network_study_killed_by_sigkill_during_trial_0_resumes_to_the_search_it_would_have_run(
    tmp_path, steels_training, one_torch_thread
):
    """The issue's procedure on a small network study: SIGKILL at epoch 7 of trial 0, then the same study again.
    A budget of trials, not seconds, so the two searches must be equal to the last configuration."""
    from irnet.models import IRNetModel

    alone = _tune(IRNetModel, NETWORK_SEARCH, steels_training, tmp_path / "alone", NETWORK_BUDGET)
    folder = tmp_path / "killed"
    script = KILLED_NETWORK_SCRIPT.format(repo=str(TESTS_DIR.parent), folder=str(folder), epoch=7)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _tune(IRNetModel, NETWORK_SEARCH, steels_training, folder, NETWORK_BUDGET)
    study = _open(folder, NETWORK_SEARCH)
    retry = _retry(study, 0)
    assert retry.user_attrs[ATTR_RESUMED_FROM_EPOCH] == 6 and sorted(retry.intermediate_values) == list(range(1, 11))
    assert configurations(study) == configurations(_open(tmp_path / "alone", NETWORK_SEARCH))
    assert resumed.best_params == alone.best_params
    assert resumed.resumed_trials == (0,)


# ------------------------------------------------------------------------------------- what a reader sees ---


def test_the_console_and_the_report_say_which_trials_of_a_study_were_resumed(tmp_path, capsys, monkeypatch):
    import studies.tuning
    from benchmarks.run import main
    from reports.build import main as build_report

    out = tmp_path / "out"
    command = ["--task", "matbench_steels", "--preset", "smoke", "--models", "rf", "--folds", "0", "--no-progress",
               "--out", str(out)]  # fmt: skip
    fits: list[int] = []

    def killed_in_trial_1(*args: Any, **kwargs: Any) -> FitReport:
        fits.append(len(fits))
        if len(fits) == 2:  # trial 0 was the first fit
            raise Killed
        return real_fit(*args, **kwargs)

    real_fit = studies.tuning.fit_model
    monkeypatch.setattr(studies.tuning, "fit_model", killed_in_trial_1)
    with pytest.raises(Killed):
        main(command)
    storage = open_storage(f"sqlite:///{out / 'optuna.db'}")
    assert _left_for_dead(optuna.load_study(study_name=None, storage=storage)) == 1
    monkeypatch.setattr(studies.tuning, "fit_model", real_fit)
    capsys.readouterr()
    assert main(command) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.split()[1:2] == ["rf"]]
    resumed = re.compile(r" 3 \(\d / \d / \d\), resumed 1× \(trial 1\)")  # 3 tried, as many as left alone
    assert resumed.search(row), row

    assert build_report(["--tracking-uri", f"sqlite:///{out / 'mlflow.db'}", "--out", str(tmp_path / "report")]) == 0
    assert resumed.search((tmp_path / "report" / "leaderboard.md").read_text())


def test_the_resumed_trials_of_several_runs_are_said_by_fold_and_seed():
    counts = {"n_trials": 14.0, "n_trials_complete": 1.0, "n_trials_pruned": 13.0, "n_trials_cut_by_budget": 0.0}
    runs = pd.DataFrame([{**counts, "fold": 0, "seed": 0, "resumed_trials": "0,0,7"},
                         {**counts, "fold": 1, "seed": 0, "resumed_trials": ""},
                         {**counts, "fold": 2, "seed": 1, "resumed_trials": "3"}])  # fmt: skip
    assert trial_breakdown(runs[1:2]) == "14 (1 / 13 / 0)"
    assert trial_breakdown(runs[2:]) == "14 (1 / 13 / 0), resumed 1× (trial 3)"
    assert trial_breakdown(runs) == (
        "14 (1 / 13 / 0), resumed 4× in 2 of 3 runs (fold 0 seed 0: trials 0 (2×), 7; fold 2 seed 1: trial 3)"
    )
    assert trial_breakdown(runs.drop(columns="resumed_trials")) == "14 (1 / 13 / 0)"  # stores written before
