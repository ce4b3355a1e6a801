"""A user's own data as a task: K-fold and chemical-system folds, duplicate compositions, bad input caught
before any work, and what a run leaves in MLflow for its UI (experiment kind, dataset inputs).

Data: real Matbench rows (steels, experimental band gaps) written out as a user's file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.cli import main_guard
from benchmarks.compositions import composition_keys, parse_formula, train_test_duplicates
from benchmarks.errors import UsageError
from benchmarks.loader import load_task
from benchmarks.tasks import main as tasks_main
from benchmarks.userdata import load_data_file, regroup_task
from studies import schema


@pytest.fixture(scope="module")
def gap_task():
    return load_task("matbench_expt_gap")


@pytest.fixture(scope="module")
def gap_file(gap_task, tmp_path_factory) -> Path:
    """The experimental band gaps (4,604 real rows) as a user's CSV with its own column names."""
    path = tmp_path_factory.mktemp("gap") / "gaps.csv"
    pd.DataFrame({"Composition": gap_task.formulas, "Eg": gap_task.targets}).to_csv(path, index=False)
    return path


def _load(path: Path, **kwargs):
    return load_data_file(path, formula_column="Composition", target_column="Eg", **kwargs)


def _chemsys_of_test_parts(task) -> list[set[str]]:
    keys = composition_keys(task.formulas)
    return [set(keys.chemsys[fold.test]) for fold in task.folds]


# --------------------------------------------------------------------------------------------- splits ---


def test_cv_is_seeded_shuffled_kfold_over_every_row(gap_file):
    from sklearn.model_selection import KFold

    task = _load(gap_file, n_folds=5, seed=7)
    assert task.spec.name == "gaps@cv5-seed7" and len(task.folds) == 5
    expected = [te for _, te in KFold(5, shuffle=True, random_state=7).split(np.arange(task.n_rows))]
    for fold, test in zip(task.folds, expected, strict=True):
        assert np.array_equal(np.sort(fold.test), np.sort(test))
        assert not set(fold.train) & set(fold.test) and len(fold.train) + len(fold.test) == task.n_rows
    other = _load(gap_file, n_folds=5, seed=8)
    assert not np.array_equal(other.folds[0].test, task.folds[0].test)


def test_chemsys_folds_keep_every_chemical_system_in_one_fold(gap_file):
    task = _load(gap_file, n_folds=5, group_by="chemsys", seed=0)
    assert task.spec.name == "gaps@chemsys5"
    systems = _chemsys_of_test_parts(task)
    for i in range(5):
        for j in range(i + 1, 5):
            assert not systems[i] & systems[j], f"folds {i} and {j} share chemical systems"
    tests = np.concatenate([f.test for f in task.folds])
    assert np.array_equal(np.sort(tests), np.arange(task.n_rows))  # every row tested exactly once
    sizes = [len(f.test) for f in task.folds]
    assert max(sizes) - min(sizes) <= 0.05 * task.n_rows / 5  # balanced despite the grouping
    # Another seed puts other systems together, and still keeps them apart.
    reseeded = _load(gap_file, n_folds=5, group_by="chemsys", seed=1)
    assert _chemsys_of_test_parts(reseeded)[0] != systems[0]


def test_registered_task_gets_chemsys_folds_under_its_own_name(gap_task):
    grouped = regroup_task(gap_task, 5, "chemsys", seed=0)
    assert grouped.spec.name == "matbench_expt_gap@chemsys5" and grouped.sha256 != gap_task.sha256
    assert np.array_equal(grouped.ids, gap_task.ids)
    systems = _chemsys_of_test_parts(grouped)
    assert all(not systems[i] & systems[j] for i in range(5) for j in range(i + 1, 5))
    assert np.array_equal(load_task("matbench_expt_gap").folds[0].test, gap_task.folds[0].test)  # official untouched


def test_splits_command_writes_grouped_folds_as_ids(gap_file, tmp_path, capsys):
    out = tmp_path / "folds.json"
    code = main_guard(tasks_main, ["splits", "--data-file", str(gap_file), "--formula-column", "Composition",
                                   "--target-column", "Eg", "--cv", "5", "--group-by", "chemsys",
                                   "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    folds = json.loads(out.read_text())
    assert sorted(folds) == [f"fold_{i}" for i in range(5)]
    frame = pd.read_csv(gap_file)
    chemsys = {f"gaps-{i}": parse_formula(f)[0] for i, f in enumerate(frame["Composition"])}
    test_systems = [{chemsys[i] for i in folds[f"fold_{k}"]["test"]} for k in range(5)]
    assert all(not test_systems[i] & test_systems[j] for i in range(5) for j in range(i + 1, 5))
    assert sum(len(f["test"]) for f in folds.values()) == len(frame)


def test_cv_on_a_registered_task_needs_group_by(capsys, tmp_path):
    code = main_guard(tasks_main, ["splits", "matbench_steels", "--cv", "5", "--out", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 2 and "official folds" in err and "--group-by chemsys" in err


# --------------------------------------------------------------------------------------- duplicates ---


def test_same_composition_is_found_whatever_the_formula_text():
    assert parse_formula("O3.0Pu2.0") == parse_formula("Pu2O3") == parse_formula("Pu4O6")
    assert parse_formula("Pu2O3")[0] == "O-Pu"
    assert parse_formula("PuO2") != parse_formula("Pu2O3")
    assert parse_formula("Xx9Qq") is None


def test_dedupe_first_and_mean_merge_rows_of_one_composition(tmp_path):
    rows = {"formula": ["Pu2O3", "NaCl", "O3.0Pu2.0", "MgO", "Pu4O6", "SiO2"] * 2,
            "target": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]}  # fmt: skip
    path = tmp_path / "dups.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    kept_all = load_data_file(path)
    assert kept_all.n_rows == 12
    first = load_data_file(path, dedupe="first", n_folds=2)
    assert list(first.formulas) == ["Pu2O3", "NaCl", "MgO", "SiO2"]
    assert list(first.targets) == [1.0, 2.0, 4.0, 6.0] and list(first.ids) == ["dups-0", "dups-1", "dups-3", "dups-5"]
    mean = load_data_file(path, dedupe="mean", n_folds=2)
    pu = np.mean([1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    assert list(mean.targets) == [pu, 5.0, 7.0, 9.0]  # NaCl (2, 8), MgO (4, 10), SiO2 (6, 12)


def test_train_test_duplicates_count_test_rows_seen_in_training(tmp_path):
    rows = {"formula": ["Pu2O3", "NaCl", "O3.0Pu2.0", "MgO", "KBr", "SiO2"], "target": [1.0, 2, 3, 4, 5, 6]}
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    task = load_data_file(path, n_folds=3)
    keys = composition_keys(task.formulas)
    expected = []
    for fold in task.folds:
        train = {parse_formula(f)[1] for f in task.formulas[fold.train]}
        expected.append(sum(parse_formula(f)[1] in train for f in task.formulas[fold.test]))
    assert [train_test_duplicates(keys, f) for f in task.folds] == expected
    assert sum(expected) in (0, 2)  # the two Pu2O3 rows are either one test part (0) or apart (1 each)
    grouped = load_data_file(path, n_folds=3, group_by="chemsys")
    assert [train_test_duplicates(composition_keys(grouped.formulas), f) for f in grouped.folds] == [0, 0, 0]


# ---------------------------------------------------------------------------------------- bad input ---


def _write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        content(path)
    return path


def _nested_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"formula": ["NaCl", "MgO"], "target": [1.0, 2.0], "tags": [[1, 2], [3]]}), path)


def _repeated_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays([pa.array(["NaCl", "MgO"]), pa.array([1.0, 2.0]), pa.array([3.0, 4.0])],
                                 names=["formula", "target", "target"])  # fmt: skip
    pq.write_table(table, path)


TWELVE = "".join(f"{f},{i}\n" for i, f in enumerate(["NaCl", "MgO", "SiO2", "KBr", "CaO", "ZnO", "GaAs", "InP",
                                                    "AlN", "TiO2", "CuO", "FeS"]))  # fmt: skip

BAD_INPUTS = [
    ("inf.csv", "formula,target\nNaCl,1\nMgO,inf\n" + TWELVE, [], ["infinite", "row 1", "remove or correct"]),
    ("neginf.csv", "formula,target\nNaCl,1\nMgO,-inf\n" + TWELVE, [], ["infinite", "row 1: -inf"]),
    ("overflow.csv", "formula,target\nNaCl,1\nMgO,1e999\n" + TWELVE, [], ["infinite", "beyond float64's range"]),
    (
        "constant.csv",
        "formula,target\n" + "".join(f"{f},3.5\n" for f in ["NaCl", "MgO", "SiO2"] * 5),
        [],
        ["same value (3.5) in every row", "check --target-column"],
    ),
    (
        "unparseable.csv",
        "formula,target\n" + "".join(f"Qq{i}Zz,{i}\n" for i in range(12)),
        [],
        ["no formula in column 'formula' can be parsed", "such as Fe2O3"],
    ),
    (
        "few.csv",
        "formula,target\nNaCl,1\nMgO,2\nSiO2,3\nKBr,4\n",
        ["--cv", "3"],
        ["has 4 rows", "--cv 3 needs at least 6", "use fewer folds"],
    ),
    (
        "onepart.csv",
        "formula,target,part\n" + "".join(f"{f},{i},train\n" for i, f in enumerate(["NaCl", "MgO"] * 6)),
        ["--split-column", "part"],
        ["holds only train rows", "needs train and test rows"],
    ),
    (
        "groups.csv",
        "formula,target\n"
        + "".join(f"{f},{i}\n" for i, f in enumerate(["NaCl", "Na2Cl2", "MgO", "Mg2O2", "SiO2", "Si2O4"] * 2)),
        ["--cv", "4", "--group-by", "chemsys"],
        ["has 3 chemical systems", "leave a fold empty", "--cv 3 or fewer"],
    ),
    (
        "repeated.csv",
        "formula,target,target\nNaCl,1,2\nMgO,2,3\n",
        [],
        ["column name 'target' more than once", "distinct name"],
    ),
    ("repeated.parquet", _repeated_parquet, [], ["column name 'target' more than once"]),
    ("nested.parquet", _nested_parquet, [], ["column 'tags' holds nested values", "flatten it"]),
    ("any.csv", "formula,target\nNaCl,1\n", ["--group-by", "chemsys"], ["--group-by chemsys needs --cv K"]),
]


@pytest.mark.parametrize("name, content, flags, words", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_user_data_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, name, content, flags, words):
    path = _write(tmp_path, name, content)
    cache = tmp_path / "cache"
    out = tmp_path / "splits.json"
    capsys.readouterr()
    code = main_guard(
        tasks_main, ["splits", "--data-file", str(path), *flags, "--out", str(out), "--cache-dir", str(cache)]
    )
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert all(word in lines[0] for word in words), lines[0]
    assert not cache.exists() and not out.exists()


def test_run_refuses_bad_data_before_making_any_store(tmp_path, capsys):
    from benchmarks.run import main as run_main

    path = _write(tmp_path, "inf.csv", "formula,target\nNaCl,1\nMgO,inf\n" + TWELVE)
    out = tmp_path / "never"
    code = main_guard(run_main, ["--data-file", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "c")])
    assert code == 2 and "infinite" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "c").exists()


def test_cv_with_a_split_column_is_refused(tmp_path):
    path = _write(tmp_path, "p.csv", "formula,target,part\n" + "NaCl,1,train\nMgO,2,test\n" * 6)
    with pytest.raises(UsageError, match="either --split-column or --cv"):
        load_data_file(path, split_column="part", n_folds=3)


# --------------------------------------------------------------------------------------- MLflow, UI ---


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """``--data-file steels.csv --cv 5`` with the constant baseline and one trial: real stores, real data."""
    steels = load_task("matbench_steels")
    folder = tmp_path_factory.mktemp("cv-run")
    data = folder / "steels.csv"
    pd.DataFrame({"formula": steels.formulas, "yield": steels.targets}).to_csv(data, index=False)
    out = folder / "out"
    argv = ["--data-file", str(data), "--target-column", "yield", "--cv", "5", "--unit", "MPa", "--preset", "smoke",
            "--models", "dummy", "--trials", "1", "--folds", "0,1,2,3,4", "--out", str(out),
            "--no-progress"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def _experiment(out: Path, name: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    return client, client.get_experiment_by_name(name)


@pytest.mark.slow
def test_cv_run_gives_a_parent_run_per_fold_with_dataset_input_and_report(cv_run):
    out, stdout = cv_run
    client, experiment = _experiment(out, "steels@cv5")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parents = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}'"
    )
    assert sorted(int(p.data.tags[schema.TAG_FOLD]) for p in parents) == [0, 1, 2, 3, 4]
    for parent in parents:
        assert parent.data.tags[schema.TAG_TRAIN_TEST_DUPLICATES] == "0"  # steels has no repeated composition
        (dataset_input,) = parent.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == "steels@cv5" and parent.data.tags[schema.TAG_DATA_SHA256].startswith(dataset.digest)
        assert len(dataset.digest) == 36
        profile = json.loads(dataset.profile)
        assert profile["num_rows"] == 312 and [f["test"] for f in profile["folds"]] == [63, 63, 62, 62, 62]
        tags = {t.key: t.value for t in dataset_input.tags}
        assert tags["fold"] == parent.data.tags[schema.TAG_FOLD]
        assert int(tags["n_test"]) == int(parent.data.metrics[schema.METRIC_N_TEST])
    board = [line for line in stdout.splitlines() if " dummy " in line]
    assert len(board) == 1 and "±" in board[0] and board[0].split()[-3] == "5"  # mean ± std over 5 runs


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install chromium)")
def test_mlflow_ui_opens_on_the_runs_table_with_the_dataset(cv_run, tmp_path):
    """Headless Chromium renders the MLflow UI at the link the run prints; the runs table and Dataset column
    are in the rendered page."""
    out, stdout = cv_run
    _, experiment = _experiment(out, "steels@cv5")
    port = 5077
    (hint,) = [line for line in stdout.splitlines() if line.startswith("runs table: mlflow ui")]
    url = hint.split("then open ")[1].replace(":5000/", f":{port}/")
    assert url.endswith(f"#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui",
                               "--backend-store-uri", f"sqlite:///{out / 'mlflow.db'}", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=180,
        ).stdout  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "Run Name" in text and "Dataset" in text and "dummy-fold0-seed0" in text, text[:2000]
    assert "steels@cv5 (" in text  # the Dataset column shows name (digest)
    assert "Traces 0" not in text  # not the GenAI overview


def test_structures_are_read_from_cif_and_a_bad_one_names_its_row():
    from pymatgen.core.lattice import Lattice
    from pymatgen.core.structure import Structure

    from benchmarks.features import parse_structures

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    read = parse_structures([nacl.to(fmt="cif"), nacl])
    assert [s.composition.reduced_formula for s in read] == ["NaCl", "NaCl"] and read[1] is nacl
    with pytest.raises(ValueError, match=r"row 1: not a CIF structure"):
        parse_structures([nacl, "not a crystal"])
