"""Results that live in the repository: an export of a real smoke store gives the report the store gives, imports
back into MLflow, and the published-report check notices a report that no longer matches its export.

Expected values are read from the store with the MLflow client directly, not through ``reports``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from reports import build, check_published, export
from reports.collect import collect
from studies import schema
from studies.stores import make_client

TASK = "matbench_steels"


def _store_copy(smoke_store: str, folder: Path, *, crashed_run: bool = False) -> str:
    """A copy of the smoke store's database (its artifacts stay where they are: only read)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(smoke_store.removeprefix("sqlite:///"), folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if crashed_run:  # an unfinished parent run: left out and listed, by the store's report and the export's
        client = make_client(uri)
        exp = client.get_experiment_by_name(TASK)
        tags = {schema.TAG_KIND: schema.KIND_FINAL, schema.TAG_TASK: TASK, schema.TAG_MODEL: "lightgbm",
                schema.TAG_FOLD: "0", schema.TAG_SEED: "0", schema.TAG_PRESET: "smoke"}  # fmt: skip
        client.set_terminated(client.create_run(exp.experiment_id, tags=tags).info.run_id, "FAILED")
    return uri


def _done_parents(uri: str) -> list:
    client = make_client(uri)
    exp = client.get_experiment_by_name(TASK)
    runs = client.search_runs([exp.experiment_id], f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}'")
    return [r for r in runs if r.data.tags.get(schema.TAG_STATUS) == schema.STATUS_DONE]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def exported(smoke_store, tmp_path_factory) -> tuple[str, Path]:
    """A copy of the smoke store with one crashed run, and its export."""
    root = tmp_path_factory.mktemp("exported")
    uri = _store_copy(smoke_store, root / "store", crashed_run=True)
    assert export.main(["--tracking-uri", uri, "--out", str(root / "export")]) == 0
    return uri, root / "export"


def _run(main, capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


# ------------------------------------------------------------------------------------------------ the export


def test_export_holds_every_done_run_its_provenance_predictions_curve_and_trials(exported):
    uri, folder = exported
    parents = {r.info.run_id: r for r in _done_parents(uri)}
    client = make_client(uri)
    manifest = json.loads((folder / export.MANIFEST).read_text())
    assert manifest["format"] == export.FORMAT and manifest["version"] == export.VERSION == 2
    assert manifest["runs"] == len(parents) == 4 and manifest["tasks"] == [TASK] and manifest["preset"] == "smoke"
    assert len(manifest["skipped"]) == 1 and "lightgbm" in manifest["skipped"][0]  # the crashed run, listed
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [export.MANIFEST, *(f"{n}.parquet" for n in export.FILES)]
    )

    runs = pq.read_table(folder / "runs.parquet").to_pandas()
    assert set(runs["run_id"]) == set(parents)
    assert list(runs.columns) == list(collect(uri).finals.columns)
    for row in runs.itertuples():
        logged = parents[row.run_id]
        assert row.test_mae == logged.data.metrics[schema.TEST_MAE]  # float64, exactly
        assert row.refit_stopped == logged.data.tags[schema.TAG_REFIT_STOPPED]
        assert row.code_version == logged.data.tags[schema.TAG_CODE_VERSION]
        assert json.loads(row.params)["n_estimators" if row.model == "rf" else "strategy"] == (
            logged.data.params["n_estimators" if row.model == "rf" else "strategy"])  # fmt: skip

    tags = pq.read_table(folder / "tags.parquet").to_pandas()
    for run_id, logged in parents.items():
        mine = dict(tags.loc[tags["run_id"] == run_id, ["key", "value"]].itertuples(index=False))
        expected = {
            k: v for k, v in logged.data.tags.items() if k not in (schema.TAG_FINAL_OWNER, schema.TAG_FINAL_HEARTBEAT)
        }
        assert mine == expected and "pkg.mlflow" in mine and schema.TAG_DATA_SHA256 in mine

    preds = pq.read_table(folder / "predictions.parquet")
    assert str(preds.schema.field("y_pred").type) == "float" and str(preds.schema.field("y_true").type) == "float"
    preds = preds.to_pandas()
    for run_id in parents:
        local = client.download_artifacts(run_id, schema.ARTIFACT_PREDICTIONS)
        stored = pd.read_csv(local, dtype={"id": str})
        mine = preds[preds["run_id"] == run_id]
        assert mine["id"].tolist() == stored["id"].tolist()  # same rows, same order
        np.testing.assert_array_equal(mine["y_pred"].to_numpy(), stored["y_pred"].to_numpy(dtype=np.float32))

    curves = pq.read_table(folder / "curves.parquet").to_pandas()
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    exp = client.get_experiment_by_name(TASK)
    for run_id in parents:
        history = client.get_metric_history(run_id, schema.CURVE_VAL)
        mine = curves[curves["run_id"] == run_id]
        assert len(mine) == len(history) > 0
        assert mine["val_mae"].tolist() == [m.value for m in sorted(history, key=lambda m: m.step)]
        scored = [t for t in client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'")
                  if schema.METRIC_TRIAL_VALUE in t.data.metrics]  # fmt: skip
        assert sorted(trials.loc[trials["run_id"] == run_id, "trial_number"]) == sorted(
            int(t.data.tags[schema.TAG_TRIAL_NUMBER]) for t in scored) and scored  # fmt: skip


def test_export_is_deterministic_and_replaces_an_earlier_one(exported, tmp_path, capsys):
    uri, folder = exported
    again = tmp_path / "again"
    assert export.main(["--tracking-uri", uri, "--out", str(again)]) == 0
    assert _files(again) == _files(folder)  # the same store exported twice: the same bytes
    # Over an earlier export: its files replaced, one it listed but this one does not write removed, others kept.
    manifest = json.loads((again / export.MANIFEST).read_text())
    manifest["files"]["old_table.parquet"] = {"rows": 0, "bytes": 0, "sha256": ""}
    (again / export.MANIFEST).write_text(json.dumps(manifest))
    (again / "old_table.parquet").write_bytes(b"stale")
    (again / "NOTES.txt").write_text("the user's")
    (again / "runs.parquet").write_bytes(b"older")
    code, out, _ = _run(export.main, capsys, "--tracking-uri", uri, "--out", str(again))
    assert code == 0 and "4 run(s)" in out and "kB per run" in out
    assert _files(again) == {**_files(folder), "NOTES.txt": b"the user's"}
    assert not list(again.glob(".*.tmp"))  # no temporary file left behind


def test_export_refuses_a_folder_that_holds_something_else(exported, tmp_path, capsys):
    uri, _ = exported
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "leaderboard.md").write_text("a report")
    code, _, err = _run(export.main, capsys, "--tracking-uri", uri, "--out", str(tmp_path / "report"))
    assert code == 2 and len(err.splitlines()) == 1 and "holds no export" in err
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["leaderboard.md"]


# ------------------------------------------------------------------------------------------ the report from it


def test_report_from_the_export_is_the_report_from_the_store(exported, tmp_path):
    uri, folder = exported
    from_store = build.run(["--tracking-uri", uri, "--out", str(tmp_path / "store")])
    from_export = build.run(["--export", str(folder), "--out", str(tmp_path / "export")])
    a, b = from_store.files, from_export.files
    assert a["leaderboard.csv"] == b["leaderboard.csv"]
    store_md, export_md = a["leaderboard.md"].decode().splitlines(), b["leaderboard.md"].decode().splitlines()
    differ = [(x, y) for x, y in zip(store_md, export_md, strict=False) if x != y]
    assert len(store_md) == len(export_md) and len(differ) == 1  # only the line naming the source
    assert (
        f"(tracking URI {uri})" in differ[0][0] and f"(tracking URI {uri}, read back from its export)" in differ[0][1]
    )
    assert "Left out (1 unfinished parent runs)" in b["leaderboard.md"].decode()

    # The same Collected, so everything downstream is the same: predictions up to float32 rounding.
    s, e = from_store.collected, from_export.collected
    pd.testing.assert_frame_equal(s.finals, e.finals)
    pd.testing.assert_frame_equal(s.curves, e.curves)
    pd.testing.assert_frame_equal(s.trials, e.trials)
    pd.testing.assert_frame_equal(
        s.predictions.drop(columns=["y_true", "y_pred"]), e.predictions.drop(columns=["y_true", "y_pred"])
    )
    for column in ("y_true", "y_pred"):
        np.testing.assert_allclose(e.predictions[column], s.predictions[column], rtol=2.0**-24, atol=0)
    assert s.skipped == e.skipped and e.from_export and not s.from_export


def test_an_edited_or_incomplete_export_is_refused(exported, tmp_path, capsys):
    _, folder = exported
    edited = tmp_path / "edited"
    shutil.copytree(folder, edited)
    data = bytearray((edited / "predictions.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (edited / "predictions.parquet").write_bytes(bytes(data))
    code, _, err = _run(build.main, capsys, "--export", str(edited), "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1 and "predictions.parquet differs from its manifest" in err
    (edited / "predictions.parquet").unlink()
    code, _, err = _run(build.main, capsys, "--export", str(edited), "--out", str(tmp_path / "out"))
    assert code == 2 and "predictions.parquet missing" in err
    newer = json.loads((folder / export.MANIFEST).read_text()) | {"version": export.VERSION + 1}
    (edited / export.MANIFEST).write_text(json.dumps(newer))
    code, _, err = _run(build.main, capsys, "--export", str(edited), "--out", str(tmp_path / "out"))
    assert code == 2 and "newer than this code reads" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "R"], "not both or neither"),
        (["--tracking-uri", "sqlite:///x.db", "--export", "E", "--out", "R"], "not both or neither"),
        (["--export", "E", "--task", TASK, "--out", "R"], "an export holds one selection"),
    ],
)
def test_build_wants_one_source(args, message, tmp_path, capsys):
    args = [str(tmp_path / a) if a in ("R", "E") else a for a in args]
    code, _, err = _run(build.main, capsys, *args)
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "R").exists()


# ------------------------------------------------------------------------------------------------- importing


def test_import_recreates_the_runs_and_their_report(exported, tmp_path, capsys):
    uri, folder = exported
    target = f"sqlite:///{tmp_path / 'imported' / 'mlflow.db'}"
    code, out, _ = _run(export.main, capsys, "--import", str(folder), "--tracking-uri", target)
    assert code == 0 and "4 run(s) imported" in out

    originals = {r.info.run_id: r for r in _done_parents(uri)}
    imported = _done_parents(target)
    client = make_client(target)
    assert sorted(r.data.tags[schema.TAG_SOURCE_RUN_ID] for r in imported) == sorted(originals)
    for run in imported:
        original = originals[run.data.tags[schema.TAG_SOURCE_RUN_ID]]
        assert run.info.status == "FINISHED" and run.info.run_id not in originals
        assert run.info.start_time == original.info.start_time and run.info.end_time == original.info.end_time
        assert run.info.run_name == original.info.run_name
        assert run.data.params == original.data.params
        assert {k: run.data.metrics[k] for k in schema.TEST_METRICS} == {
            k: original.data.metrics[k] for k in schema.TEST_METRICS
        }
        steps = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, schema.CURVE_VAL)]
        assert sorted(steps) == sorted(
            (m.step, m.value) for m in make_client(uri).get_metric_history(original.info.run_id, schema.CURVE_VAL)
        )
        assert schema.ARTIFACT_PREDICTIONS in [a.path for a in client.list_artifacts(run.info.run_id)]

    # The report of the imported store: the same leaderboard.csv (published run ids included).
    store_report = build.run(["--tracking-uri", uri, "--out", str(tmp_path / "r1")])
    imported_report = build.run(["--tracking-uri", target, "--out", str(tmp_path / "r2")])
    assert imported_report.files["leaderboard.csv"] == store_report.files["leaderboard.csv"]

    # Exporting the imported store gives the export back, byte for byte (but the manifest's source and notes).
    assert export.main(["--tracking-uri", target, "--out", str(tmp_path / "re-export")]) == 0
    again, first = _files(tmp_path / "re-export"), _files(folder)
    assert {k: v for k, v in again.items() if k != export.MANIFEST} == {
        k: v for k, v in first.items() if k != export.MANIFEST
    }

    # A second import adds nothing; one whose done mark is missing (an import killed midway) is redone.
    code, out, _ = _run(export.main, capsys, "--import", str(folder), "--tracking-uri", target)
    assert code == 0 and "0 run(s) imported" in out and "4 already there" in out
    half = imported[0]
    client.delete_tag(half.info.run_id, schema.TAG_STATUS)
    code, out, _ = _run(export.main, capsys, "--import", str(folder), "--tracking-uri", target)
    assert code == 0 and "1 run(s) imported" in out and "3 already there" in out
    assert len(_done_parents(target)) == 4 and half.info.run_id not in {r.info.run_id for r in _done_parents(target)}


def test_a_run_resumes_from_an_imported_export_and_redoes_none_of_its_runs(exported, tmp_path, capsys):
    """How a study outlives its machine: import its committed export into a fresh store under --out, rerun the
    same command, and only the runs the export lacks are done."""
    from benchmarks.run import main as run_main
    from tests.conftest import SMOKE_ARGS

    _, folder = exported
    out = tmp_path / "resumed"
    target = f"sqlite:///{out / 'mlflow.db'}"
    assert export.main(["--import", str(folder), "--tracking-uri", target]) == 0
    before = {r.info.run_id for r in _done_parents(target)}
    assert run_main([*SMOKE_ARGS, "--out", str(out)]) == 0
    assert {r.info.run_id for r in _done_parents(target)} == before and len(before) == 4
    # Nothing was tuned again: no study in the fresh Optuna storage has a trial.
    import optuna

    storage = f"sqlite:///{out / 'optuna.db'}"
    summaries = optuna.get_all_study_summaries(storage) if (out / "optuna.db").exists() else []
    assert all(s.n_trials == 0 for s in summaries)


def test_import_refuses_a_store_that_holds_the_same_runs(exported, tmp_path, capsys):
    uri, folder = exported
    copy = _store_copy(uri, tmp_path / "copy")
    before = len(make_client(copy).search_runs([make_client(copy).get_experiment_by_name(TASK).experiment_id]))
    code, _, err = _run(export.main, capsys, "--import", str(folder), "--tracking-uri", copy)
    assert code == 2 and len(err.splitlines()) == 1 and "already holds finished run" in err
    assert len(make_client(copy).search_runs([make_client(copy).get_experiment_by_name(TASK).experiment_id])) == before


# --------------------------------------------------------------------------------------- the published check


def test_check_published_rebuilds_every_committed_export(exported, tmp_path, capsys):
    _, folder = exported
    root = tmp_path / "results"
    root.mkdir()
    shutil.copytree(folder, root / "quick" / "export")
    assert build.main(["--export", str(root / "quick" / "export"), "--out", str(root / "quick")]) == 0
    code, out, _ = _run(check_published.main, capsys, str(root))
    assert code == 0 and "1 export(s)" in out
    csv = root / "quick" / "leaderboard.csv"
    csv.write_text(csv.read_text().replace("dummy", "dummx", 1))
    code, _, err = _run(check_published.main, capsys, str(root))
    assert code == 1 and len(err.splitlines()) == 1 and f"{csv} differs" in err and "reports.build --export" in err
    csv.unlink()
    code, _, err = _run(check_published.main, capsys, str(root))
    assert code == 1 and f"{csv} is missing" in err


def test_run_study_publishes_its_export_and_continues_from_it_on_a_fresh_machine(tmp_path):
    """scripts/run_study.sh: run, export, rebuild the report; with the stores gone, import the export and go on."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "run_study.sh"
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PUBLISH": str(tmp_path / "published"), "PYTHON": sys.executable}
    args = ["--task", "matbench_steels", "--preset", "smoke", "--models", "dummy", "--no-progress"]

    def study(*folds: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), "steels", *args, "--folds", ",".join(folds)], env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    first = study("0")
    assert first.returncode == 0, first.stderr[-2000:]
    published = tmp_path / "published"
    assert (published / "export" / export.MANIFEST).exists() and (published / "leaderboard.md").exists()
    assert json.loads((published / "export" / export.MANIFEST).read_text())["runs"] == 1

    shutil.rmtree(tmp_path / "out")  # the machine is gone; the published export is all there is
    second = study("0", "1")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "importing the published runs" in second.stderr
    runs = _done_parents(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    assert sorted(r.data.tags[schema.TAG_FOLD] for r in runs) == ["0", "1"]
    # fold 0 came from the export (its published id), fold 1 was run here
    assert [r.data.tags[schema.TAG_FOLD] for r in runs if schema.TAG_SOURCE_RUN_ID in r.data.tags] == ["0"]
    assert json.loads((published / "export" / export.MANIFEST).read_text())["runs"] == 2

    assert study("0").returncode == 0 and subprocess.run(["bash", str(script)], capture_output=True).returncode == 2
