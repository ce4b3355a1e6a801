"""Every parent run logs its fitted model as an MLflow pyfunc model that takes formulas: MLflow's own loader and
its command line reproduce the run's recorded test predictions exactly, and bad input is one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from studies import formula_model, schema
from studies.formula_model import FORMULA_COLUMN, FeaturizerMismatch, model_uri


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A smoke benchmark of a network and a booster on matbench_steels fold 0."""
    from benchmarks.run import main

    out = tmp_path_factory.mktemp("formula-model")
    args = "--task matbench_steels --preset smoke --models irnet,xgboost --folds 0 --no-progress".split()
    assert main([*args, "--out", str(out)]) == 0
    return f"sqlite:///{out / 'mlflow.db'}"


def _runs(uri: str) -> dict[str, str]:
    """model -> parent run id."""
    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}'")
    return {r.data.tags[schema.TAG_MODEL]: r.info.run_id for r in runs}


def _recorded(uri: str, run_id: str, folder: Path, steels_task) -> pd.DataFrame:
    """The run's predictions.csv with each test row's formula."""
    path = mlflow.MlflowClient(uri).download_artifacts(run_id, schema.ARTIFACT_PREDICTIONS, str(folder))
    recorded = pd.read_csv(path, float_precision="round_trip")  # the written repr, read back exactly
    formulas = dict(zip(steels_task.ids, steels_task.formulas, strict=True))
    return recorded.assign(formula=[formulas[i] for i in recorded["id"]])


@pytest.fixture
def tracking(store, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    mlflow.set_tracking_uri(store)
    return store


def test_the_logged_model_predicts_the_runs_test_rows_from_their_formulas(tracking, tmp_path, steels_task):
    runs = _runs(tracking)
    assert set(runs) == {"irnet", "xgboost"}
    for model, run_id in runs.items():
        recorded = _recorded(tracking, run_id, tmp_path / model, steels_task)
        loaded = mlflow.pyfunc.load_model(model_uri(run_id))
        assert [c.name for c in loaded.metadata.get_input_schema().inputs] == [FORMULA_COLUMN]
        predicted = loaded.predict(recorded[[FORMULA_COLUMN]])
        np.testing.assert_array_equal(np.asarray(predicted), recorded["y_pred"].to_numpy())  # bit for bit


def test_mlflow_models_predict_on_the_command_line_gives_the_recorded_predictions(tracking, tmp_path, steels_task):
    run_id = _runs(tracking)["irnet"]
    recorded = _recorded(tracking, run_id, tmp_path, steels_task)
    recorded[[FORMULA_COLUMN]].to_csv(tmp_path / "new.csv", index=False)
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow_cli, "models", "predict", "-m", model_uri(run_id), "-i", str(tmp_path / "new.csv"),
               "-t", "csv", "--env-manager", "local", "-o", str(tmp_path / "out.json")]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": tracking}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads((tmp_path / "out.json").read_text())["predictions"]
    np.testing.assert_array_equal(np.asarray(predictions, dtype=np.float64), recorded["y_pred"].to_numpy())

    # MLflow's JSON serving format carries the params: NaN for a formula that cannot be read.
    records = {"dataframe_records": [{FORMULA_COLUMN: "Xx2O3"}, {FORMULA_COLUMN: recorded[FORMULA_COLUMN][0]}],
               "params": {"on_invalid": "nan"}}  # fmt: skip
    (tmp_path / "new.json").write_text(json.dumps(records))
    command[command.index("-i") + 1 : command.index("-t") + 2] = [str(tmp_path / "new.json"), "-t", "json"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": tracking}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = json.loads((tmp_path / "out.json").read_text())["predictions"]
    assert first is None or np.isnan(first)
    assert second == recorded["y_pred"][0] or np.isclose(second, recorded["y_pred"][0], rtol=1e-6)


def test_a_bad_formula_names_its_row_or_gives_nan_when_asked(tracking):
    loaded = mlflow.pyfunc.load_model(model_uri(_runs(tracking)["xgboost"]))
    frame = pd.DataFrame({FORMULA_COLUMN: ["Fe0.7Cr0.2Ni0.1", "Xx2O3", "Fe0.8C0.2"]})
    with pytest.raises(ValueError, match=r"row 1: formula 'Xx2O3' cannot be featurised"):
        loaded.predict(frame)
    values = loaded.predict(frame, params={"on_invalid": "nan"})
    assert np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()
    assert values[0] == loaded.predict(frame.iloc[[0]])[0]


def test_a_table_without_the_formula_column_is_refused_naming_it(tracking):
    loaded = mlflow.pyfunc.load_model(model_uri(_runs(tracking)["xgboost"]))
    with pytest.raises(Exception, match="formula"):
        loaded.predict(pd.DataFrame({"composition": ["Fe0.7Cr0.2Ni0.1"]}))


def test_a_model_from_another_featuriser_version_is_refused_with_the_version_it_needs(tracking, monkeypatch):
    run_id = _runs(tracking)["xgboost"]
    needed = formula_model.featurizer_version("magpie")
    monkeypatch.setattr(formula_model, "featurizer_version", lambda name: "magpie-numpy-tableother-v9")
    with pytest.raises(
        FeaturizerMismatch, match=f"needs features {needed} and this installation computes magpie-numpy-tableother-v9"
    ):
        mlflow.pyfunc.load_model(model_uri(run_id))
