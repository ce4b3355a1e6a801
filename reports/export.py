"""Results that live in the repository: a compact, versioned export of a store's finished parent runs.

    python -m reports.export --tracking-uri URI --out DIR [--task NAME ...] [--preset NAME]
    python -m reports.export --import DIR --tracking-uri URI

The first form writes every finished parent run of the store (the runs :func:`reports.collect.collect` reads
for the report, of the tasks and preset given) into DIR; ``python -m reports.build --export DIR`` builds the
same report from it as from the store, and the second form recreates the runs in an MLflow store (sqlite or
a tracking server) so that ``mlflow ui`` browses them and ``reports.build`` reads them as it reads any store.

Format ``irnet-bench-export``, version :data:`VERSION`. DIR holds the manifest and eight parquet files
(zstd-compressed, written by pyarrow); a row's ``run_id`` is the run's published id (its MLflow id in the store
it was first exported from). Rows are in the order of the report's runs table (task, model, training size,
fold, seed), then as named, so the same store exported twice gives the same bytes.

``irnet-bench-export.json`` (the manifest, written last): ``format``, ``version``, ``tracking_uri`` (the store
exported, without a password), ``selection`` (the ``tasks`` and ``preset`` asked for; null = all), ``tasks``,
``preset``, ``runs`` (count), ``skipped`` (notes on unfinished parent runs left out, as the report lists
them), and ``files``: per file its ``rows``, ``bytes`` and ``sha256`` (a reader refuses a file that differs).

============================  ==========================================================================================
file                          columns (one row per ...)
============================  ==========================================================================================
``runs.parquet``              the columns of ``Collected.finals`` (one per finished parent run): ``run_id``, the key
                              (``task, model, fold, seed, preset, train_size``; ``train_rows`` as recorded), provenance
                              (``code_version, data_sha256, featurizer, device, composition_only, max_train_rows,
                              val_seed``), ``unit, depth, budget``, ``params`` (the tuned configuration, a JSON object
                              of strings), ``start_time, end_time`` (ms since 1970), ``refit_stopped, refit_reused,
                              model_uri, command, summary, bibtex, requirements`` (empty on runs recorded before
                              2026-12-05's tags), ``test_mae, test_rmse, test_r2, test_max_error``, ``train_seconds,
                              inference_seconds, tuning_seconds, n_trials, best_val_mae, n_train, n_test``. The table
                              to read for analysis.
``tags.parquet``              ``run_id, key, value``: every tag of the run (package versions ``pkg.*``, ``study_name``,
                              ``train_test_duplicates``, ...) but the worker's (``final_owner``, ``final_heartbeat``)
``params.parquet``            ``run_id, key, value``: every MLflow parameter of the run, as logged (strings)
``metrics.parquet``           ``run_id, key, value`` (float64): the run's metrics but the per-step curves
``curves.parquet``            ``run_id, step, train_mae, val_mae`` (float64, null where a step lacks one): the refit's
                              curve
``trials.parquet``            ``run_id, trial_number, trial_state, trial_val_mae``: the Optuna trials of the run's study
                              that were scored (run_id is the parent run's)
``predictions.parquet``       ``run_id, id, y_true, y_pred`` (float32; id is the task's row id): the test predictions,
                              in the order of the run's ``predictions.csv``
``val_predictions.parquet``   ``run_id, id, y_true, y_pred`` (float32): the refit's predictions on its validation rows
                              (what post-hoc ensembles are selected on, :mod:`reports.ensembles`); no rows for a run
                              that recorded none (written before 2026-12-08). New in version 2: an export of version 1
                              has no such file and reads as runs without validation predictions (no ensemble).
============================  ==========================================================================================

Size: about 0.4 MB per run scored on the 51,255 test rows of formation_energy (its predictions; floats do not
compress), a few kB per run of a small task. Not exported: the fitted models and figures (the report redraws
its figures), the dataset input, the trials' curves and parameters. Float32 predictions change an MAE recomputed
from them by at most 2**-24 of the values' mean magnitude; the report's tables use the logged float64 metrics.

Writing: every file atomically, the manifest last, into an empty folder or over an earlier export (nothing
else in DIR is touched). Importing: a run already imported (tag ``source_run_id``) is skipped, so an import can
be repeated or resumed; a store that already holds a finished run of the same key is refused before anything is
written. Bad input is one line and exit 2.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.atomic import atomic_write_bytes
from benchmarks.cli import ArgumentParser, main_guard
from benchmarks.errors import UsageError
from reports.collect import Collected, RunRecord, assemble, collect, finals_from_records
from studies import schema
from studies.stores import is_local_store, redact_url, sqlite_path

FORMAT = "irnet-bench-export"
VERSION = 2  # 2: val_predictions.parquet (2026-12-08); version 1 exports are read as runs without them
MANIFEST = "irnet-bench-export.json"
FILES = ("runs", "tags", "params", "metrics", "curves", "trials", "predictions", "val_predictions")  # <name>.parquet
FILES_V1 = FILES[:-1]  # what an export of version 1 holds
# Strings repeat (run ids, keys, values), so a dictionary pays; the row ids are unique and floats rarely repeat,
# where a dictionary only adds a fallback page (measured: 100 kB instead of 32 kB for 51,255 ids).
NO_DICTIONARY = {"id"}


class ExportError(UsageError):
    """An export folder that cannot be read or written as asked (exit 2)."""


# ------------------------------------------------------------------------------------------------ writing ---


def _runs_frame(finals: pd.DataFrame) -> pd.DataFrame:
    return finals.assign(params=[json.dumps(p, sort_keys=True) for p in finals["params"]])


def _long(records: Sequence[RunRecord], field: str) -> pd.DataFrame:
    rows = [(r.run_id, k, v) for r in records for k, v in sorted(getattr(r, field).items())]
    return pd.DataFrame(rows, columns=["run_id", "key", "value"])


def tables(collected: Collected) -> dict[str, pd.DataFrame]:
    """The export's tables (name -> frame) of what :func:`reports.collect.collect` read."""
    trials = collected.trials.rename(columns={"parent_run_id": "run_id"})
    curves = collected.curves
    return {
        "runs": _runs_frame(collected.finals),
        "tags": _long(collected.records, "tags"),
        "params": _long(collected.records, "params"),
        "metrics": _long(collected.records, "metrics").astype({"value": np.float64}),
        "curves": curves[["run_id", "step", schema.CURVE_TRAIN, schema.CURVE_VAL]].astype({"step": np.int64}),
        "trials": trials[["run_id", "trial_number", "trial_state", "trial_val_mae"]].astype({"trial_number": np.int64}),
        "predictions": collected.predictions[["run_id", "id", "y_true", "y_pred"]].astype(
            {"id": str, "y_true": np.float32, "y_pred": np.float32}
        ),
        "val_predictions": _val_rows(collected),
    }


def _val_rows(collected: Collected) -> pd.DataFrame:
    """The validation predictions in the order of the report's runs (then as recorded), float32."""
    val = collected.val_predictions
    order = {run_id: i for i, run_id in enumerate(collected.finals["run_id"])}
    val = val.assign(_order=val["run_id"].map(order)).sort_values("_order", kind="stable")
    return val[["run_id", "id", "y_true", "y_pred"]].astype({"id": str, "y_true": np.float32, "y_pred": np.float32})


def _parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # No pandas metadata (it names the pandas version): the file holds the table and its arrow schema only.
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False).replace_schema_metadata(None)
    strings = [f.name for f in table.schema if pa.types.is_string(f.type) and f.name not in NO_DICTIONARY]
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=strings)
    return buf.getvalue()


def export_files(collected: Collected, selection: dict[str, Any]) -> dict[str, bytes]:
    """Every file of the export of ``collected`` (name -> bytes), the manifest among them."""
    files: dict[str, bytes] = {}
    listing: dict[str, dict[str, Any]] = {}
    for name, frame in tables(collected).items():
        data = _parquet(frame)
        files[f"{name}.parquet"] = data
        listing[f"{name}.parquet"] = {
            "rows": len(frame),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    finals = collected.finals
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "tracking_uri": redact_url(collected.tracking_uri),
        "selection": selection,
        "tasks": collected.tasks,
        "preset": str(finals["preset"].iloc[0]),
        "runs": len(finals),
        "skipped": list(collected.skipped),
        "files": listing,
    }
    files[MANIFEST] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")
    return files


def _previous_files(out: Path) -> list[str]:
    """Files of an earlier export in ``out``; refuses a folder that holds anything else and no export."""
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            return [*json.loads(manifest.read_text())["files"], MANIFEST]
        except (ValueError, KeyError, TypeError):
            return [MANIFEST]  # unreadable: overwrite what this module writes, leave the rest alone
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and holds no export ({MANIFEST}); give an empty or new folder as --out")
    return []


def write_export(files: dict[str, bytes], out: Path) -> None:
    """Each file atomically, the manifest last; files an earlier export wrote that this one does not are removed."""
    previous = _previous_files(out)
    for name in sorted(files, key=lambda n: n == MANIFEST):
        atomic_write_bytes(out / name, files[name])
    for name in set(previous) - set(files):
        if "/" not in name and (out / name).is_file():  # only plain names this module could have written
            (out / name).unlink()


def export_store(
    tracking_uri: str, out: Path, tasks: list[str] | None = None, preset: str | None = None
) -> dict[str, bytes]:
    """Export the finished parent runs of the store into ``out``; returns what was written."""
    files = export_files(collect(tracking_uri, tasks, preset), {"tasks": tasks, "preset": preset})
    write_export(files, out)
    return files


# ------------------------------------------------------------------------------------------------ reading ---


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the export in ``folder``, checked against the files beside it."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportError(
            f"{folder} holds no export ({MANIFEST} missing); make one with "
            "python -m reports.export --tracking-uri URI --out DIR"
        )
    try:
        manifest = json.loads(path.read_text())
        format_, version, listing = manifest["format"], manifest["version"], manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(
            f"{path} is not an export manifest ({type(exc).__name__}: {exc}); re-export the store"
        ) from None
    if format_ != FORMAT or not isinstance(version, int):
        raise ExportError(f"{path}: format {format_!r} version {version!r}, expected {FORMAT!r} version {VERSION}")
    if version > VERSION:
        raise ExportError(
            f"{path}: export format version {version} is newer than this code reads ({VERSION}); update irnet-bench"
        )
    for name in (f"{n}.parquet" for n in export_files_of(version)):
        file = folder / name
        if name not in listing or not file.is_file():
            raise ExportError(f"{folder}: {name} missing from the export; copy the whole folder or re-export the store")
        if hashlib.sha256(file.read_bytes()).hexdigest() != listing[name]["sha256"]:
            raise ExportError(f"{file} differs from its manifest (edited or half-copied); re-export the store")
    return manifest


def export_files_of(version: int) -> tuple[str, ...]:
    """The parquet files (names without ``.parquet``) an export of format ``version`` holds."""
    return FILES_V1 if version < 2 else FILES


def _read_table(folder: Path, name: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(folder / f"{name}.parquet").to_pandas()


def _by_run(frame: pd.DataFrame, cast: type) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for run_id, key, value in zip(frame["run_id"], frame["key"], frame["value"], strict=True):
        out.setdefault(run_id, {})[key] = cast(value)
    return out


def load_export(folder: Path) -> Collected:
    """The :class:`Collected` of an export: the same as :func:`reports.collect.collect` gives for the store it was
    made from (predictions in float32), read through the same checks."""
    manifest = read_manifest(folder)
    t = {name: _read_table(folder, name) for name in export_files_of(int(manifest["version"]))}
    tags, params, metrics = _by_run(t["tags"], str), _by_run(t["params"], str), _by_run(t["metrics"], float)
    runs = t["runs"]
    records = [
        RunRecord(
            run_id=run_id, store_id=run_id, task=task, start_time=int(start),
            end_time=None if end is None or (isinstance(end, float) and math.isnan(end)) else int(end),
            tags=tags.get(run_id, {}), params=params.get(run_id, {}), metrics=metrics.get(run_id, {}),
        )
        for run_id, task, start, end in zip(runs["run_id"], runs["task"], runs["start_time"], runs["end_time"],
                                            strict=True)
    ]  # fmt: skip
    source = f"the export in {folder}"
    finals, records, _ = finals_from_records(records, [], source, None)
    trials = t["trials"].rename(columns={"run_id": "parent_run_id"})
    return assemble(manifest["tracking_uri"], finals, records, t["curves"], trials, t["predictions"],
                    manifest.get("skipped", []), from_export=True,
                    val_predictions=t.get("val_predictions"))  # fmt: skip


# ---------------------------------------------------------------------------------------------- importing ---


def _artifact_root(tracking_uri: str) -> Path | None:
    """Where an imported experiment's artifacts go: beside an sqlite store (as benchmarks.run puts them), or
    wherever a tracking server says (None)."""
    if not is_local_store(tracking_uri):
        return None
    if tracking_uri.startswith("sqlite:"):
        return Path(sqlite_path(tracking_uri)).parent
    raise ExportError(
        f"--import writes into sqlite:///PATH or an MLflow tracking server (http://...), not {redact_url(tracking_uri)}"
    )


def _key(record: RunRecord) -> schema.RunKey:
    tags = record.tags
    size = tags.get(schema.TAG_TRAIN_SIZE)
    return schema.RunKey(record.task, tags[schema.TAG_MODEL], int(tags[schema.TAG_FOLD]), int(tags[schema.TAG_SEED]),
                         tags[schema.TAG_PRESET], int(size) if size else None)  # fmt: skip


def _plan_import(client: Any, records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """The records still to import, and ids of half-imported runs to delete first; refuses a key the store
    already holds a finished run of (the report would count it twice)."""
    from studies.schema import is_done
    from studies.tracking import find_parent_runs

    todo, stale = [], []
    for record in records:
        experiment = client.get_experiment_by_name(record.task)
        existing = find_parent_runs(client, experiment.experiment_id, _key(record)) if experiment else []
        copies = [r for r in existing if r.data.tags.get(schema.TAG_SOURCE_RUN_ID) == record.run_id]
        others = [r for r in existing if r not in copies and is_done(r)]
        if others:
            raise ExportError(
                f"the store already holds finished run {others[0].info.run_id} for {record.task} "
                f"{_key(record).run_name}; import into another store (e.g. a new sqlite:///PATH)"
            )
        if any(is_done(r) for r in copies):
            continue
        stale += [r.info.run_id for r in copies]
        todo.append(record)
    return todo, stale


def _import_run(client: Any, experiment_id: str, record: RunRecord, collected: Collected, scratch: Path) -> None:
    """One parent run as :func:`studies.tracking.log_final` writes it (tags, parameters, curve, predictions,
    trials), and last, in one batch, its summary metrics and the done tag."""
    from mlflow.entities import Metric, Param

    from studies.outcomes import TrialOutcome
    from studies.tracking import (
        ARTIFACT_VAL_PREDICTIONS,
        MLFLOW_RUN_NAME_TAG,
        MlflowTrialRecorder,
        log_metrics,
        log_params,
        mark_done,
        write_val_predictions,
    )

    # MLflow sets a new run's id itself; the published id travels as a tag, as mlflow-export-import keeps
    # source ids in tags (github.com/mlflow/mlflow-export-import, README_governance.md, "source tags").
    tags = {k: v for k, v in record.tags.items() if k != schema.TAG_STATUS}
    tags[schema.TAG_SOURCE_RUN_ID] = record.run_id
    run_name = tags.get(MLFLOW_RUN_NAME_TAG) or _key(record).run_name
    run_id = client.create_run(experiment_id, start_time=record.start_time, tags=tags, run_name=run_name).info.run_id
    log_params(client, run_id, [Param(k, v) for k, v in sorted(record.params.items())])
    curve = collected.curves[collected.curves["run_id"] == record.run_id]
    log_metrics(client, run_id, [
        Metric(name, float(value), record.start_time, int(step))
        for step, tm, vm in zip(curve["step"], curve[schema.CURVE_TRAIN], curve[schema.CURVE_VAL], strict=True)
        for name, value in ((schema.CURVE_TRAIN, tm), (schema.CURVE_VAL, vm))
        if math.isfinite(value)
    ])  # fmt: skip
    rows = collected.predictions[collected.predictions["run_id"] == record.run_id]
    csv = scratch / run_id / schema.ARTIFACT_PREDICTIONS
    csv.parent.mkdir(parents=True)
    rows[["id", "y_true", "y_pred"]].to_csv(csv, index=False)  # float64 of the float32 values: read back exactly
    client.log_artifact(run_id, str(csv))
    val = collected.val_predictions[collected.val_predictions["run_id"] == record.run_id]
    if len(val):  # a run that recorded validation predictions gets them back (float32, as recorded)
        client.log_artifact(run_id, str(write_val_predictions(scratch / run_id / ARTIFACT_VAL_PREDICTIONS,
                                                              val["id"].to_numpy(), val["y_true"].to_numpy(),
                                                              val["y_pred"].to_numpy())))  # fmt: skip

    key_tags = {k: record.tags[k] for k in (*_key(record).tags(), schema.TAG_STUDY_NAME) if k in record.tags}
    recorder = MlflowTrialRecorder(client, experiment_id, run_id, key_tags)
    at = record.start_time / 1000
    for trial in collected.trials[collected.trials["parent_run_id"] == record.run_id].itertuples():
        value = None if math.isnan(trial.trial_val_mae) else float(trial.trial_val_mae)
        recorder.record(TrialOutcome(int(trial.trial_number), trial.trial_state, {}, value, [], at, at))

    client.set_terminated(run_id, status="FINISHED", end_time=record.end_time)
    stamp = record.end_time or record.start_time
    mark_done(client, run_id, [Metric(k, v, stamp, 0) for k, v in sorted(record.metrics.items()) if math.isfinite(v)])


def import_export(folder: Path, tracking_uri: str) -> tuple[int, int]:
    """Recreate the export's parent runs in the store; returns (runs imported, runs already there)."""
    from studies.stores import check_tracking_uri, make_client
    from studies.tracking import ensure_experiment

    collected = load_export(folder)  # every check before the first write
    root = _artifact_root(tracking_uri)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)  # a new sqlite store's folder
    check_tracking_uri(tracking_uri)
    client = make_client(tracking_uri)
    todo, stale = _plan_import(client, collected.records)
    for run_id in stale:  # an import killed before a run's done mark: that run is redone
        client.delete_run(run_id)
    with tempfile.TemporaryDirectory(prefix="irnet-bench-import-") as scratch:
        for record in todo:
            experiment_id = ensure_experiment(client, record.task, root or Path.cwd(), tracking_uri)
            _import_run(client, experiment_id, record, collected, Path(scratch))
    return len(todo), len(collected.records) - len(todo)


# -------------------------------------------------------------------------------------------- command line ---


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m reports.export", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tracking-uri", metavar="URI", help="the MLflow store: read by an export, written by --import"
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="export into this folder (created if missing)")
    parser.add_argument(
        "--import", dest="import_dir", type=Path, metavar="DIR", help="import this export into the store"
    )
    parser.add_argument("--task", "--tasks", action="append", metavar="NAME",
                        help="export only this task (repeatable, or comma-separated); default all")  # fmt: skip
    parser.add_argument("--preset", help="export only runs of this preset (required when the store holds several)")
    return parser.parse_args(argv)


def _tasks(values: Iterable[str] | None) -> list[str] | None:
    tasks = [t for value in values or () for t in value.split(",") if t]
    return tasks or None


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.tracking_uri:
        raise UsageError(
            "give --tracking-uri URI: the store to export (with --out DIR) or to import into (with --import DIR)"
        )
    if (args.out is None) == (args.import_dir is None):
        raise UsageError(
            "give either --out DIR (export the store) or --import DIR (import an export), not both or neither"
        )
    if args.import_dir is not None:
        if args.task or args.preset:
            raise UsageError("--import takes the whole export; --task and --preset select what an export holds")
        imported, present = import_export(args.import_dir, args.tracking_uri)
        print(f"reports.export: {imported} run(s) imported into {redact_url(args.tracking_uri)}"
              f"{f', {present} already there' if present else ''}")  # fmt: skip
        return 0
    files = export_store(args.tracking_uri, args.out, _tasks(args.task), args.preset)
    runs = json.loads(files[MANIFEST])["runs"]
    size = sum(len(data) for data in files.values())
    print(f"reports.export: {runs} run(s) -> {args.out} ({size / 1e3:,.1f} kB, {size / runs / 1e3:,.1f} kB per run)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit 2."""
    return main_guard(run, argv)


if __name__ == "__main__":
    sys.exit(main())
