"""The published models' own test predictions shipped with the suite: aligned to the archive's test rows (checked
through the suite's loader), their MAEs the CrabNet paper's Table 2, refused when edited; and in the report as
reference rows beside runs that used the whole training part, never ranked, never beside capped runs."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmarks import published
from benchmarks.loader import load_task
from benchmarks.published import REFERENCE_DIR, ReferenceDataError
from reports import breakdown, export
from reports.references import build_references, full_training_sizes

REPO = Path(__file__).resolve().parents[1]
OQMD_TASKS = ("formation_energy", "oqmd_band_gap", "oqmd_energy_per_atom", "oqmd_volume_per_atom")
# Wang et al., npj Comput. Mater. 7, 77 (2021), Table 2 (anthony-wang/CrabNet metrics/all_metrics.csv), eV/atom.
FORMATION_ENERGY_TABLE2 = {"crabnet": 0.03115, "hotcrab": 0.03101, "roost": 0.03153, "elemnet": 0.04890,
                           "rf": 0.08341}  # fmt: skip


def test_the_shipped_file_is_compact_and_names_its_source_and_licence():
    meta = published.manifest()
    path = REFERENCE_DIR / meta["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    schema = pq.read_schema(path)
    assert [f.name for f in schema] == ["task", "row", *meta["models"]]  # row numbers, no formulas
    assert all(str(schema.field(m).type) == "float" for m in meta["models"])  # float32
    assert path.stat().st_size < 4_000_000
    assert "anthony-wang/CrabNet" in meta["source"] and "publication_predictions" in meta["source"]
    licence = (REFERENCE_DIR / "LICENSE-CrabNet.txt").read_text()
    assert "MIT License" in licence and "Copyright (c) 2021 Sterling G. Baird" in licence
    assert published.tasks_with_references() == tuple(sorted(OQMD_TASKS))


@pytest.mark.parametrize("task", OQMD_TASKS)
def test_rows_are_the_archive_test_rows_and_the_maes_are_the_papers(task):
    data = load_task(task)  # the suite's own loader: ids, formulas, targets, the fixed split
    test_rows = data.folds[0].test
    meta = published.manifest()["tasks"][task]
    formulas = "\n".join(str(f) for f in data.formulas[test_rows])
    assert hashlib.sha256(formulas.encode()).hexdigest() == meta["formulas_sha256"]  # row r is test.csv's line r
    assert len(test_rows) == meta["rows"]
    rows = published.reference_predictions(task)
    truth = pd.Series(data.targets[test_rows], index=data.ids[test_rows])
    assert set(rows["id"]) <= set(truth.index)
    for model, part in rows.groupby("model"):
        mae = float(np.mean(np.abs(part["y_pred"].to_numpy() - truth[part["id"]].to_numpy())))
        assert round(mae, 5) == pytest.approx(meta["test_mae"][model], abs=1e-9), model
        missing = len(test_rows) - len(part)
        assert missing == (1 if model == "elemnet" else 0)  # ElemNet's published file lacks one row per task
    if task == "formation_energy":
        assert meta["test_mae"] == FORMATION_ENERGY_TABLE2


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "reference"
    shutil.copytree(REFERENCE_DIR, folder)
    return folder


def test_an_edited_file_is_refused_with_one_line_naming_it(tmp_path):
    folder = _copy(tmp_path)
    path = folder / "oqmd_published_predictions.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ReferenceDataError) as error:
        published.load(folder)
    message = str(error.value)
    assert len(message.splitlines()) == 1 and str(path) in message and "sha256" in message


def test_a_file_whose_row_count_differs_from_the_archive_is_refused_naming_it(tmp_path):
    folder = _copy(tmp_path)
    path = folder / "oqmd_published_predictions.parquet"
    frame = pd.read_parquet(path)
    short = frame.drop(index=frame.index[(frame["task"] == "formation_energy") & (frame["row"] == 51_254)])
    buf = io.BytesIO()
    short.to_parquet(buf, index=False)
    path.write_bytes(buf.getvalue())
    manifest = json.loads((folder / published.MANIFEST_FILE).read_text())
    manifest["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()  # a consistent checksum, a wrong row count
    (folder / published.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ReferenceDataError) as error:
        published.load(folder)
    message = str(error.value)
    assert len(message.splitlines()) == 1 and str(path) in message
    assert "51254 rows for formation_energy" in message and "test.csv has 51255" in message


def test_references_join_only_runs_that_used_the_whole_training_part():
    quick = export.load_export(REPO / "docs/results/quick-equal-rounds/export")  # 10,000 training rows: not comparable
    assert full_training_sizes(quick.finals, "formation_energy") == []
    assert build_references(quick).predictions.empty
    elemnet = export.load_export(REPO / "docs/results/elemnet/export")  # all 239,190 rows
    assert full_training_sizes(elemnet.finals, "formation_energy") == [239_190]
    refs = build_references(elemnet)
    rows = refs.of("formation_energy", 239_190)
    assert refs.models("formation_energy", 239_190)[:3] == ["HotCrab", "CrabNet", "Roost"]
    maes = (rows["y_pred"] - rows["y_true"]).abs().groupby(rows["model"]).mean().round(5)
    assert maes["CrabNet"] == 0.03115 and maes["ElemNet"] == 0.04890 and maes["RF (500 trees, CBFV magpie)"] == 0.08341
    assert (rows["seed"] == -1).all() and set(rows["fold"]) == {0}


def test_the_elemnet_report_shows_reference_rows_paired_with_the_best_of_ours_and_the_error_breakdown():
    from reports.build import report_of

    report = report_of(export.load_export(REPO / "docs/results/elemnet/export"))
    md = report.files["leaderboard.md"].decode()
    assert "| — | CrabNet (published predictions, same split) | 0.03115 |" in md  # a row, not a rank
    assert "CrabNet (published, same split)" not in md  # the copied figure gives way to the scored predictions
    assert "| CrabNet | elemnet | 239,190 | 51,255 | 1 | 0.03115 |" in md  # paired with the best (only) model
    assert "| ElemNet | elemnet | 239,190 | 51,254 |" in md
    assert "MAE binary (2,460 rows)" in md and "MAE, \\|y\\| ≤ 5" in md and "4 test row(s) left out" in md
    assert "plots/formation_energy_elements.png" in report.files
    assert report.ranks["model"].tolist() == ["elemnet"]  # references never ranked


def test_element_groups_and_the_unphysical_rule():
    assert [breakdown.group_of(n) for n in (1, 2, 3, 4, 7)] == ["unary", "binary", "ternary", "quaternary+",
                                                                "quaternary+"]  # fmt: skip
    counts = breakdown.element_counts("formation_energy")
    assert counts is not None and len(counts) == 51_255
    assert counts.value_counts().sort_index().to_dict() == {2: 2460, 3: 39381, 4: 9143, 5: 240, 6: 25, 7: 6}
    assert breakdown.element_counts("my_own_data") is None
    assert breakdown.UNPHYSICAL["formation_energy"].limit == 5.0
