"""From ``benchmarks.run`` to the report on one store: the console and the report read the same finished runs,
and a run killed between being marked FINISHED and being marked done is completed by a rerun, with both readers
agreeing before and after."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import shlex

import pandas as pd
import pytest

from benchmarks.run import main
from reports.build import main as build_report
from reports.collect import collect, read_finals
from studies import schema, tracking
from studies.stores import make_client

ARGS = ["--task", "matbench_steels", "--preset", "smoke", "--models", "dummy,rf", "--folds", "0,1", "--no-progress"]


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the run catches it."""


def _parents(uri: str, model: str) -> list:
    client = make_client(uri)
    experiment = client.get_experiment_by_name("matbench_steels")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.model = '{model}'")
    return [r for r in runs if r.data.tags[schema.TAG_KIND] == schema.KIND_FINAL]


def _console_board(stdout: str) -> dict[str, float]:
    """model -> mean test MAE from the printed leaderboard."""
    lines = stdout.split("-" * 20, 1)[1].splitlines()[1:]
    rows = [ln.split() for ln in lines if ln.strip() and ln.split()[0].isdigit()]
    return {row[1]: float(row[2]) for row in rows}


def test_a_run_killed_before_its_done_mark_is_completed_by_a_rerun_and_both_readers_agree(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    uri = f"sqlite:///{out / 'mlflow.db'}"
    real_mark_done = tracking.mark_done
    calls = []

    def kill_on_the_third(client, run_id, summary):  # dummy fold 0, rf fold 0, then dummy fold 1 is "killed"
        calls.append(run_id)
        if len(calls) == 3:
            raise Killed()
        real_mark_done(client, run_id, summary)

    monkeypatch.setattr(tracking, "mark_done", kill_on_the_third)
    with pytest.raises(Killed):
        main([*ARGS, "--out", str(out)])
    capsys.readouterr()
    killed = next(r for r in _parents(uri, "dummy") if r.info.run_id == calls[2])
    assert killed.info.status == "FINISHED" and not schema.is_done(killed)  # the gap between the two writes

    # Both readers leave it out: the console's (read_finals) and the report's (collect).
    finals, skipped = read_finals(uri, ["matbench_steels"], "smoke")
    assert sorted(zip(finals["model"], finals["fold"], strict=True)) == [("dummy", 0), ("rf", 0)]
    assert any(calls[2] in note for note in skipped)
    assert sorted(zip(collect(uri).finals["model"], collect(uri).finals["fold"], strict=True)) == [
        ("dummy", 0),
        ("rf", 0),
    ]

    # The rerun resumes that run (no second parent run) and finishes the rest.
    monkeypatch.setattr(tracking, "mark_done", real_mark_done)
    assert main([*ARGS, "--out", str(out)]) == 0
    console = _console_board(capsys.readouterr().out)
    dummy_runs = _parents(uri, "dummy")
    assert len(dummy_runs) == 2 and all(schema.is_done(r) and r.info.status == "FINISHED" for r in dummy_runs)
    assert calls[2] in {r.info.run_id for r in dummy_runs}

    # The report, built from this store, holds every run and the same numbers the console printed.
    assert build_report(["--tracking-uri", uri, "--out", str(tmp_path / "report")]) == 0
    long = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    mae = long[long["metric"] == "mae"].groupby("model")["value"].mean()
    assert sorted(long[long["metric"] == "mae"][["model", "fold"]].itertuples(index=False)) == [
        ("dummy", 0), ("dummy", 1), ("rf", 0), ("rf", 1)]  # fmt: skip
    for model, value in console.items():
        assert value == pytest.approx(mae[model], rel=1e-3)  # the console prints 4 significant digits
    results = pd.read_csv(out / "results_matbench_steels_smoke.csv")
    pd.testing.assert_frame_equal(results.drop(columns="value"), long.drop(columns="value"), check_dtype=False)
    assert results["value"].to_numpy() == pytest.approx(long["value"].to_numpy(), rel=1e-9)


def test_a_done_run_left_running_by_the_old_write_order_counts_as_done_and_is_closed(tmp_path, capsys):
    out = tmp_path / "out"
    uri = f"sqlite:///{out / 'mlflow.db'}"
    args = [*ARGS[:5], "dummy", "--folds", "0", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    run = _parents(uri, "dummy")[0]
    make_client(uri).update_run(run.info.run_id, status="RUNNING")  # done tag written, never terminated
    assert len(read_finals(uri, ["matbench_steels"], "smoke")[0]) == 1 and len(collect(uri).finals) == 1
    assert main(args) == 0  # skipped as done, and closed
    capsys.readouterr()
    again = _parents(uri, "dummy")
    assert len(again) == 1 and again[0].info.status == "FINISHED"
    assert again[0].data.metrics[schema.TEST_MAE] == run.data.metrics[schema.TEST_MAE]


def test_a_matbench_run_makes_one_valid_submission_folder_per_model(tmp_path, capsys):
    matbench = pytest.importorskip("matbench.bench")
    out = tmp_path / "out"
    args = [*ARGS[:5], "rf", "--folds", "0,1,2,3,4", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert build_report(["--tracking-uri", f"sqlite:///{out / 'mlflow.db'}", "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    folder = tmp_path / "report" / "matbench" / "matbench_v0.1_irnet-bench-rf-seed0"
    assert sorted(p.name for p in folder.iterdir()) == ["info.json", "results.json.gz"]
    plain = tmp_path / "results.json"
    plain.write_bytes(gzip.decompress((folder / "results.json.gz").read_bytes()))
    assert matbench.MatbenchBenchmark.from_file(str(plain)).is_valid

    info = json.loads((folder / "info.json").read_text())
    # The keys the Matbench contribution guide requires, filled from what the runs recorded.
    assert {"authors", "algorithm", "algorithm_long", "bibtex_refs", "notes", "requirements"} <= set(info)
    assert info["algorithm_long"].startswith("random forest (Breiman 2001")
    assert "Magpie" in info["algorithm_long"] and "structure tasks" not in info["algorithm_long"]  # steels: formulas
    assert "doi = {10.1023/A:1010933404324}" in info["bibtex_refs"] and "Ward2016" in info["bibtex_refs"]
    python = info["requirements"]["python"]
    assert "matbench==0.6" in python and f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in python
    assert info["irnet_bench"]["commands"] == ["python -m benchmarks.run " + shlex.join(args)]
    scores = [json.loads(plain.read_text())["tasks"]["matbench_steels"]["results"][f"fold_{i}"]["scores"]["mae"]
              for i in range(5)]  # fmt: skip
    assert info["irnet_bench"]["mean_mae"]["matbench_steels"] == pytest.approx(sum(scores) / 5, rel=1e-12)
