"""``python -m benchmarks.run``: bad input, the end-to-end smoke run, MLflow contents, --data-file, and
kill-and-resume. Runs use real data (matbench_steels, official folds) in temporary output folders."""

from __future__ import annotations

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
from optuna.trial import TrialState

from benchmarks.cli import main_guard
from benchmarks.contract import Model
from benchmarks.run import main
from studies import schema
from studies.coordination import ATTR_INTERRUPTED, ATTR_RETRY_OF
from studies.tuning import counts_toward_budget

REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """Run the command in this process (saves the seconds of importing torch and mlflow again)."""
    capsys.readouterr()
    code = main_guard(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _client(out: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")


def _runs(out: Path, task: str, kind: str) -> list:
    client = _client(out)
    experiment = client.get_experiment_by_name(task)
    assert experiment is not None, f"no experiment {task}"
    return list(
        client.search_runs([experiment.experiment_id], filter_string=f"tags.run_kind = '{kind}'", max_results=5000)
    )


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory) -> Path:
    """One output folder for the tests that only need stores to exist (creating MLflow's tables takes seconds)."""
    return tmp_path_factory.mktemp("run-out")


# ---------------------------------------------------------------------------------------------- bad input ---


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "irnet,resnet"], "unknown model 'resnet'"),
        (["--preset", "smoke", "--trials", "0"], "--trials must be at least 1"),
        (["--folds", "0,x"], "--folds takes comma-separated whole numbers"),
        (["--featurizer", "magpi"], "unknown featurizer 'magpi'"),
        (["--tracking-uri", "http://127.0.0.1:9"], "cannot be reached"),
        (["--tracking-uri", "file:///tmp/mlruns"], "file store"),
        (["--storage", "postgresql://bench:secret@127.0.0.1:9/optuna"], "cannot open Optuna storage"),
        (["--folds", "0,5"], "matbench_steels has folds 0..4; fold 5 does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(capsys, shared_out, args, message):
    code, _out, err = run_main(capsys, "--task", "matbench_steels", "--out", str(shared_out), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "secret" not in err  # a storage password never reaches the terminal
    # Nothing was tuned: no study exists in the output folder's storage.
    if (shared_out / "optuna.db").exists():
        assert optuna.get_all_study_names(storage=f"sqlite:///{shared_out / 'optuna.db'}") == []


def test_unknown_model_fails_before_the_output_folder_is_made(capsys, tmp_path):
    code, _, err = run_main(capsys, "--task", "matbench_steels", "--models", "xgb", "--out", str(tmp_path / "never"))
    assert code == 2 and "valid models: irnet, srnet, plain, rf, xgboost, lightgbm" in err
    assert not (tmp_path / "never").exists()


# Each: the flag as given, and the words the one line must hold (the flag's name and the fix). Nothing is made.
ROUGH_EDGES = {
    "empty models": (["--models", ""], ["--models is empty", "'all'"]),
    "only commas": (["--models", " , "], ["--models is empty"]),
    "negative timeout": (["--timeout", "-5"], ["--timeout must be a positive number of seconds, got -5"]),
    "nan timeout": (["--timeout", "nan"], ["--timeout must be a positive number"]),
    "zero fit timeout": (["--fit-timeout", "0"], ["--fit-timeout must be a positive number of seconds, got 0"]),
    "negative trials": (["--trials", "-1"], ["--trials must be at least 1, got -1"]),
    "out is a file": (["--out", "{file}"], ["--out", "is an existing file, not a folder"]),
    "out under a file": (["--out", "{file}/sub"], ["--out", "cannot be created", "is a file"]),
    "data file is a folder": (["--data-file", "{dir}"], ["--data-file", "is a directory"]),
}


@pytest.mark.parametrize("args, words", ROUGH_EDGES.values(), ids=ROUGH_EDGES.keys())
def test_rough_edges_name_the_flag_and_exit_2_before_any_work(capsys, tmp_path, args, words):
    (tmp_path / "results.txt").write_text("not a folder\n")
    (tmp_path / "data").mkdir()
    args = [a.format(file=tmp_path / "results.txt", dir=tmp_path / "data") for a in args]
    task = [] if "--data-file" in args else ["--task", "matbench_steels"]
    out = [] if "--out" in args else ["--out", str(tmp_path / "never")]
    code, _, err = run_main(capsys, *task, *out, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert all(word in lines[0] for word in words), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "results.txt"]  # no store, no folder
    assert (tmp_path / "results.txt").read_text() == "not a folder\n"


def test_cuda_without_a_gpu_is_a_usage_error(capsys, shared_out):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run_main(capsys, "--task", "matbench_steels", "--device", "cuda", "--out", str(shared_out))
    assert code == 2 and "no CUDA GPU" in err


# -------------------------------------------------------------------------------------------- end to end ---


def test_smoke_run_records_everything_and_a_rerun_skips_it(capsys, shared_out, steels_fold):
    out = shared_out
    args = [
        "--task",
        "matbench_steels",
        "--preset",
        "smoke",
        "--models",
        "irnet,rf",
        "--folds",
        "0",
        "--trials",
        "2",
        "--timeout",
        "600",
        "--fit-timeout",
        "600",
        "--out",
        str(out),
    ]  # fmt: skip (trials and epochs stop it)
    code, stdout, err = run_main(capsys, *args)
    assert code == 0, err
    assert "rank" in stdout and "irnet" in stdout and "rf" in stdout

    client = _client(out)
    experiment = client.get_experiment_by_name("matbench_steels")
    assert experiment.artifact_location == (out / "mlartifacts" / "matbench_steels").resolve().as_uri()
    parents = _runs(out, "matbench_steels", schema.KIND_FINAL)
    trials = _runs(out, "matbench_steels", schema.KIND_TRIAL)
    assert sorted(p.data.tags[schema.TAG_MODEL] for p in parents) == ["irnet", "rf"]
    training, test = steels_fold

    for parent in parents:
        tags, metrics = parent.data.tags, parent.data.metrics
        model = tags[schema.TAG_MODEL]
        assert tags[schema.TAG_STATUS] == schema.STATUS_DONE and parent.info.status == "FINISHED"
        assert (tags[schema.TAG_TASK], tags[schema.TAG_FOLD], tags[schema.TAG_SEED], tags[schema.TAG_PRESET]) == (
            "matbench_steels", "0", "0", "smoke")  # fmt: skip
        for tag in (schema.TAG_CODE_VERSION, schema.TAG_DATA_SHA256, schema.TAG_DEVICE, "pkg.torch", "pkg.optuna"):
            assert tags.get(tag), tag
        assert tags[schema.TAG_FEATURIZER] == "magpie" and tags[schema.TAG_COMPOSITION_ONLY] == "false"
        assert set(schema.TEST_METRICS) <= set(metrics)
        assert metrics[schema.METRIC_N_TEST] == len(test.y) and metrics[schema.METRIC_N_TRAIN] == len(training.y_train)
        assert metrics[schema.METRIC_N_TRIALS] == 2

        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert artifacts == {schema.ARTIFACT_PREDICTIONS, schema.ARTIFACT_PARITY, schema.ARTIFACT_CONVERGENCE,
                             schema.ARTIFACT_MODEL, schema.ARTIFACT_BEST_PARAMS,
                             schema.ARTIFACT_VAL_PREDICTIONS}  # fmt: skip
        folder = Path(client.download_artifacts(parent.info.run_id, "", str(out / "download" / model)))
        predictions = pd.read_csv(folder / schema.ARTIFACT_PREDICTIONS)
        assert list(predictions.columns) == ["id", "y_true", "y_pred"]
        assert predictions["id"].tolist() == test.ids.tolist()
        np.testing.assert_allclose(predictions["y_true"], test.y)
        mae = float(np.mean(np.abs(predictions["y_pred"] - predictions["y_true"])))
        assert mae == pytest.approx(metrics["test_mae"], rel=1e-9)
        fitted = Model.load(folder / schema.ARTIFACT_MODEL / "artifacts" / "model.pkl")  # inside the MLflow model
        np.testing.assert_allclose(fitted.predict(test.X), predictions["y_pred"], rtol=1e-5, atol=1e-6)

        curve = client.get_metric_history(parent.info.run_id, schema.CURVE_VAL)
        assert len(curve) >= 3 and len({m.step for m in curve}) == len(curve)

        mine = [t for t in trials if t.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(int(t.data.tags[schema.TAG_TRIAL_NUMBER]) for t in mine) == [0, 1]
        defaults = [t for t in mine if t.data.tags.get(schema.TAG_TRIAL_DEFAULTS) == "true"]
        assert [t.data.tags[schema.TAG_TRIAL_NUMBER] for t in defaults] == ["0"]
        for trial in mine:
            assert trial.data.tags[schema.TAG_TRIAL_STATE] in ("COMPLETE", "PRUNED", "FAIL")
            assert not [m for m in trial.data.metrics if m.startswith("test_")]  # trials never see the test part
            assert trial.data.params  # the configuration tried
            if model == "irnet" and trial.data.tags[schema.TAG_TRIAL_STATE] == "COMPLETE":
                assert len(client.get_metric_history(trial.info.run_id, schema.CURVE_VAL)) >= 2

    results = pd.read_csv(out / "results_matbench_steels_smoke.csv")
    assert set(results["metric"]) == {"mae", "rmse", "r2", "max_error"} and len(results) == 8

    # The same command again: everything is done, nothing new is run or recorded.
    code, stdout_again, err = run_main(capsys, *args)
    assert code == 0, err
    assert len(_runs(out, "matbench_steels", schema.KIND_FINAL)) == 2
    assert len(_runs(out, "matbench_steels", schema.KIND_TRIAL)) == len(trials)
    assert stdout_again.splitlines()[:6] == stdout.splitlines()[:6]  # the same leaderboard


def test_data_file_task_runs(capsys, shared_out, steels_task, tmp_path):
    data = tmp_path / "my_steels.csv"
    pd.DataFrame({"composition": steels_task.formulas, "yield": steels_task.targets}).to_csv(data, index=False)
    code, stdout, err = run_main(capsys, "--data-file", str(data), "--formula-column", "composition",
                                 "--target-column", "yield", "--unit", "MPa", "--preset", "smoke",
                                 "--models", "dummy,lightgbm", "--trials", "2", "--out", str(shared_out))  # fmt: skip
    assert code == 0, err
    parents = _runs(shared_out, "my_steels", schema.KIND_FINAL)
    assert sorted(p.data.tags[schema.TAG_MODEL] for p in parents) == ["dummy", "lightgbm"]
    assert all("test_mae" in p.data.metrics for p in parents)
    board = {line.split()[1]: float(line.split()[2]) for line in stdout.splitlines() if line[:4].strip().isdigit()}
    assert board["lightgbm"] < board["dummy"]  # a real model beats the constant


# ------------------------------------------------------------------------------------------ kill, resume ---


def _counted(storage: str, study_name: str) -> list:
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [t for t in study.get_trials() if counts_toward_budget(t)]


def _trial_states(db: Path) -> dict[int, str]:
    """Trial number -> state in an Optuna sqlite file, read-only (polling must not create or lock the stores)."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return dict(connection.execute("SELECT number, state FROM trials").fetchall())
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return {}


def test_killed_run_resumes_without_duplicates_or_repeats(capsys, tmp_path):
    out = tmp_path / "out"
    args = ["--task", "matbench_steels", "--preset", "smoke", "--models", "rf", "--folds", "0",
            "--trials", "8", "--out", str(out)]  # fmt: skip
    storage = f"sqlite:///{out / 'optuna.db'}"
    study_name = "matbench_steels/rf/fold0/seed0/smoke/n224"
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.run", *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    try:
        # Kill in the middle of a trial, once two have finished.
        while True:
            states = list(_trial_states(out / "optuna.db").values())
            if sum(s in ("COMPLETE", "PRUNED") for s in states) >= 2 and "RUNNING" in states:
                break
            assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    before = {t.number: (t.state, t.value, t.params) for t in _counted(storage, study_name)}
    cut_short = [n for n, state in _trial_states(out / "optuna.db").items() if state == "RUNNING"]
    assert 2 <= len(before) < 8

    code, _, err = run_main(capsys, *args)
    assert code == 0, err

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials()
    counted = [t for t in trials if counts_toward_budget(t)]
    assert len(counted) == 8
    for number, (state, value, params) in before.items():  # finished trials kept as they were, not lost
        assert (trials[number].state, trials[number].value, trials[number].params) == (state, value, params)
    assert not [t for t in trials if t.user_attrs.get(ATTR_RETRY_OF) in before]  # and not repeated
    assert [t.number for t in trials if t.user_attrs.get(ATTR_INTERRUPTED)] == cut_short
    for number in cut_short:  # the trial the kill cut short runs again, once, with the parameters it had drawn
        retries = [r for r in trials if r.user_attrs.get(ATTR_RETRY_OF) == number]
        assert len(retries) == 1 and trials[number].params.items() <= retries[0].params.items()
    assert not [t for t in trials if t.state == TrialState.RUNNING]

    parents = _runs(out, "matbench_steels", schema.KIND_FINAL)
    assert len(parents) == 1 and parents[0].data.tags[schema.TAG_STATUS] == schema.STATUS_DONE
    trial_runs = [r for r in _runs(out, "matbench_steels", schema.KIND_TRIAL)
                  if r.data.tags.get("trial_interrupted") != "true"]  # fmt: skip
    numbers = [int(r.data.tags[schema.TAG_TRIAL_NUMBER]) for r in trial_runs]
    assert len(numbers) == len(set(numbers)) == 8
    assert set(numbers) == {t.number for t in counted}


def test_a_training_row_cap_on_a_matbench_task_is_called_out(capsys, caplog, tmp_path):
    # Matbench trains on every training row: a cap that binds (quick's 10,000 on matbench_perovskites) makes runs
    # that are no Matbench record, and the run says so at its start (the report then writes no submission).
    base = ["--task", "matbench_steels", "--preset", "smoke", "--models", "dummy", "--folds", "0", "--out",
            str(tmp_path / "out")]  # fmt: skip
    with caplog.at_level("WARNING", logger="benchmarks.run"):
        assert run_main(capsys, *base, "--max-train-rows", "100")[0] == 0
        assert run_main(capsys, *base)[0] == 0  # smoke's 2,000 rows do not bind on steels' 249 or so
    warnings = [r.getMessage() for r in caplog.records if r.name == "benchmarks.run" and r.levelname == "WARNING"]
    assert warnings == [
        "matbench_steels: training rows capped at 100 per fold by preset smoke; Matbench trains on every training "
        "row, so the report writes no Matbench submission for these runs (--max-train-rows 0 for all)"
    ]


# ------------------------------------------------------------------------------------------------- slow ---


@pytest.mark.slow
def test_full_smoke_preset_leaves_a_parent_run_per_model_and_fold(tmp_path):
    """The issue's done-when: `python -m benchmarks.run --task matbench_steels --preset smoke`."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--task", "matbench_steels", "--preset", "smoke",
                             "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = _client(out)
    parents = _runs(out, "matbench_steels", schema.KIND_FINAL)
    got = sorted((p.data.tags[schema.TAG_MODEL], int(p.data.tags[schema.TAG_FOLD])) for p in parents)
    assert got == sorted((m, f) for m in ("irnet", "srnet", "plain", "rf", "xgboost", "lightgbm") for f in range(5))
    for parent in parents:
        assert "test_mae" in parent.data.metrics and parent.data.tags[schema.TAG_STATUS] == schema.STATUS_DONE
        if parent.data.tags[schema.TAG_MODEL] in ("irnet", "srnet", "plain"):
            assert len(client.get_metric_history(parent.info.run_id, schema.CURVE_VAL)) >= 3


@pytest.mark.slow
def test_two_processes_with_the_same_command_share_the_studies(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "benchmarks.run", "--task", "matbench_steels", "--preset", "smoke", "--models", "rf",
            "--folds", "0", "--trials", "10", "--out", str(out)]  # fmt: skip
    processes = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]  # fmt: skip
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    study = optuna.load_study(
        study_name="matbench_steels/rf/fold0/seed0/smoke/n224", storage=f"sqlite:///{out / 'optuna.db'}"
    )
    assert len([t for t in study.get_trials() if counts_toward_budget(t)]) == 10
    parents = _runs(out, "matbench_steels", schema.KIND_FINAL)
    assert len(parents) == 1
    assert len(_client(out).get_metric_history(parents[0].info.run_id, "test_mae")) == 1  # scored once


def test_classification_tasks_are_refused_before_any_work(tmp_path, capsys):
    from benchmarks.cli import main_guard

    code = main_guard(main, ["--task", "matbench_glass", "--models", "dummy", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "classification task (metric rocauc)" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("results_*"))  # no run was made
