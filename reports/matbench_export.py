"""Export results in Matbench's own results-file format, so anyone can reload and rescore them with matbench.

The format is what ``matbench.bench.MatbenchBenchmark.to_file`` (matbench 0.6) writes and ``from_file`` loads:
JSON of ``{"@module", "@class", "version", "tasks", "user_metadata", "benchmark_name", "datestamp", "hash"}``;
each task holds ``{"@module", "@class", "benchmark_name", "dataset_name", "results"}`` and its results map
``fold_i`` to ``{"data": {matbench_id: prediction}, "parameters": {...}, "scores": {mae, rmse, mape,
max_error}}``. ``from_file`` recomputes ``hash`` (sha256 of the key-sorted JSON without it) and checks every
fold's ids against the official ``matbench_v0.1_validation.json``; it does not need the dataset itself.

Each (model, seed) gets one submission folder, ``matbench_v0.1_irnet-bench-<model>-seed<seed>/``, as the Matbench
contribution guide (matbench docs, "Submit to leaderboard") asks for: ``results.json.gz`` and ``info.json``
(authors, algorithm, algorithm_long, bibtex_refs, notes, requirements), here with the commands that made the
runs, the code version and which structure tasks were run from their formulas alone (composition-only, as the
leaderboard labels such entries). matbench 0.6 reads and writes plain JSON (``open(..., "r")``, even for a
``.json.gz`` name) while the Matbench repository keeps submissions gzipped: ``gunzip -k results.json.gz`` gives
the file ``MatbenchBenchmark.from_file`` loads.

This module does not import matbench (it cannot be installed with its dependencies on Python 3.11); the
tests load our files with the real package.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.metrics import regression_metrics

BENCHMARK_NAME = "matbench_v0.1"
MATBENCH_VERSION = "0.6"  # the package version whose format this is; from_file only warns on a mismatch
N_FOLDS = 5
DATESTAMP_FMT = "%Y.%m.%d %H:%M.%S"  # MatbenchBenchmark._DATESTAMP_FMT
MAPE_THRESHOLD = 1e-5  # matbench.data_ops.mean_absolute_percentage_error ignores |y_true| below this


def matbench_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The four regression scores matbench records per fold (``matbench.data_ops.score_array``)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    ours = regression_metrics(y_true, y_pred)
    mask = np.abs(y_true) > MAPE_THRESHOLD
    mape = float(np.mean(np.fabs((y_true[mask] - y_pred[mask]) / y_true[mask]))) if mask.any() else math.nan
    return {"mae": ours["mae"], "rmse": ours["rmse"], "mape": mape, "max_error": ours["max_error"]}


def _immutify(d: dict[str, Any]) -> dict[str, Any]:
    """matbench.util.immutify_dictionary: keys sorted at every dict level, lists kept (JSON is the same)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out[k] = _immutify(v) if isinstance(v, dict) else v
    return dict(sorted(out.items(), key=lambda item: item[0]))


def hash_dictionary(d: dict[str, Any]) -> str:
    """matbench.util.hash_dictionary: sha256 of the JSON of the key-sorted dictionary."""
    return hashlib.sha256(json.dumps(_immutify(d)).encode("utf-8")).hexdigest()


def expected_ids(task: str, n_rows: int) -> list[str]:
    """Matbench's ids of a task with ``n_rows`` rows (``mb-<task>-<i+1>``, zero-padded)."""
    from benchmarks.registry import matbench_ids

    return matbench_ids(task, n_rows)


def matbench_tasks(tasks: list[str]) -> dict[str, int]:
    """The Matbench regression tasks among ``tasks``, with their official row counts."""
    from benchmarks.registry import TASKS

    return {t: TASKS[t].n_rows for t in tasks if t in TASKS and TASKS[t].is_matbench and TASKS[t].metric == "mae"}


@dataclass
class MatbenchExport:
    """One results file: one model, one seed, every Matbench task it completed."""

    model: str
    seed: int
    name: str  # file stem
    document: dict[str, Any]
    tasks: list[str]
    mean_mae: dict[str, float]  # task -> mean over the 5 folds of the recorded MAE (what matbench reports)
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it is not in the file
    info: dict[str, Any] = field(default_factory=dict)  # the submission's info.json

    @property
    def folder(self) -> str:
        """The submission folder's name (``<benchmark name>_<algorithm name>``, the contribution guide's)."""
        return f"{BENCHMARK_NAME}_irnet-bench-{self.model}-seed{self.seed}"

    def json_bytes(self) -> bytes:
        # Plain json.dumps, as MSONable2File.to_file writes it.
        return json.dumps(self.document).encode("utf-8")

    def gzip_bytes(self) -> bytes:
        return gzip.compress(self.json_bytes(), mtime=0)  # mtime=0: identical input gives identical bytes

    def files(self) -> dict[str, bytes]:
        """The submission folder's files, by path relative to the report's ``matbench/`` folder."""
        info = json.dumps(self.info, indent=2, ensure_ascii=False) + "\n"
        return {f"{self.folder}/results.json.gz": self.gzip_bytes(), f"{self.folder}/info.json": info.encode()}


# Matbench's own paper and the attributes every model here reads, cited by each submission beside the model's.
MATBENCH_BIBTEX = (
    "@article{Dunn2020, author = {Dunn, Alexander and Wang, Qi and Ganose, Alex and Dopp, Daniel and Jain, "
    "Anubhav}, title = {Benchmarking materials property prediction methods: the Matbench test set and "
    "Automatminer reference algorithm}, journal = {npj Computational Materials}, volume = {6}, pages = {138}, "
    "year = {2020}, doi = {10.1038/s41524-020-00406-3}}"
)
FEATURIZER_BIBTEX = {
    "magpie": "@article{Ward2016, author = {Ward, Logan and Agrawal, Ankit and Choudhary, Alok and Wolverton, "
    "Christopher}, title = {A general-purpose machine learning framework for predicting properties of inorganic "
    "materials}, journal = {npj Computational Materials}, volume = {2}, pages = {16028}, year = {2016}, "
    "doi = {10.1038/npjcompumats.2016.28}}",
}
FEATURIZER_TEXT = {
    "magpie": "the 145 Magpie attributes of the formula (Ward et al., npj Comput. Mater. 2016)",
    "elemnet": "the formula's element fractions",
}


def _distinct(values: pd.Series) -> list[str]:
    return sorted({str(v) for v in values if str(v)})


def submission_info(
    model: str, runs: pd.DataFrame, composition_only: dict[str, bool], mean_mae: dict[str, float]
) -> dict[str, Any]:
    """``info.json`` of one model's submission, from what its runs recorded (summary, bibtex, featuriser,
    package versions, commands, code version); the keys the Matbench contribution guide requires first."""
    summary = next(iter(_distinct(runs["summary"])), "")
    featurizers = _distinct(runs["featurizer"])
    inputs = "; ".join(FEATURIZER_TEXT.get(f, f"the {f} features of the formula") for f in featurizers)
    structure_tasks = sorted(t for t, only in composition_only.items() if only)
    from_formulas = (
        f"; the structure tasks ({', '.join(structure_tasks)}) are run from their formulas alone, without the "
        "structure (composition-only)"
        if structure_tasks
        else ""
    )
    algorithm_long = (
        f"{summary or model}. Input: composition only, {inputs or 'the formula'}{from_formulas}"
        ". Tuned by Optuna on a validation part carved from each fold's training part, refit, and scored once on "
        f"the fold's official test part (irnet-bench, preset {', '.join(_distinct(runs['preset']))}, seed "
        f"{', '.join(_distinct(runs['seed']))})."
    )
    refs = [*_distinct(runs["bibtex"]), *(FEATURIZER_BIBTEX[f] for f in featurizers if f in FEATURIZER_BIBTEX)]
    pins = sorted({pin for recorded in runs["requirements"] for pin in str(recorded).split("; ") if pin})
    requirements = [*pins, f"matbench=={MATBENCH_VERSION}"]
    return {
        "authors": "irnet-bench contributors",
        "algorithm": f"{model} (irnet-bench, composition-only)",
        "algorithm_long": algorithm_long,
        "bibtex_refs": "\n".join([*refs, MATBENCH_BIBTEX]),
        "notes": f"Made with irnet-bench at code version {', '.join(_distinct(runs['code_version']))} (a git "
        "commit of the suite); the exact commands are under irnet_bench.commands (run again, they skip the "
        "finished runs and resume the rest).",
        "requirements": {"python": requirements},
        "irnet_bench": {
            "code_version": _distinct(runs["code_version"]),
            "commands": _distinct(runs["command"]),
            "composition_only_tasks": structure_tasks,
            "mean_mae": {task: mean_mae[task] for task in sorted(mean_mae)},
        },
    }


def _task_results(
    runs: pd.DataFrame, predictions: pd.DataFrame, task: str, n_rows: int
) -> tuple[dict[str, Any] | None, str]:
    """``results`` of one task (one model, one seed), or None and the reason it cannot be exported."""
    folds = sorted(int(f) for f in runs["fold"].unique())
    if folds != list(range(N_FOLDS)):
        return None, f"folds {folds} recorded, Matbench needs all of 0..{N_FOLDS - 1}"
    caps = sorted(set(runs["max_train_rows"]) - {"all"})
    if caps:  # the quick preset caps training rows; a Matbench record trains on all of each fold's training part
        return None, f"trained on at most {', '.join(caps)} rows per fold, Matbench needs all (--max-train-rows 0)"
    results: dict[str, Any] = {}
    seen: set[str] = set()
    for _, run in runs.sort_values("fold").iterrows():
        part = predictions[predictions["run_id"] == run["run_id"]]
        ids = part["id"].astype(str).tolist()
        if seen.intersection(ids):
            return None, f"fold {run['fold']} repeats test ids of an earlier fold"
        seen.update(ids)
        params = {str(k): str(v) for k, v in run["params"].items()}
        params.update(run_id=run["run_id"], code_version=run["code_version"], preset=run["preset"])
        results[f"fold_{int(run['fold'])}"] = {
            "data": {i: float(p) for i, p in zip(ids, part["y_pred"].to_numpy(dtype=float), strict=True)},
            "parameters": params,
            "scores": matbench_scores(part["y_true"].to_numpy(), part["y_pred"].to_numpy()),
        }
    expected = set(expected_ids(task, n_rows))
    if seen != expected:
        missing, extra = len(expected - seen), len(seen - expected)
        return None, f"test ids do not cover the official {n_rows} rows ({missing} missing, {extra} unknown)"
    return results, ""


def build_exports(finals: pd.DataFrame, predictions: pd.DataFrame) -> list[MatbenchExport]:
    """One :class:`MatbenchExport` per (model, seed) with at least one complete Matbench task."""
    official = matbench_tasks(sorted(finals["task"].unique()))
    exports: list[MatbenchExport] = []
    rows = finals[finals["task"].isin(official)]
    for (model, seed), runs in rows.groupby(["model", "seed"], sort=True):
        tasks_doc: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        mean_mae: dict[str, float] = {}
        for task, task_runs in runs.groupby("task", sort=True):
            results, why = _task_results(task_runs, predictions, task, official[task])
            if results is None:
                skipped[task] = why
                continue
            tasks_doc[task] = {
                "@module": "matbench.task",
                "@class": "MatbenchTask",
                "benchmark_name": BENCHMARK_NAME,
                "dataset_name": task,
                "results": results,
            }
            mean_mae[task] = float(np.mean([results[f"fold_{i}"]["scores"]["mae"] for i in range(N_FOLDS)]))
        if not tasks_doc:
            exports.append(MatbenchExport(str(model), int(seed), "", {}, [], {}, skipped))
            continue
        latest = datetime.datetime.fromtimestamp(runs["start_time"].max() / 1000, tz=datetime.UTC)
        composition_only = {t: bool(g["composition_only"].iloc[0]) for t, g in runs.groupby("task") if t in tasks_doc}
        document: dict[str, Any] = {
            "@module": "matbench.bench",
            "@class": "MatbenchBenchmark",
            "version": MATBENCH_VERSION,
            "tasks": tasks_doc,
            "user_metadata": {
                "algorithm": str(model),
                "seed": int(seed),
                "suite": "irnet-bench",
                "preset": str(runs["preset"].iloc[0]),
                "composition_only": composition_only,
            },
            "benchmark_name": BENCHMARK_NAME,
            # The latest run's start, not the wall clock: rebuilding the report gives the same file.
            "datestamp": latest.strftime(DATESTAMP_FMT),
        }
        document["hash"] = hash_dictionary(document)
        info = submission_info(str(model), runs[runs["task"].isin(tasks_doc)], composition_only, mean_mae)
        exports.append(
            MatbenchExport(
                str(model), int(seed), f"{model}_seed{int(seed)}", document, sorted(tasks_doc), mean_mae, skipped, info
            )
        )
    return exports
