"""Post-hoc ensembles: Caruana's greedy selection with replacement on the validation rows, scored once on test; every
parent run records its validation predictions (MLflow and export); an export without them gets no ensemble, with a
note; and an ensemble is an MLflow model that takes formulas and reproduces its recorded test predictions."""

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

from reports import build, export
from reports.collect import Collected, collect
from reports.ensembles import (
    KIND_ENSEMBLE,
    NO_SEED,
    PREFIX,
    TAG_ENSEMBLE_MEMBERS,
    build_ensembles,
)
from studies import schema
from studies.ensemble_model import EnsembleMemberError
from studies.ensembling import combine, greedy_selection, weights_of
from studies.formula_model import FORMULA_COLUMN
from studies.tracking import ARTIFACT_VAL_PREDICTIONS

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------- the selection itself


def test_greedy_selection_starts_with_the_best_model_and_adds_with_replacement():
    y = np.zeros(4)
    good = np.array([0.1, -0.1, 0.1, -0.1])  # MAE 0.1
    bias = np.array([-0.1, 0.1, -0.1, 0.1])  # MAE 0.1, errs the other way: the mean of the two is exact
    bad = np.array([1.0, 1.0, 1.0, 1.0])
    counts, score = greedy_selection(np.stack([good, bias, bad]), y, rounds=4)
    assert counts.tolist() == [1, 1, 0] and score == 0.0  # best round kept: the first exact mean (round 2)
    counts, score = greedy_selection(np.stack([bad, good]), y, rounds=3)
    assert counts.tolist() == [0, 1] and score == pytest.approx(0.1)  # one model alone may be the best ensemble
    assert weights_of(np.array([3, 1])).tolist() == [0.75, 0.25]
    # Ties go to the earlier model; with replacement the same model may be chosen every round.
    counts, _ = greedy_selection(np.stack([good, good.copy()]), y, rounds=5)
    assert counts.tolist() == [1, 0]


def test_weights_are_selection_counts_and_the_mean_is_summed_in_member_order():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    preds = np.stack([y + rng.normal(scale=s, size=200) for s in (0.3, 0.5, 0.8)])
    counts, score = greedy_selection(preds, y)
    weights = weights_of(counts)
    assert weights.sum() == pytest.approx(1.0) and (counts >= 0).all()
    assert score <= np.abs(preds - y).mean(axis=1).min()  # never worse than the best single model on these rows
    assert np.abs(combine(list(weights), list(preds)) - y).mean() == pytest.approx(score)
    with pytest.raises(ValueError):
        combine([1.0], [preds[0], preds[1]])


def _collected(val_runs: set[str]) -> Collected:
    """Two networks and two trees at one key, and a second seed of one network; validation rows for ``val_runs``."""
    rng = np.random.default_rng(1)
    y_val, y_test = rng.normal(size=50), rng.normal(size=40)
    runs = [("irnet", "network", 0), ("srnet", "network", 0), ("rf", "tree", 0), ("xgboost", "tree", 0),
            ("irnet", "network", 1)]  # fmt: skip
    finals, val, test = [], [], []
    for i, (model, family, seed) in enumerate(runs):
        run_id = f"r{i}"
        finals.append({"run_id": run_id, "task": "formation_energy", "model": model, "fold": 0, "seed": seed,
                       "train_size": 1000, "family": family, "model_uri": f"runs:/{run_id}/model",
                       "featurizer": "magpie"})  # fmt: skip
        noise = 0.2 + 0.1 * i
        val.append(pd.DataFrame({"run_id": run_id, "id": [f"v{j}" for j in range(50)], "y_true": y_val,
                                 "y_pred": y_val + rng.normal(scale=noise, size=50)}))  # fmt: skip
        test.append(pd.DataFrame({"run_id": run_id, "task": "formation_energy", "model": model, "fold": 0,
                                  "seed": seed, "train_size": 1000, "id": [f"t{j}" for j in range(40)],
                                  "y_true": y_test, "y_pred": y_test + rng.normal(scale=noise, size=40)}))  # fmt: skip
    val_frame = pd.concat(val, ignore_index=True)
    return Collected(
        tracking_uri="test", finals=pd.DataFrame(finals), curves=pd.DataFrame(), trials=pd.DataFrame(),
        predictions=pd.concat(test, ignore_index=True), skipped=(),
        val_predictions=val_frame[val_frame["run_id"].isin(val_runs)].reset_index(drop=True),
    )  # fmt: skip


def test_every_library_of_a_key_is_selected_on_validation_rows_and_scored_once_on_test():
    collected = _collected({"r0", "r1", "r2", "r3", "r4"})
    made = build_ensembles(collected)
    names = sorted((e.name, e.seed) for e in made.ensembles)
    # seed 0: all four models, the two networks, the two trees; seed 1 has one model: none; irnet's two seeds averaged.
    assert names == [("ensemble-all", 0), ("ensemble-networks", 0), ("ensemble-trees", 0), ("irnet-seedavg", NO_SEED)]
    assert not made.notes
    preds = collected.predictions
    for e in made.ensembles:
        assert sum(m.weight for m in e.members) == pytest.approx(1.0)
        rows = made.predictions[made.predictions["run_id"] == e.run_id].sort_values("id")
        members = [preds[preds["run_id"] == m.run_id].sort_values("id") for m in e.members]
        # float32, as an export keeps them: the same ensemble from a store and from its export.
        expected = combine([m.weight for m in e.members],
                           [np.float32(p["y_pred"].to_numpy()).astype(np.float64) for p in members])  # fmt: skip
        np.testing.assert_array_equal(rows["y_pred"].to_numpy(), expected)
        assert e.test["mae"] == pytest.approx(np.abs(rows["y_pred"] - rows["y_true"]).mean())
        if e.kind != "seedavg":
            assert e.val_mae <= e.best_single_val_mae + 1e-12  # selection never loses to its best member on validation
    trees = next(e for e in made.ensembles if e.name == PREFIX + "trees")
    assert {m.model for m in trees.members} <= {"rf", "xgboost"}
    average = next(e for e in made.ensembles if e.kind == "seedavg")
    assert [m.weight for m in average.members] == [0.5, 0.5] and [m.seed for m in average.members] == [0, 1]


def test_a_run_without_validation_predictions_is_left_out_with_a_note():
    made = build_ensembles(_collected({"r0", "r2", "r3"}))  # srnet's run recorded none
    names = {e.name for e in made.ensembles}
    assert names == {"ensemble-all", "ensemble-trees", "irnet-seedavg"}  # one network left: no network ensemble
    assert "srnet" not in {m.model for e in made.ensembles if e.kind != "seedavg" for m in e.members}
    (note,) = made.notes["formation_energy"]
    assert "no validation predictions recorded" in note and "srnet fold 0 seed 0" in note and "run r1" in note
    none = build_ensembles(_collected(set()))
    assert {e.kind for e in none.ensembles} == {"seedavg"}  # a seed average needs no validation rows
    assert "No post-hoc ensemble" in none.notes["formation_energy"][0]


def test_an_export_of_format_version_1_reads_as_runs_without_validation_predictions():
    collected = export.load_export(REPO / "docs" / "results" / "quick-equal-rounds" / "export")
    assert json.loads((REPO / "docs/results/quick-equal-rounds/export" / export.MANIFEST).read_text())["version"] == 1
    assert collected.val_predictions.empty
    made = build_ensembles(collected)
    assert not made.ensembles and "No post-hoc ensemble" in made.notes["formation_energy"][0]


# --------------------------------------------------------------------------------- recorded, exported, read


def test_every_parent_run_records_its_validation_predictions_and_the_export_keeps_them(smoke_store, tmp_path):
    client = mlflow.MlflowClient(smoke_store)
    collected = collect(smoke_store)
    assert set(collected.val_predictions["run_id"]) == set(collected.finals["run_id"])
    for run_id in collected.finals["run_id"]:
        local = client.download_artifacts(run_id, ARTIFACT_VAL_PREDICTIONS, str(tmp_path / run_id))
        frame = pd.read_parquet(local)
        assert list(frame.columns) == ["id", "y_true", "y_pred"] and frame["y_pred"].dtype == np.float32
        assert not frame["id"].duplicated().any() and len(frame) > 0
        assert not set(frame["id"]) & set(collected.predictions.loc[collected.predictions["run_id"] == run_id, "id"])
    assert export.main(["--tracking-uri", smoke_store, "--out", str(tmp_path / "export")]) == 0
    manifest = json.loads((tmp_path / "export" / export.MANIFEST).read_text())
    assert manifest["version"] == export.VERSION == 2 and "val_predictions.parquet" in manifest["files"]
    back = export.load_export(tmp_path / "export")
    key = ["run_id", "id"]
    pd.testing.assert_frame_equal(back.val_predictions.sort_values(key).reset_index(drop=True),
                                  collected.val_predictions.sort_values(key).reset_index(drop=True))  # fmt: skip
    # The report from the store and from its export: the same ensembles, the same bytes of ensembles.csv.
    from_store, from_export = build.report_of(collected), build.report_of(back)
    assert from_store.ensembles.ensembles and from_store.files["ensembles.csv"] == from_export.files["ensembles.csv"]
    # Imported back into MLflow, a run keeps its validation predictions.
    uri = f"sqlite:///{tmp_path / 'imported' / 'mlflow.db'}"
    assert export.main(["--import", str(tmp_path / "export"), "--tracking-uri", uri]) == 0
    again = collect(uri)
    pd.testing.assert_frame_equal(again.val_predictions.sort_values(key).reset_index(drop=True),
                                  collected.val_predictions.sort_values(key).reset_index(drop=True))  # fmt: skip


# ---------------------------------------------------------------------------------- an ensemble as a model


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """A smoke benchmark of two trees with two seeds on matbench_steels fold 0 (ensembles of both trees at each
    seed, and each tree's seed average), and what it printed."""
    import contextlib
    import io

    from benchmarks.run import main

    out = tmp_path_factory.mktemp("ensembles")
    args = "--task matbench_steels --preset smoke --models xgboost,rf --folds 0 --seeds 0,1 --no-progress".split()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*args, "--out", str(out)]) == 0
    return f"sqlite:///{out / 'mlflow.db'}", printed.getvalue()


def _ensemble_runs(uri: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, filter_string=f"tags.{schema.TAG_KIND} = '{KIND_ENSEMBLE}'"))


def _recorded(uri: str, run_id: str, folder: Path, steels_task) -> pd.DataFrame:
    path = mlflow.MlflowClient(uri).download_artifacts(run_id, schema.ARTIFACT_PREDICTIONS, str(folder))
    recorded = pd.read_csv(path, float_precision="round_trip")
    formulas = dict(zip(steels_task.ids, steels_task.formulas, strict=True))
    return recorded.assign(formula=[formulas[i] for i in recorded["id"]])


@pytest.fixture
def tracking(store, monkeypatch) -> str:
    uri = store[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


def test_the_console_prints_the_best_ensembles_mlflow_model(store):
    uri, printed = store
    runs = _ensemble_runs(uri)
    assert {r.data.tags[schema.TAG_MODEL] for r in runs} == {"ensemble-all", "xgboost-seedavg", "rf-seedavg"}
    line = next(line for line in printed.splitlines() if line.startswith("best post-hoc ensemble by validation MAE"))
    assert "ensemble-all" in line and "test MAE" in line
    uris = [line.split(": ", 1)[1] for line in printed.splitlines() if line.strip().startswith("MLflow model (fold")]
    assert len(uris) == 2 and set(uris) <= {r.data.tags[schema.TAG_MODEL_URI] for r in runs}  # one per seed
    # Recorded once: the same command again finds every ensemble recorded, with the same members and weights.
    from benchmarks.run import main

    args = ["--task", "matbench_steels", "--preset", "smoke", "--models", "xgboost,rf", "--folds", "0", "--seeds",
            "0,1", "--no-progress", "--out", str(Path(uri.removeprefix("sqlite:///")).parent)]  # fmt: skip
    assert main(args) == 0
    assert sorted(r.info.run_id for r in _ensemble_runs(uri)) == sorted(r.info.run_id for r in runs)


def test_the_ensembles_mlflow_model_reproduces_its_recorded_predictions_from_formulas(tracking, tmp_path,
                                                                                        steels_task):  # fmt: skip
    runs = _ensemble_runs(tracking)
    assert any(len(json.loads(r.data.tags[TAG_ENSEMBLE_MEMBERS])) >= 2 for r in runs)
    for run in runs:
        recorded = _recorded(tracking, run.info.run_id, tmp_path / run.info.run_id, steels_task)
        loaded = mlflow.pyfunc.load_model(run.data.tags[schema.TAG_MODEL_URI])
        assert [c.name for c in loaded.metadata.get_input_schema().inputs] == [FORMULA_COLUMN]
        predicted = np.asarray(loaded.predict(recorded[[FORMULA_COLUMN]]))
        np.testing.assert_array_equal(predicted, recorded["y_pred"].to_numpy())  # bit for bit
        assert run.data.metrics[schema.TEST_MAE] == pytest.approx(np.abs(predicted - recorded["y_true"]).mean())


def test_mlflow_models_predict_takes_an_ensemble_uri_like_any_runs_model(tracking, tmp_path, steels_task):
    run = next(r for r in _ensemble_runs(tracking) if len(json.loads(r.data.tags[TAG_ENSEMBLE_MEMBERS])) >= 2)
    recorded = _recorded(tracking, run.info.run_id, tmp_path, steels_task)
    recorded[[FORMULA_COLUMN]].to_csv(tmp_path / "new.csv", index=False)
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "predict", "-m",
               run.data.tags[schema.TAG_MODEL_URI], "-i", str(tmp_path / "new.csv"), "-t", "csv", "--env-manager",
               "local", "-o", str(tmp_path / "out.json")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": tracking})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads((tmp_path / "out.json").read_text())["predictions"]
    np.testing.assert_array_equal(np.asarray(predictions, dtype=np.float64), recorded["y_pred"].to_numpy())


def test_an_ensemble_whose_member_cannot_be_loaded_is_refused_with_the_members_run_id(tracking, tmp_path):
    run = next(r for r in _ensemble_runs(tracking) if len(json.loads(r.data.tags[TAG_ENSEMBLE_MEMBERS])) >= 2)
    local = Path(mlflow.artifacts.download_artifacts(run.data.tags[schema.TAG_MODEL_URI], dst_path=str(tmp_path)))
    (spec_path,) = local.rglob("ensemble.json")
    spec = json.loads(spec_path.read_text())
    member = spec["members"][1]["run_id"]
    spec["members"][1]["model_uri"] = "runs:/0123456789abcdef0123456789abcdef/model"  # a run the store never had
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(EnsembleMemberError, match=f"ensemble member run {member}"):
        mlflow.pyfunc.load_model(str(local))


def test_the_report_shows_each_ensemble_with_members_weights_and_paired_intervals(store, tmp_path):
    report = build.run(["--tracking-uri", store[0], "--out", str(tmp_path / "report")])
    md = report.files["leaderboard.md"].decode()
    assert "| — | ensemble-all (ensemble: " in md and "xgboost-seedavg (ensemble: mean of seeds 0, 1)" in md
    assert "### matbench_steels: post-hoc ensembles" in md and "Caruana, Niculescu-Mizil, Crew and Ksikes" in md
    assert "the post-hoc ensembles against IRNet and the best of the suite's models" in md
    best = report.summary.sort_values("rank")["model"].iloc[0]
    assert f"| ensemble-all | {best} | " in md  # the paired interval against the best single model
    table = pd.read_csv(tmp_path / "report" / "ensembles.csv")
    assert set(table["model"]) == {"ensemble-all", "xgboost-seedavg", "rf-seedavg"}
    assert (table["test_mae"] > 0).all() and table["members"].str.contains(":").all()
    # The leaderboard's runs are the suite's models only: an ensemble is not ranked among them.
    assert set(pd.read_csv(tmp_path / "report" / "leaderboard.csv")["model"]) == {"xgboost", "rf"}


def test_ensembles_join_the_matbench_submissions_as_models_of_their_own(smoke_store):
    collected = collect(smoke_store)  # dummy and rf on folds 0 and 1: a Matbench file needs all five folds
    report = build.report_of(collected)
    skipped = {e.model: e.skipped for e in report.exports}
    assert "ensemble-all" in skipped and "folds [0, 1] recorded" in skipped["ensemble-all"]["matbench_steels"]
