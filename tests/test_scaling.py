"""Issue #10, part 1: budgets from rows and model family, --train-sizes (parsing, bad input, nested subsamples,
the train_size tag, resume), task groups, refit reuse, and the leaderboard's "cut short" mark.

Real data (matbench_steels, official folds; formation_energy for the quick preset's 10k-row cap), real
MLflow and Optuna stores in temporary folders."""

from __future__ import annotations

import dataclasses
import itertools
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from benchmarks.cli import main_guard
from benchmarks.run import main, parse_train_sizes, task_groups
from benchmarks.searchspace import fixed
from irnet.models import converging_network_regime
from reports.tables import format_leaderboard, leaderboard
from studies import schema
from studies.coordination import open_storage
from studies.plan import RunPlan
from studies.presets import PRESETS, expected_fit_seconds, get_preset
from studies.protocol import refit_and_score
from studies.refit_reuse import fit_identity, load_trial_fit
from studies.schema import RunKey
from studies.tuning import TuningJob, open_study, tune

REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------------------------ budget rule ---


@pytest.fixture
def native_bf16(monkeypatch):
    """Budgets as on a CPU with native bf16 (this project's machines), whatever CPU runs the test."""
    import irnet.training

    monkeypatch.setattr(irnet.training, "native_cpu_bf16", lambda: "amx_bf16")


def test_quick_budget_grows_with_rows_and_differs_by_family(native_bf16):
    quick = PRESETS["quick"]
    # Networks: the epoch budget's 80 epochs at 10k rows at 4,500 rows/s in float32 -> 177.8 s, / 2.2 in bf16
    # (quick's amp): 80.8 s; trial 0 apart, then tuning 1.3 fits (successive halving fills it with short trials),
    # cap 4 fits. A trial after trial 0 is expected to stop at the first rung: 3 epochs.
    net = quick.budget_for("irnet", 10_000)
    assert (net.n_trials, net.tuning_seconds, net.fit_seconds, net.expected_trial_steps) == (50, 105.1, 323.2, 3)
    assert net.trial0_apart and not quick.budget_for("xgboost", 10_000).trial0_apart
    # Small data: the 30 s floor on a float32 fit (13.6 s in bf16), 90 s floor on the search (several trials).
    small = quick.budget_for("srnet", 1_000)
    assert (small.tuning_seconds, small.fit_seconds) == (90.0, 90.0)
    assert quick.budget_for("rf", 1_000).fit_seconds == 60.0  # 4 x the 5 s floor is 20, lifted to the tuning 60
    # 30k rows: 63 epochs (fewer epochs on more rows), 30 x 63 / 4.5 / 2.2 = 190.9 s per fit, cap 4 fits.
    assert quick.budget_for("plain", 30_000).fit_seconds == 763.6
    # Boosters: 50 trials' worth of 1.5 s fits at 10k rows; a cap 20x the expected fit (30 s), never below the
    # tuning seconds (75 s): a fit the tuning budget could hold is not cut by the cap.
    xgb = quick.budget_for("xgboost", 10_000)
    assert (xgb.n_trials, xgb.tuning_seconds, xgb.fit_seconds) == (50, 75.0, 75.0)
    assert quick.budget_for("lightgbm", 1_000).tuning_seconds == 60.0  # the floor
    forest = quick.budget_for("rf", 10_000)
    assert (forest.tuning_seconds, forest.fit_seconds) == (75.0, 75.0)
    for model in ("irnet", "xgboost", "rf"):
        sizes = [quick.budget_for(model, n) for n in (1_000, 3_000, 10_000, 30_000, 239_190)]
        assert all(
            a.tuning_seconds <= b.tuning_seconds and a.fit_seconds <= b.fit_seconds
            for a, b in itertools.pairwise(sizes)
        )
        assert sizes[0].tuning_seconds < sizes[-1].tuning_seconds and sizes[0].fit_seconds < sizes[-1].fit_seconds


def test_network_budget_follows_bf16_and_the_thread_count(monkeypatch):
    import irnet.training

    quick = PRESETS["quick"]
    monkeypatch.setattr(irnet.training, "native_cpu_bf16", lambda: None)  # amp falls back to float32
    assert quick.budget_for("irnet", 10_000).fit_seconds == 711.1
    assert quick.budget_for("irnet", 10_000, threads=1).fit_seconds == 1422.2  # one core: twice as long
    assert quick.budget_for("irnet", 10_000, threads=8).fit_seconds == 711.1  # more threads: no credit
    monkeypatch.setattr(irnet.training, "native_cpu_bf16", lambda: "avx512_bf16")
    assert quick.budget_for("irnet", 10_000).fit_seconds == 323.2
    assert quick.budget_for("xgboost", 10_000, threads=1).fit_seconds == 150.0  # trees: threads only
    assert PRESETS["paper"].budget_for("irnet", 10_000) == PRESETS["paper"].budget  # paper: amp off, fixed budget


def test_quick_successive_halving_ends_at_the_epoch_budget_of_the_rows():
    """`quick`'s networks spend an epoch budget by rows (a cosine schedule over it): it is their step cap, fixed
    in the space a study tunes, and the last resource of their successive halving."""
    from studies.protocol import resolved_space

    quick = PRESETS["quick"]
    budget = quick.epoch_budgets["networks"]
    assert [budget.epochs(n) for n in (1_000, 10_000, 30_000, 239_190)] == [132, 80, 63, 40]
    for n, rungs in ((1_000, [3, 9, 27, 81]), (10_000, [3, 9, 27]), (239_190, [3, 9, 27])):
        pruning = quick.pruning_for("irnet", n)
        assert pruning is not None and pruning.max_steps == budget.epochs(n) and pruning.rungs() == rungs
        space = resolved_space("irnet", quick, threads=2, n_train=n)
        assert space["max_epochs"] == fixed(budget.epochs(n)) and space["schedule"] == fixed("cosine")
        assert space["patience"]["value"] >= budget.epochs(n)  # the schedule is spent, never cut by patience
    assert quick.pruning_for("xgboost") is None and quick.budget_for("xgboost", 10_000).expected_trial_steps is None
    with pytest.raises(ValueError, match="first rung"):  # a first rung at or past the fewest epochs
        quick.with_changes(pruning={"networks": dataclasses.replace(quick.pruning["networks"], min_steps=20)})
    # Without an epoch budget the step cap is the preset's fixed one, and the two must agree.
    plateau = quick.with_changes(epoch_budgets={}, settings={**quick.settings, "networks": {"step_cap": fixed(300)}})
    assert plateau.pruning_for("irnet", 10_000).rungs() == [3, 9, 27, 81, 243]
    with pytest.raises(ValueError, match="not the step cap"):
        plateau.with_changes(settings={**quick.settings, "networks": {"step_cap": fixed(100)}})


def test_network_budget_on_a_gpu_is_scaled_by_throughput_and_trees_are_not():
    quick = PRESETS["quick"]
    assert expected_fit_seconds("irnet", 100_000, "cuda") == pytest.approx(expected_fit_seconds("irnet", 100_000) / 10)
    assert quick.budget_for("xgboost", 10_000, "cuda") == quick.budget_for("xgboost", 10_000, "cpu")


def test_command_line_budget_overrides_every_family_and_smoke_stays_fixed():
    quick = PRESETS["quick"].with_changes(budget_overrides={"n_trials": 3, "fit_seconds": 7.0})
    for model, rows in (("irnet", 10_000), ("rf", 500), ("lightgbm", 30_000)):
        budget = quick.budget_for(model, rows)
        assert (budget.n_trials, budget.fit_seconds) == (3, 7.0)
    assert (
        quick.budget_for("irnet", 10_000).tuning_seconds == PRESETS["quick"].budget_for("irnet", 10_000).tuning_seconds
    )
    smoke = PRESETS["smoke"]
    assert smoke.budget_for("irnet", 100) == smoke.budget_for("xgboost", 5_000) == smoke.budget


def test_converging_trial0_picks_batch_and_lr_from_the_rows():
    assert converging_network_regime(10_000) == {
        "optimizer": "adamw",
        "lr": 0.003,
        "batch_size": 1024,
        "weight_decay": 0.0,
    }
    assert converging_network_regime(3_000)["batch_size"] == 256  # >= 8 steps per epoch
    assert converging_network_regime(1_000) == {
        "optimizer": "adamw",
        "lr": 0.001061,
        "batch_size": 128,
        "weight_decay": 0.0,
    }
    assert converging_network_regime(50)["batch_size"] == 128


# ------------------------------------------------------------------------------------------ train sizes ---


def test_train_sizes_parse():
    assert parse_train_sizes("1000,3000,10000,30000,all") == (1000, 3000, 10000, 30000, None)
    assert parse_train_sizes(" 500 , ALL") == (500, None)
    assert parse_train_sizes("all") == (None,)
    assert parse_train_sizes(None) == ()


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ("0,100", "size 0 must be a positive"),
        ("-5", "size -5 must be a positive"),
        ("100,100", "repeats size 100"),
        ("150,100", "must increase: 100 comes after 150"),
        ("100,abc", "got 'abc'"),
        ("all,100", "'all' must be the last"),
        (",", "--train-sizes is empty"),
        ("100,300", "size 300 is larger than the training part of matbench_steels (224 rows)"),
        ("224,all", "size 224 is the whole training part"),
        ("50,100", "size 50 leaves 6 validation rows on fold 0"),
    ],
)
def test_bad_train_sizes_are_one_line_and_exit_2_before_any_work(capsys, tmp_path, sizes, message):
    out = tmp_path / "out"
    capsys.readouterr()
    code = main_guard(
        main, ["--task", "matbench_steels", "--preset", "smoke", "--train-sizes", sizes, "--out", str(out)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    if (out / "optuna.db").exists():
        assert optuna.get_all_study_names(storage=f"sqlite:///{out / 'optuna.db'}") == []


def test_train_sizes_with_max_train_rows_is_refused(capsys, tmp_path):
    code = main_guard(main, ["--task", "matbench_steels", "--train-sizes", "100", "--max-train-rows", "100",
                             "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and "not both" in capsys.readouterr().err


def test_subsamples_are_nested_seeded_and_never_touch_test(steels_task):
    from benchmarks.loader import fold_rows

    parts = {n: fold_rows(steels_task, 1, val_seed=0, max_train_rows=n) for n in (100, 150, 200, None)}
    for small, large in ((100, 150), (150, 200), (200, None)):
        assert set(parts[small][0]) < set(parts[large][0])  # training rows nested
        assert set(parts[small][1]) <= set(parts[large][1])  # validation rows nested
        assert np.array_equal(parts[small][2], parts[large][2])  # the same full test part
    assert [len(parts[n][0]) for n in (100, 150, 200)] == [100, 150, 200]
    assert np.array_equal(fold_rows(steels_task, 1, val_seed=0, max_train_rows=150)[0], parts[150][0])  # seeded
    assert not np.array_equal(fold_rows(steels_task, 1, val_seed=1, max_train_rows=150)[0], parts[150][0])


def _plan(task, preset: str, out: Path, sizes=()) -> RunPlan:
    return RunPlan(task=task, models=("irnet", "xgboost"), folds=(0,), seeds=(0,), preset=get_preset(preset),
                   out_dir=out, storage_url="", tracking_uri="", train_sizes=tuple(sizes))  # fmt: skip


def test_quick_default_run_is_the_10k_point_of_a_scaling_study(tmp_path):
    from benchmarks.loader import load_task

    task = load_task("formation_energy")
    default = _plan(task, "quick", tmp_path)
    scaling = _plan(task, "quick", tmp_path, (1_000, 10_000, None))
    assert [k.train_size for k in scaling.keys()] == [1_000, 1_000, 10_000, 10_000, 239_190, 239_190]  # noqa: SIM118
    assert default.jobs() == [job for job in scaling.jobs() if job[1].train_size == 10_000]
    assert (
        default.config(10_000) == scaling.config(10_000)
        and default.config(10_000)[schema.TAG_MAX_TRAIN_ROWS] == "10000"
    )
    assert default.budget(default.keys()[0]) == scaling.budget(scaling.keys()[2])
    study_names = {k.study_name for k in scaling.keys()}  # noqa: SIM118 (a RunPlan, not a dict)
    assert len(study_names) == 6 and "formation_energy/irnet/fold0/seed0/quick/n10000" in study_names


def test_expected_time_is_the_tuning_budget_plus_one_refit(native_bf16, tmp_path):
    """What `--train-sizes all --threads 2` says at its start: IRNet first searches on a ninth of the rows (26,576:
    trial 0, 65 epochs, 174.5 s in bf16 at 4,500 rows/s x 2.2, and a search of 6 such fits, 1,046.9 s, not the
    rule's 1.3), then fits the 3 best on every row (40 epochs, 966.4 s each), the best of which is the refit:
    1 h 09 min."""
    from benchmarks.loader import load_task
    from studies.protocol import expected_time_line
    from studies.stores import default_tracking_uri

    plan = dataclasses.replace(_plan(load_task("formation_energy"), "quick", tmp_path, (None,)), threads=2,
                               tracking_uri=default_tracking_uri(tmp_path))  # fmt: skip
    irnet, xgboost = plan.keys()
    assert irnet.train_size == 239_190 and plan.expected_seconds(irnet) == pytest.approx(
        174.49 + 1046.9 + 3 * 966.42, abs=0.1
    )
    # XGBoost: 50 trials of its expected fit are fewer seconds than its tuning budget, so the trials count.
    fit = expected_fit_seconds("xgboost", 239_190, threads=2)
    assert plan.expected_seconds(xgboost) == pytest.approx(min(50 * fit, plan.budget(xgboost).tuning_seconds) + fit)
    line = expected_time_line(plan)
    assert line.startswith("2 of 2 jobs to run") and "irnet 1 h 09 min" in line and "(cpu, 2 thread(s))" in line


def test_a_cap_above_a_small_task_is_all_rows(steels_task, tmp_path):
    """The quick preset's 10k cap and 'all' are one configuration on a 312-row task: one key, one config."""
    plan = _plan(steels_task, "quick", tmp_path)
    assert plan.jobs()[0][0] is None and plan.keys()[0].train_size == 224
    assert plan.jobs() == _plan(steels_task, "quick", tmp_path, (None,)).jobs()


def test_task_groups():
    groups = task_groups()
    assert len(groups["matbench"]) == 10 and "matbench_steels" in groups["matbench"]
    assert "matbench_glass" not in groups["matbench"]  # classification
    assert groups["oqmd"] == ("formation_energy", "oqmd_band_gap", "oqmd_volume_per_atom", "oqmd_energy_per_atom")


# ----------------------------------------------------------------------------------------- refit reuse ---


def _tuned_xgboost(tmp_path, training, n_trials=2, **space_changes):
    from studies.protocol import resolved_space
    from studies.registry import get_model_class, model_info

    preset = get_preset("smoke")
    search = model_info("xgboost").search
    study = open_study(open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"),
                       RunKey("matbench_steels", "xgboost", 0, 0, "smoke"),
                       search=search, preset=preset, config={"data": "steels"})  # fmt: skip
    job = TuningJob(
        model_cls=get_model_class("xgboost"),
        search=search,
        space={**resolved_space("xgboost", preset, 1), **space_changes},
        training=training,
        budget=preset.budget,
        seed=0,
        device="cpu",
        model_dir=tmp_path / "models",
    )
    result = tune(study, job, progress=False)
    return result


def test_refit_reuses_the_best_trials_model_and_refits_on_a_mismatch(tmp_path, steels_task, steels_fold):
    from studies.registry import get_model_class

    training, test = steels_fold
    tuning = _tuned_xgboost(tmp_path, training)
    assert Path(tuning.best_model_file).is_file() and len(list((tmp_path / "models").glob("*.fit.pkl"))) == 1
    plan = _plan(steels_task, "smoke", tmp_path)
    key = RunKey("matbench_steels", "xgboost", 0, 0, "smoke", len(training.y_train))
    cls = get_model_class("xgboost")

    kept = refit_and_score(cls, tuning, training, test, plan, key)
    assert kept.refit_reused
    saved, report = load_trial_fit(tuning.best_model_file, fit_identity(tuning.best_params, 0, training))
    np.testing.assert_array_equal(kept.y_pred, saved.predict(test.X))
    assert kept.report.stopped == report.stopped and kept.report.best_val_mae == tuning.best_value
    # The kept model is what a real refit of the same configuration, seed and rows gives.
    fresh = cls(dict(tuning.best_params), seed=0)
    fresh.fit(training.X_train, training.y_train, training.X_val, training.y_val)
    np.testing.assert_allclose(fresh.predict(test.X), kept.y_pred, rtol=1e-6)

    other_params = {**tuning.best_params, "max_depth": 3 if tuning.best_params["max_depth"] != 3 else 4}
    refit = refit_and_score(cls, dataclasses.replace(tuning, best_params=other_params), training, test, plan, key)
    assert not refit.refit_reused and refit.params["max_depth"] == other_params["max_depth"]
    other_seed = refit_and_score(cls, tuning, training, test, plan, dataclasses.replace(key, seed=1))
    assert not other_seed.refit_reused  # another seed is another fit
    gone = dataclasses.replace(tuning, best_model_file=str(tmp_path / "elsewhere" / "trial-0.fit.pkl"))
    assert not refit_and_score(cls, gone, training, test, plan, key).refit_reused  # e.g. another machine's trial


def test_the_refit_step_cap_replaces_the_trials_cap_of_its_group_only():
    quick = get_preset("quick")
    xgb, factor = quick.refit_configuration("xgboost", {"n_estimators": 2000, "learning_rate": 0.05})
    assert (xgb["n_estimators"], xgb["learning_rate"], factor) == (50_000, 0.05, 25.0)
    assert xgb["early_stopping_rounds"] == 50  # the rest of the full parameters, from the model's defaults
    lgbm, _ = quick.refit_configuration("lightgbm", {"n_estimators": 2000})
    assert lgbm["n_estimators"] == 50_000
    assert quick.refit_configuration("xgboost", {"n_estimators": 60_000})[1] == 1.0  # never lowered
    network, factor = quick.refit_configuration("irnet", {"max_epochs": 300})
    assert (network["max_epochs"], factor) == (300, 1.0)  # only the boosters' group is raised
    assert get_preset("smoke").refit_configuration("xgboost", {"n_estimators": 200})[0]["n_estimators"] == 200


def test_a_best_trial_stopped_at_its_step_cap_is_refitted_under_the_raised_cap(tmp_path, steels_task, steels_fold):
    """Trials boost 200 rounds at a learning rate too small to early-stop within them; the refit, allowed 2,000,
    goes on to its early stopping and is better on validation. A best trial that stopped early is kept."""
    from studies.registry import get_model_class

    training, test = steels_fold
    tuning = _tuned_xgboost(tmp_path, training, learning_rate=fixed(0.02))
    _saved, trial = load_trial_fit(tuning.best_model_file, fit_identity(tuning.best_params, 0, training))
    assert trial.stopped == "max_steps" and tuning.best_params["n_estimators"] == 200
    plan = _plan(steels_task, "smoke", tmp_path)
    raised = dataclasses.replace(plan, preset=plan.preset.with_changes(refit_step_caps={"boosters": 2_000}))
    key = RunKey("matbench_steels", "xgboost", 0, 0, "smoke", len(training.y_train))
    cls = get_model_class("xgboost")

    refit = refit_and_score(cls, tuning, training, test, raised, key)
    assert not refit.refit_reused and refit.params["n_estimators"] == 2_000
    assert refit.report.stopped == "early_stopping" and 200 < refit.report.best_step < 2_000
    assert refit.report.best_val_mae < tuning.best_value
    assert refit_and_score(cls, tuning, training, test, plan, key).refit_reused  # the unraised preset keeps it

    (tmp_path / "early").mkdir()
    early = _tuned_xgboost(tmp_path / "early", training, learning_rate=fixed(0.5))
    assert load_trial_fit(early.best_model_file, fit_identity(early.best_params, 0, training))[1].stopped == (
        "early_stopping"
    )
    kept = refit_and_score(cls, early, training, test, raised, key)
    assert kept.refit_reused and kept.report.best_val_mae == early.best_value


# ---------------------------------------------------------------------------------------- leaderboard ---


def _row(model: str, value: float, stopped: str, fold: int = 0, reused: bool = False) -> dict:
    """One finished parent run as reports.collect reads it (the columns the console leaderboard uses)."""
    return {"model": model, "fold": fold, "seed": 0, "train_rows": 100, schema.TEST_MAE: value,
            schema.METRIC_TRAIN_SECONDS: 10.0, schema.METRIC_INFERENCE_SECONDS: 1.0,
            schema.METRIC_TUNING_SECONDS: 20.0, "refit_stopped": stopped, "refit_reused": reused}  # fmt: skip


def test_total_seconds_count_a_kept_trial_once():
    # A kept trial's fit (train_seconds 10) is inside its tuning seconds (20): total = 20 + 1, refit 0.
    rows = [_row("irnet", 0.15, "early_stopping", reused=True), _row("irnet", 0.16, "early_stopping", 1, reused=True),
            _row("srnet", 0.15, "early_stopping", reused=True), _row("srnet", 0.16, "early_stopping", 1),
            _row("rf", 0.2, "completed"), _row("rf", 0.2, "completed", 1)]  # fmt: skip
    board = leaderboard(pd.DataFrame(rows)).set_index("model")
    assert board["total_s"].to_dict() == {"irnet": 2 * 21.0, "srnet": 21.0 + 31.0, "rf": 2 * 31.0}
    assert board["refit_s"].to_dict() == {"irnet": 0.0, "srnet": 5.0, "rf": 10.0}
    text = format_leaderboard(board.reset_index(), title="t").splitlines()
    line = {ln.split()[1]: ln for ln in text[3:]}
    assert line["irnet"].endswith("early_stopping (trial kept)") and line["srnet"].endswith("(trial kept 1/2)")
    assert "kept" not in line["rf"] and line["irnet"].split()[6:8] == ["0.0", "42"]


def test_leaderboard_marks_scores_whose_refit_hit_the_time_cap():
    rows = [_row("irnet", 0.15, "time_limit"), _row("irnet", 0.17, "early_stopping", 1),
            _row("xgboost", 0.149, "early_stopping"), _row("xgboost", 0.151, "early_stopping", 1),
            _row("plain", 0.2, "time_limit"), _row("plain", 0.2, "time_limit", 1)]  # fmt: skip
    board = leaderboard(pd.DataFrame(rows))
    assert board.set_index("model")["cut_short"].to_dict() == {"xgboost": 0, "irnet": 1, "plain": 2}
    text = format_leaderboard(board, title="t").splitlines()
    line = {ln.split()[1]: ln for ln in text[3:]}
    assert "cut short 1/2" in line["irnet"] and line["irnet"].endswith("early_stopping,time_limit")
    assert "cut short" in line["plain"] and "2/2" not in line["plain"]
    assert "cut short" not in line["xgboost"] and line["xgboost"].endswith("early_stopping")


# ------------------------------------------------------------------------------------ end to end, resume ---


def _client(out: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")


def _parents(out: Path) -> list:
    client = _client(out)
    experiment = client.get_experiment_by_name("matbench_steels")
    if experiment is None:
        return []
    return list(client.search_runs([experiment.experiment_id], filter_string=f"tags.run_kind = '{schema.KIND_FINAL}'"))


def _done_parents(db: Path, train_size: str) -> int:
    """Done parent runs of one size, read with sqlite3 (an MLflow client would race the run's table setup)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(
                "select count(*) from tags a join tags b on a.run_uuid = b.run_uuid where a.key = ? and a.value = ? "
                "and b.key = ? and b.value = ?",
                (schema.TAG_TRAIN_SIZE, train_size, schema.TAG_STATUS, schema.STATUS_DONE),
            ).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def test_killed_scaling_run_resumes_and_tags_every_parent_with_its_train_size(capsys, tmp_path):
    out = tmp_path / "out"
    args = ["--task", "matbench_steels", "--preset", "smoke", "--models", "dummy,rf", "--folds", "0",
            "--trials", "2", "--train-sizes", "100,150,all", "--out", str(out), "--no-progress"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.run", *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    try:  # kill -9 once the smallest size is done and the next one started
        while not _done_parents(out / "mlflow.db", "150"):
            assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no size finished in time"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    before = {p.info.run_id: p.data.tags[schema.TAG_TRAIN_SIZE] for p in _parents(out)
              if p.data.tags.get(schema.TAG_STATUS) == schema.STATUS_DONE}  # fmt: skip
    assert 3 <= len(before) < 6

    capsys.readouterr()
    code = main_guard(main, args)
    stdout = capsys.readouterr().out
    assert code == 0
    assert "100 training rows" in stdout and "224 training rows" in stdout
    parents = _parents(out)
    done = {p.info.run_id: p for p in parents if p.data.tags.get(schema.TAG_STATUS) == schema.STATUS_DONE}
    assert len(parents) == len(done) == 6  # 2 models x 3 sizes, none duplicated
    assert set(before) <= set(done)  # finished sizes were skipped, not redone
    got = sorted((p.data.tags[schema.TAG_MODEL], p.data.tags[schema.TAG_TRAIN_SIZE]) for p in parents)
    assert got == sorted((m, s) for m in ("dummy", "rf") for s in ("100", "150", "224"))
    for parent in parents:
        tags, metrics = parent.data.tags, parent.data.metrics
        assert metrics[schema.METRIC_N_TRAIN] == int(tags[schema.TAG_TRAIN_SIZE])
        assert metrics[schema.METRIC_N_TEST] == 63  # the same full test part at every size
        assert tags[schema.TAG_MAX_TRAIN_ROWS] == (
            "all" if tags[schema.TAG_TRAIN_SIZE] == "224" else tags[schema.TAG_TRAIN_SIZE]
        )
        assert tags[schema.TAG_REFIT_REUSED] in ("true", "false") and tags[schema.TAG_REFIT_STOPPED]
    assert not list((out / "trial_models").rglob("*.pkl"))  # kept trial models go once their parent is done
