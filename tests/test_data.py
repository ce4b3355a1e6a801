"""The data layer: registry, pinned archive, official folds, featurisation, user data, the data command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from benchmarks import archive
from benchmarks.errors import DataError, SourceUnavailable, UsageError
from benchmarks.loader import fold_rows, load_task, task_fold
from benchmarks.registry import TASKS, get_task, matbench_ids

MATBENCH_TASKS = [name for name, spec in TASKS.items() if spec.is_matbench]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.tasks", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def official_splits():
    path = archive.archive_file("matbench", "matbench_v0.1_validation.json")
    return json.loads(path.read_text())


def test_all_thirteen_matbench_tasks_are_registered():
    assert len(MATBENCH_TASKS) == 13
    assert {"matbench_steels", "matbench_mp_e_form", "matbench_glass", "matbench_perovskites"} <= set(TASKS)


@pytest.mark.parametrize("name", MATBENCH_TASKS)
def test_folds_equal_the_official_matbench_folds(name, official_splits):
    task = load_task(name)
    official = official_splits["splits"][name]
    assert len(task.folds) == len(official) == 5
    for i, fold in enumerate(task.folds):
        assert task.ids[fold.test].tolist() == official[f"fold_{i}"]["test"]
        assert sorted(task.ids[fold.train].tolist()) == sorted(official[f"fold_{i}"]["train"])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_row_counts_are_the_true_counts(name):
    task = load_task(name)
    assert task.n_rows == TASKS[name].n_rows
    assert len(set(task.ids)) == task.n_rows
    fold = task.folds[0]
    parts = [fold.train, fold.test] + ([fold.val] if fold.val is not None else [])
    assert sum(len(p) for p in parts) == task.n_rows  # every row in exactly one part
    assert len(np.unique(np.concatenate(parts))) == task.n_rows


def test_formation_energy_split_sizes():
    task = load_task("formation_energy")
    fold = task.folds[0]
    assert (len(fold.train), len(fold.val), len(fold.test)) == (239_190, 51_255, 51_255)
    assert len(set(task.formulas)) == 341_700


def test_matbench_ids_are_zero_padded_like_matbench():
    assert matbench_ids("matbench_expt_gap", 4604)[7] == "mb-expt-gap-0008"
    assert matbench_ids("matbench_steels", 312)[0] == "mb-steels-001"
    assert matbench_ids("matbench_mp_e_form", 132752)[-1] == "mb-mp-e-form-132752"


def test_unknown_task_suggests_close_names():
    with pytest.raises(UsageError, match="formation_energy"):
        get_task("formation_enrgy")
    done = run_cli("show", "formation_enrgy")
    assert done.returncode == 2
    assert "did you mean formation_energy" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_list_shows_every_task_with_true_row_counts():
    done = run_cli("list")
    assert done.returncode == 0
    assert "formation_energy" in done.stdout and "341,700" in done.stdout
    assert all(name in done.stdout for name in TASKS)


def test_splits_command_writes_official_ids(tmp_path, official_splits):
    out = tmp_path / "steels.json"
    done = run_cli("splits", "matbench_steels", "--out", str(out))
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text())
    assert written["fold_3"]["test"] == official_splits["splits"]["matbench_steels"]["fold_3"]["test"]


def test_corrupt_cached_file_is_fetched_again(tmp_path):
    wheel = archive.ensure_wheel("crabnet")  # the shared cache has it; copy, don't download again
    root = tmp_path / "cache"
    (root / "archives").mkdir(parents=True)
    (root / "archives" / wheel.name).write_bytes(wheel.read_bytes())
    member = "matbench/steels_yield.csv"
    path = archive.archive_file("crabnet", member, root=root)
    path.write_text("formula,target\nFe,1\n")  # a damaged cache file
    assert (
        archive.sha256_of(archive.archive_file("crabnet", member, root=root))
        == archive.sources()["archives"]["crabnet"]["files"][member]["sha256"]
    )
    (root / "archives" / wheel.name).write_bytes(b"partial download")  # a partial wheel
    path.unlink()
    archive.archive_file("crabnet", member, root=root)  # re-fetches the wheel through pip, then unpacks
    assert archive.sha256_of(root / "archives" / wheel.name) == archive.sources()["archives"]["crabnet"]["sha256"]


def test_checksum_mismatch_twice_fails_clearly(tmp_path, monkeypatch):
    wheel = archive.ensure_wheel("crabnet")
    root = tmp_path / "cache"
    (root / "archives").mkdir(parents=True)
    (root / "archives" / wheel.name).write_bytes(wheel.read_bytes())
    pinned = archive.sources()["archives"]["crabnet"]["files"]["matbench/steels_yield.csv"]
    monkeypatch.setitem(pinned, "sha256", "0" * 64)
    with pytest.raises(SourceUnavailable, match="fails its pinned sha256"):
        archive.archive_file("crabnet", "matbench/steels_yield.csv", root=root)
    assert not (root / "data" / "crabnet" / "matbench" / "steels_yield.csv").exists()


def test_validation_is_carved_from_training_rows_with_a_recorded_seed(steels_task):
    train_a, val_a, test_a = fold_rows(steels_task, 2, val_seed=7)
    train_b, val_b, _ = fold_rows(steels_task, 2, val_seed=7)
    _, val_c, _ = fold_rows(steels_task, 2, val_seed=8)
    assert np.array_equal(val_a, val_b) and np.array_equal(train_a, train_b)
    assert not np.array_equal(val_a, val_c)
    official_train = set(steels_task.folds[2].train)
    assert set(val_a) | set(train_a) == official_train and not set(val_a) & set(train_a)
    assert not set(test_a) & official_train


def test_fold_out_of_range_is_a_usage_error(steels_task):
    with pytest.raises(UsageError, match=r"folds 0\.\.4"):
        fold_rows(steels_task, 5)


def test_training_view_holds_no_test_rows(steels_fold):
    training, test = steels_fold
    assert training.X_train.shape[1] == 145 and len(training.feature_names) == 145
    assert not set(test.ids) & (set(training.train_ids) | set(training.val_ids))
    assert len(training.train_ids) + len(training.val_ids) + len(test.ids) == 312
    assert not hasattr(training, "X_test")


def test_max_train_rows_subsamples_training_but_never_test():
    task = load_task("mp_bulk_modulus")
    train, val, test = fold_rows(task, 0, val_seed=0, max_train_rows=500)
    assert len(train) == 500 and len(val) == round(500 * 946 / 4414)
    assert len(test) == 947


def test_magpie_features_match_matminer_directly(steels_task):
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    from benchmarks.features import featurize

    features = featurize(steels_task, "magpie", rows=np.array([0, 5]), progress=False)
    expected = ElementProperty.from_preset("magpie").featurize(Composition(steels_task.formulas[5]))
    np.testing.assert_allclose(features.X[5, :132], expected, rtol=1e-5)
    assert features.valid.sum() == 2 and not features.valid[1]


def test_elemnet_fractions_sum_to_one(steels_task):
    from benchmarks.features import featurize

    features = featurize(steels_task, "elemnet", progress=False)
    assert features.X.shape == (312, 86)
    np.testing.assert_allclose(features.X.sum(axis=1), 1.0, rtol=1e-5)


def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_unparseable_formulas_are_dropped_counted_and_shown(tmp_path, caplog):
    from benchmarks.userdata import load_data_file

    formulas = ["NaCl", "Fe2O3", "Xx9Qq", "MgO", "SiO2", "Al2O3", "TiO2", "GaAs", "ZnO", "CuO"]
    rows = [{"formula": f, "target": float(i)} for i, f in enumerate(formulas)]
    task = load_data_file(write_csv(tmp_path / "mine.csv", rows), seed=1)
    with caplog.at_level("WARNING"):
        training, test = task_fold(task, 0, cache_dir=tmp_path / "cache", progress=False)
    assert len(training.train_ids) + len(training.val_ids) + len(test.ids) == 9
    assert "1 of 10 rows could not be featurised" in caplog.text and "'Xx9Qq'" in caplog.text


def test_features_are_cached_and_only_missing_rows_computed(tmp_path, steels_task, caplog):
    from benchmarks import features as feats

    caplog.set_level(logging.INFO, logger="benchmarks.features")
    feats.featurize(steels_task, "magpie", rows=np.arange(10), cache_dir=tmp_path, progress=False)
    feats.featurize(steels_task, "magpie", rows=np.arange(20), cache_dir=tmp_path, progress=False)
    again = feats.featurize(steels_task, "magpie", rows=np.arange(20), cache_dir=tmp_path, progress=False)
    said = [r.getMessage() for r in caplog.records if "featurising" in r.getMessage()]
    assert [m.split(": ", 1)[1] for m in said] == ["featurising 10 rows with magpie, of which 0 cached",
                                                  "featurising 20 rows with magpie, of which 10 cached",
                                                  "featurising 20 rows with magpie, of which 20 cached"]  # fmt: skip
    assert again.valid.sum() == 20


def test_featurising_logs_start_progress_and_end(tmp_path, steels_task, caplog, monkeypatch):
    from benchmarks import features as feats

    monkeypatch.setattr(feats, "PROGRESS_SECONDS", 0.0)  # a progress line after every block
    with caplog.at_level("INFO", logger="benchmarks.features"):
        feats.featurize(steels_task, "magpie", cache_dir=tmp_path, progress=False)
    assert "featurising 312 rows with magpie, of which 0 cached" in caplog.text
    assert "featurised 312 of 312 rows" in caplog.text and "featurised 312 rows in" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="benchmarks.features"):
        feats.featurize(steels_task, "magpie", rows=np.arange(50), cache_dir=tmp_path, progress=False)
    assert "featurising 50 rows with magpie, of which 50 cached" in caplog.text
    assert "featurised 50 rows in" not in caplog.text


def test_matminer_reference_stays_selectable_and_cached_apart(tmp_path, steels_task):
    from benchmarks import features as feats

    rows = np.arange(40)
    new = feats.featurize(steels_task, "magpie", rows=rows, cache_dir=tmp_path, progress=False)
    old = feats.featurize(steels_task, "magpie-matminer", rows=rows, cache_dir=tmp_path, progress=False)
    assert new.names == old.names and new.version != old.version
    assert "matminer" in old.version and "matminer" not in new.version
    assert old.valid.sum() == new.valid.sum() == 40
    np.testing.assert_allclose(new.X[new.valid], old.X[old.valid], rtol=1e-6, atol=1e-9)
    folders = sorted(p.name for p in (tmp_path / "features" / "matbench_steels").iterdir())
    assert len(folders) == 2 and all(name.startswith(steels_task.sha256[:16]) for name in folders)


def test_featurize_command_accepts_the_matminer_reference(tmp_path):
    done = run_cli("featurize", "matbench_steels", "--featurizer", "magpie-matminer", "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "312 of 312 rows featurised with magpie-matminer (145 features)" in done.stdout
    assert "featurising 312 rows with magpie-matminer, of which 0 cached" in done.stderr


@pytest.mark.parametrize(
    "content, flags, message",
    [
        ("formula,target\nNaCl,1\n", ["--target-column", "y"], "has no column 'y'"),
        ("formula,target\nNaCl,abc\nMgO,2\n", [], "is not numeric"),
        ("formula,target\nNaCl,1\nMgO,\n", [], "rows have an empty formula or target"),
        ("", [], "cannot read"),
        ("formula,target\n", [], "has no rows"),
    ],
)
def test_bad_user_data_is_one_line_exit_2_and_nothing_cached(tmp_path, content, flags, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    cache = tmp_path / "cache"
    done = run_cli(
        "splits", "--data-file", str(path), *flags, "--out", str(tmp_path / "s.json"), "--cache-dir", str(cache)
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not cache.exists() and not (tmp_path / "s.json").exists()


def test_user_data_split_column_and_random_split(tmp_path):
    from benchmarks.userdata import load_data_file

    rows = [{"f": "NaCl", "y": i, "part": ["train", "val", "test"][i % 3]} for i in range(30)]
    task = load_data_file(
        write_csv(tmp_path / "d.csv", rows), formula_column="f", target_column="y", split_column="part"
    )
    assert (len(task.folds[0].train), len(task.folds[0].val), len(task.folds[0].test)) == (10, 10, 10)
    random_a = load_data_file(write_csv(tmp_path / "e.csv", rows), formula_column="f", target_column="y", seed=3)
    random_b = load_data_file(tmp_path / "e.csv", formula_column="f", target_column="y", seed=3)
    assert np.array_equal(random_a.folds[0].test, random_b.folds[0].test) and len(random_a.folds[0].test) == 6
    with pytest.raises(DataError, match="has value 'holdout'"):
        rows[0]["part"] = "holdout"
        load_data_file(write_csv(tmp_path / "g.csv", rows), formula_column="f", target_column="y", split_column="part")


def test_matminer_source_rejects_a_tampered_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MATMINER_DATA", str(tmp_path))
    (tmp_path / "matbench_steels.json.gz").write_bytes(b"not the dataset")
    with pytest.raises(SourceUnavailable, match="does not match the sha256"):
        load_task("matbench_steels", source="matminer")


def test_matminer_source_offline_fails_at_once_naming_the_offline_source(tmp_path, monkeypatch):
    import socket

    def offline(*args, **kwargs):
        raise OSError("no network in this test")

    # Offline whatever the machine: the default run never downloads (the online path is the test below).
    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    monkeypatch.setenv("MATMINER_DATA", str(tmp_path))
    with pytest.raises(SourceUnavailable, match="--source archive"):
        load_task("matbench_steels", source="matminer")


@pytest.mark.network
def test_matminer_source_online_gives_the_archive_rows_ids_and_folds(tmp_path, monkeypatch, steels_task):
    monkeypatch.setenv("MATMINER_DATA", str(tmp_path))
    online = load_task("matbench_steels", source="matminer")
    assert list(online.ids) == list(steels_task.ids)
    assert np.allclose(online.targets, steels_task.targets)
    assert [list(f.test) for f in online.folds] == [list(f.test) for f in steels_task.folds]
