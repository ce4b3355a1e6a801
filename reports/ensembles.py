"""Post-hoc ensembles of the suite's models: is the best predictor one model?

Per key (task, fold, seed, training size) the suite holds several tuned models scored on the same rows. Their
refits' validation predictions (recorded by every parent run since 2026-12-08,
:data:`studies.tracking.ARTIFACT_VAL_PREDICTIONS`)
are the selection rows of Caruana's greedy ensemble selection with replacement (Caruana, Niculescu-Mizil, Crew and
Ksikes, "Ensemble selection from libraries of models", ICML 2004; :mod:`studies.ensembling`), over three libraries:
all the key's models (``ensemble-all``), its networks (``ensemble-networks``) and its tree ensembles
(``ensemble-trees``), families as the runs recorded them; a library of fewer than two models, or the same models
as a library before it, gives no ensemble. Each ensemble is then scored once on the fold's test rows. Where a
model ran several seeds on one (task, fold, training size), the mean of those seeds' test predictions is a row of
its own (``<model>-seedavg``, equal weights, nothing selected). The validation rows also early-stopped and tuned
the members, so an ensemble's validation MAE is optimistic; its test MAE is not.

A run without validation predictions (written before 2026-12-08, or read from an export of format version 1) is
left out of the ensembles and named in the report; seed averages need none. Predictions are rounded to float32
before they are combined (an export keeps float32), so a report from a store and one from its export agree.

:func:`log_ensembles` records each ensemble of a benchmark's runs in its MLflow store (``run_kind=ensemble``, with
its test predictions and an MLflow model that takes formulas, :mod:`studies.ensemble_model`), for
``benchmarks.run``'s console leaderboard.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.metrics import regression_metrics
from reports import declared, stats
from reports.collect import PREDICTION_COLUMNS, Collected, ReportInputError
from studies import schema
from studies.ensembling import ROUNDS, combine, greedy_selection, weights_of
from studies.tracking import KIND_ENSEMBLE

PREFIX = "ensemble-"
# Library -> the recorded model family it takes (None: every model of the key).
LIBRARIES: tuple[tuple[str, str | None], ...] = (("all", None), ("networks", "network"), ("trees", "tree"))
SEED_AVERAGE = "seedavg"
NO_SEED = stats.NO_SEED  # the seed of a seed average (it has all of them)
CARUANA_BIBTEX = (
    "@inproceedings{Caruana2004, author = {Caruana, Rich and Niculescu-Mizil, Alexandru and Crew, Geoff and Ksikes, "
    "Alex}, title = {Ensemble selection from libraries of models}, booktitle = {Proceedings of the 21st "
    "International Conference on Machine Learning (ICML)}, year = {2004}, doi = {10.1145/1015330.1015432}}"
)
MAX_LISTED = 8  # runs named in a note before "and N more"
# Tags of an ensemble's run in MLflow (log_ensembles).
TAG_ENSEMBLE_ID = "ensemble_id"
TAG_ENSEMBLE_KIND = "ensemble_kind"
TAG_ENSEMBLE_MEMBERS = "ensemble_members"  # JSON: [[run id, weight], ...]
METRIC_VAL_MAE = "ensemble_val_mae"


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: its parent run and weight."""

    run_id: str
    model: str
    seed: int
    weight: float
    model_uri: str = ""
    featurizer: str = ""


@dataclass(frozen=True)
class Ensemble:
    """One ensemble of one key, scored once on the key's test rows."""

    task: str
    name: str  # ensemble-all, ensemble-networks, ensemble-trees, <model>-seedavg
    kind: str  # all, networks, trees, seedavg
    fold: int
    seed: int  # NO_SEED for a seed average
    train_size: int
    members: tuple[Member, ...]
    val_mae: float  # on the selection rows (NaN for a seed average without validation predictions)
    best_single: str  # the library's best model alone on the validation rows ("" for a seed average)
    best_single_val_mae: float
    test: dict[str, float]  # mae, rmse, r2, max_error
    n_val: int
    n_test: int

    @property
    def run_id(self) -> str:
        """A stable id of the ensemble within its report (not an MLflow run id)."""
        seed = "seeds" if self.seed == NO_SEED else f"seed{self.seed}"
        return f"{self.name}:{self.task}:fold{self.fold}:{seed}:n{self.train_size}"

    def weights_text(self) -> str:
        """ "irnet 0.48, lightgbm 0.32, xgboost 0.20" (a seed average: "seeds 0, 1, 2, equal weights")."""
        if self.kind == SEED_AVERAGE:
            return f"seeds {', '.join(str(m.seed) for m in self.members)}, equal weights"
        return ", ".join(f"{m.model} {m.weight:.2f}" for m in self.members)


@dataclass(frozen=True)
class EnsembleSet:
    """Every ensemble of a report, their test predictions (as ``Collected.predictions``) and notes per task."""

    ensembles: tuple[Ensemble, ...] = ()
    predictions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PREDICTION_COLUMNS))
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def of(self, task: str, train_size: int | None = None) -> list[Ensemble]:
        return [e for e in self.ensembles if e.task == task and (train_size is None or e.train_size == train_size)]


def _float32(values: pd.Series) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _family(row: Any) -> str:
    return str(row.family) if getattr(row, "family", "") else declared.family(str(row.model))


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def build_ensembles(collected: Collected, *, float32: bool = True) -> EnsembleSet:
    """Every ensemble of ``collected`` (see the module's docstring), with ``float32`` member predictions rounded to
    float32 first (the report; ``False``: as recorded, for the ensemble's own MLflow run)."""
    finals = collected.finals
    preds = collected.predictions
    if float32:
        preds = preds.assign(y_true=_float32(preds["y_true"]), y_pred=_float32(preds["y_pred"]))
    test_by_run = {run_id: part.set_index("id") for run_id, part in preds.groupby("run_id", sort=False)}
    val = collected.val_predictions
    val_by_run = {run_id: part.set_index("id") for run_id, part in val.groupby("run_id", sort=False)}
    ensembles: list[Ensemble] = []
    frames: list[pd.DataFrame] = []
    notes: dict[str, list[str]] = {}
    for task, task_runs in finals.groupby("task", sort=True):
        task_notes = notes.setdefault(str(task), [])
        without = task_runs[~task_runs["run_id"].isin(val_by_run)]
        if len(without) == len(task_runs):
            task_notes.append(
                "No post-hoc ensemble of the suite's models: none of this task's runs recorded its validation "
                "predictions (runs written before 2026-12-08, or read back from an export of format version 1)."
            )
        elif len(without):
            listed = [f"{r.model} fold {r.fold} seed {r.seed} at {r.train_size:,} rows (run {r.run_id})"
                      for r in without.itertuples()]  # fmt: skip
            task_notes.append(
                f"Left out of the ensembles, no validation predictions recorded ({len(without)} run(s)): "
                f"{_listed(listed)}."
            )
        for (fold, seed, size), runs in task_runs.groupby(["fold", "seed", "train_size"], sort=True):
            runs = runs.sort_values("model")
            usable = [r for r in runs.itertuples() if r.run_id in val_by_run]
            chosen: list[frozenset[str]] = []
            for kind, family in LIBRARIES:
                library = [r for r in usable if family is None or _family(r) == family]
                ids = frozenset(r.run_id for r in library)
                if len(library) < 2 or ids in chosen:
                    continue
                chosen.append(ids)
                made = _selected(str(task), kind, int(fold), int(seed), int(size), library, val_by_run, test_by_run,
                                 task_notes)  # fmt: skip
                if made is not None:
                    ensembles.append(made[0])
                    frames.append(made[1])
        by_model = task_runs.groupby(["fold", "train_size", "model"], sort=True)
        for (fold, size, model), runs in by_model:
            if runs["seed"].nunique() < 2:
                continue
            seeds = list(runs.sort_values("seed").itertuples())
            made = _seed_average(str(task), str(model), int(fold), int(size), seeds, val_by_run, test_by_run)
            ensembles.append(made[0])
            frames.append(made[1])
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return EnsembleSet(tuple(ensembles), predictions, {t: tuple(n) for t, n in notes.items() if n})


def _matrix(runs: list[Any], by_run: dict[str, pd.DataFrame]) -> tuple[pd.Index, np.ndarray, np.ndarray] | None:
    """(ids, predictions [runs, rows], targets) of ``runs`` on the rows they all have, in sorted id order; None when
    their rows or targets differ."""
    first = by_run[runs[0].run_id]
    ids = pd.Index(sorted(first.index))
    matrix = np.empty((len(runs), len(ids)), dtype=np.float64)
    for i, run in enumerate(runs):
        part = by_run[run.run_id]
        if len(part) != len(ids) or not part.index.isin(ids).all():
            return None
        aligned = part.reindex(ids)
        if not np.allclose(aligned["y_true"].to_numpy(dtype=np.float64), first.reindex(ids)["y_true"], rtol=1e-6):
            return None
        matrix[i] = aligned["y_pred"].to_numpy(dtype=np.float64)
    return ids, matrix, first.reindex(ids)["y_true"].to_numpy(dtype=np.float64)


def _scored(task: str, name: str, fold: int, seed: int, size: int, runs: list[Any], weights: np.ndarray,
            test_by_run: dict[str, pd.DataFrame]) -> tuple[dict[str, float], pd.DataFrame, int]:  # fmt: skip
    """The test metrics and prediction rows of ``runs`` combined with ``weights``."""
    test = _matrix(runs, test_by_run)
    if test is None:  # reports.collect checks that a task's runs of one fold share their test rows
        raise ReportInputError(f"{task} fold {fold}: the runs of ensemble {name} were scored on different test rows")
    ids, matrix, y_true = test
    y_pred = combine(list(weights), list(matrix))
    rows = pd.DataFrame({"id": ids.to_numpy(dtype=object), "y_true": y_true, "y_pred": y_pred})
    key = {"task": task, "model": name, "fold": fold, "seed": seed, "train_size": size}
    return regression_metrics(y_true, y_pred), rows.assign(**key), len(ids)


def _member(run: Any, weight: float) -> Member:
    return Member(str(run.run_id), str(run.model), int(run.seed), float(weight), str(getattr(run, "model_uri", "")),
                  str(getattr(run, "featurizer", "")))  # fmt: skip


def _selected(task: str, kind: str, fold: int, seed: int, size: int, library: list[Any],
              val_by_run: dict[str, pd.DataFrame], test_by_run: dict[str, pd.DataFrame],
              notes: list[str]) -> tuple[Ensemble, pd.DataFrame] | None:  # fmt: skip
    """Caruana's selection over ``library`` on its validation rows, scored once on the test rows."""
    name = PREFIX + kind
    val = _matrix(library, val_by_run)
    if val is None:
        notes.append(f"No {name} at fold {fold}, seed {seed}, {size:,} rows: its models' validation rows differ.")
        return None
    _, matrix, y = val
    counts, val_mae = greedy_selection(matrix, y, ROUNDS)
    singles = np.abs(matrix - y[None, :]).mean(axis=1)
    kept = [i for i in range(len(library)) if counts[i] > 0]
    weights = weights_of(counts[kept])
    members = [library[i] for i in kept]
    test, rows, n_test = _scored(task, name, fold, seed, size, members, weights, test_by_run)
    ensemble = Ensemble(task, name, kind, fold, seed, size, tuple(_member(r, w) for r, w in zip(members, weights,
                        strict=True)), val_mae, str(library[int(np.argmin(singles))].model), float(singles.min()),
                        test, len(y), n_test)  # fmt: skip
    return ensemble, rows.assign(run_id=ensemble.run_id)[PREDICTION_COLUMNS]


def _seed_average(task: str, model: str, fold: int, size: int, runs: list[Any], val_by_run: dict[str, pd.DataFrame],
                  test_by_run: dict[str, pd.DataFrame]) -> tuple[Ensemble, pd.DataFrame]:  # fmt: skip
    """The equal-weight mean of one model's seeds on one (task, fold, training size)."""
    name = f"{model}-{SEED_AVERAGE}"
    weights = np.full(len(runs), 1.0 / len(runs))
    test, rows, n_test = _scored(task, name, fold, NO_SEED, size, runs, weights, test_by_run)
    val_mae, n_val = math.nan, 0
    val = _matrix(runs, val_by_run) if all(r.run_id in val_by_run for r in runs) else None
    if val is not None:
        _, matrix, y = val
        val_mae, n_val = float(np.abs(combine(list(weights), list(matrix)) - y).mean()), len(y)
    members = tuple(_member(r, w) for r, w in zip(runs, weights, strict=True))
    ensemble = Ensemble(task, name, SEED_AVERAGE, fold, NO_SEED, size, members, val_mae, "", math.nan, test, n_val,
                        n_test)  # fmt: skip
    return ensemble, rows.assign(run_id=ensemble.run_id)[PREDICTION_COLUMNS]


# ------------------------------------------------------------------------------------------ as runs ---


def summary_text(ensemble: Ensemble) -> str:
    """One sentence on what the ensemble is (its Matbench submission's algorithm_long starts with it)."""
    if ensemble.kind == SEED_AVERAGE:
        return f"Mean of the test predictions of {ensemble.members[0].model} trained with seeds " + ", ".join(
            str(m.seed) for m in ensemble.members
        )
    return (
        f"Post-hoc greedy ensemble selection with replacement (Caruana et al., ICML 2004) over the suite's tuned "
        f"{'models' if ensemble.kind == 'all' else ensemble.kind}, weights selected on each fold's validation rows"
    )


def ensemble_runs(ensembles: Iterable[Ensemble], finals: pd.DataFrame) -> pd.DataFrame:
    """The ensembles as rows like ``Collected.finals`` (what the Matbench export and the tables read): the key,
    the test metrics, ``params`` (member -> weight) and what the members recorded, joined."""
    by_id = finals.set_index("run_id")
    rows = []
    for e in ensembles:
        members = by_id.loc[[m.run_id for m in e.members]]

        def joined(column: str, members: pd.DataFrame = members) -> str:
            return "; ".join(dict.fromkeys(str(v) for v in members[column] if str(v)))

        pins = sorted({pin for text in members["requirements"] for pin in str(text).split("; ") if pin})
        rows.append({
            "run_id": e.run_id, "task": e.task, "model": e.name, "fold": e.fold, "seed": e.seed,
            "train_size": e.train_size, "preset": str(members["preset"].iloc[0]), "kind": e.kind,
            "composition_only": bool(members["composition_only"].iloc[0]),
            "max_train_rows": str(members["max_train_rows"].iloc[0]), "featurizer": joined("featurizer"),
            "code_version": joined("code_version"), "command": joined("command"), "start_time": int(members[
                "start_time"].max()), "summary": summary_text(e), "bibtex": "\n".join(
                [*dict.fromkeys(b for b in members["bibtex"] if b), CARUANA_BIBTEX]), "requirements": "; ".join(pins),
            "params": {(m.model if e.kind != SEED_AVERAGE else f"{m.model} seed {m.seed}"): f"{m.weight:.6g}"
                       for m in e.members},
            "members": e.weights_text(), "val_mae": e.val_mae, "n_members": len(e.members),
            **{schema.TEST_PREFIX + k: v for k, v in e.test.items()},
        })  # fmt: skip
    return pd.DataFrame(rows)


def ensembles_table(ensembles: Iterable[Ensemble]) -> pd.DataFrame:
    """One row per ensemble (the report's ensembles.csv): key, kind, members and weights, validation MAE (of the
    ensemble and of the library's best single model) and the test metrics."""
    rows = [
        {"task": e.task, "model": e.name, "kind": e.kind, "fold": e.fold, "seed": e.seed, "train_size": e.train_size,
         "members": ";".join(f"{m.model}:{m.seed}:{m.weight:.6g}:{m.run_id}" for m in e.members),
         "val_mae": e.val_mae, "best_single": e.best_single, "best_single_val_mae": e.best_single_val_mae,
         "n_val": e.n_val, "n_test": e.n_test, **{schema.TEST_PREFIX + k: v for k, v in e.test.items()}}
        for e in ensembles
    ]  # fmt: skip
    columns = ["task", "model", "kind", "fold", "seed", "train_size", "members", "val_mae", "best_single",
               "best_single_val_mae", "n_val", "n_test", *schema.TEST_METRICS]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).sort_values(["task", "model", "train_size", "fold", "seed"])


# ------------------------------------------------------------------------------ recorded in the store ---


@dataclass(frozen=True)
class LoggedEnsemble:
    """An ensemble recorded in the MLflow store, with its model's URI."""

    ensemble: Ensemble
    mlflow_run_id: str
    model_uri: str


def _restricted(collected: Collected, run_ids: set[str]) -> Collected:
    finals = collected.finals[collected.finals["run_id"].isin(run_ids)].reset_index(drop=True)
    return dataclasses.replace(
        collected,
        finals=finals,
        predictions=collected.predictions[collected.predictions["run_id"].isin(run_ids)],
        val_predictions=collected.val_predictions[collected.val_predictions["run_id"].isin(run_ids)],
    )


def _members_tag(ensemble: Ensemble) -> str:
    return json.dumps([[m.run_id, round(m.weight, 12)] for m in ensemble.members])


def log_ensembles(
    tracking_uri: str, task: str, preset: str, run_ids: set[str]
) -> tuple[list[LoggedEnsemble], list[str]]:
    """Record every ensemble of the finished runs ``run_ids`` of ``task`` in the store (once: an ensemble already
    recorded with the same members and weights is kept), each with its test predictions and an MLflow model that
    takes formulas; returns them and notes on those that could not be recorded."""
    from mlflow.entities import Metric, Param

    from reports.collect import collect
    from studies.ensemble_model import MemberModel, log_ensemble_model
    from studies.stores import make_client
    from studies.tracking import MLFLOW_RUN_NAME_TAG, log_params, mark_done, set_tags

    collected = _restricted(collect(tracking_uri, [task], preset), run_ids)
    made = build_ensembles(collected, float32=False)  # the recorded predictions, as the members' models give them
    client = make_client(tracking_uri)
    experiment = client.get_experiment_by_name(task)
    finals = collected.finals.set_index("run_id")
    logged: list[LoggedEnsemble] = []
    notes = [note for task_notes in made.notes.values() for note in task_notes]
    for e in made.ensembles:
        missing = [m.run_id for m in e.members if not m.model_uri]
        if missing:
            notes.append(f"{e.run_id}: member run(s) {', '.join(missing)} logged no model; not recorded")
            continue
        members_tag = _members_tag(e)
        found = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.{schema.TAG_KIND} = '{KIND_ENSEMBLE}' and tags.{TAG_ENSEMBLE_ID} = '{e.run_id}'",
        )
        done = [r for r in found if schema.is_done(r) and r.data.tags.get(TAG_ENSEMBLE_MEMBERS) == members_tag]
        if done:
            logged.append(LoggedEnsemble(e, done[0].info.run_id, done[0].data.tags[schema.TAG_MODEL_URI]))
            continue
        tags = {schema.TAG_KIND: KIND_ENSEMBLE, schema.TAG_TASK: task, schema.TAG_MODEL: e.name,
                schema.TAG_FOLD: str(e.fold), schema.TAG_SEED: str(e.seed), schema.TAG_PRESET: preset,
                schema.TAG_TRAIN_SIZE: str(e.train_size), TAG_ENSEMBLE_ID: e.run_id, TAG_ENSEMBLE_KIND: e.kind,
                TAG_ENSEMBLE_MEMBERS: members_tag, MLFLOW_RUN_NAME_TAG: e.run_id.replace(":", "-"),
                schema.TAG_MODEL_SUMMARY: summary_text(e), schema.TAG_MODEL_BIBTEX: CARUANA_BIBTEX}  # fmt: skip
        run_id = client.create_run(experiment.experiment_id, tags=tags, run_name=tags[MLFLOW_RUN_NAME_TAG]).info.run_id
        log_params(client, run_id, [Param(f"weight.{m.model}" + (f".seed{m.seed}" if e.kind == SEED_AVERAGE else ""),
                                          f"{m.weight:.12g}") for m in e.members])  # fmt: skip
        rows = made.predictions[made.predictions["run_id"] == e.run_id]
        _log_predictions(client, run_id, rows)
        member_rows = finals.loc[[m.run_id for m in e.members]]
        pins = sorted({pin for text in member_rows["requirements"] for pin in str(text).split("; ") if pin})
        requirements = pins or ["irnet-bench", "mlflow"]  # what the members' runs used (their models need less)
        uri = log_ensemble_model(
            client, run_id,
            [MemberModel(m.run_id, m.model, m.weight, m.model_uri, m.featurizer or "magpie") for m in e.members],
            example_formulas=_example_formulas(task, rows["id"]), requirements=requirements,
        )  # fmt: skip
        set_tags(client, run_id, {schema.TAG_MODEL_URI: uri})
        client.set_terminated(run_id, status="FINISHED")
        summary = {**{schema.TEST_PREFIX + k: v for k, v in e.test.items()}, METRIC_VAL_MAE: e.val_mae}
        now = int(time.time() * 1000)
        mark_done(client, run_id, [Metric(k, float(v), now, 0) for k, v in summary.items() if math.isfinite(v)])
        logged.append(LoggedEnsemble(e, run_id, uri))
    return logged, notes


EXAMPLE_ROWS = 3  # test formulas in an ensemble model's input example, as in a run's model


def _example_formulas(task: str, ids: pd.Series) -> list[str]:
    """The formulas of the first test rows, where the task's formulas are in the archive (none for user data)."""
    from benchmarks.published import formulas_of_test_rows

    formulas = formulas_of_test_rows(task)
    if formulas is None:
        return []
    return [str(formulas[i]) for i in list(ids)[:EXAMPLE_ROWS] if i in formulas.index]


def _log_predictions(client: Any, run_id: str, rows: pd.DataFrame) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="irnet-bench-ensemble-") as tmp:
        path = Path(tmp) / schema.ARTIFACT_PREDICTIONS
        rows[["id", "y_true", "y_pred"]].to_csv(path, index=False)
        client.log_artifact(run_id, str(path))


def best_ensemble_lines(logged: list[LoggedEnsemble], train_size: int, unit: str = "") -> list[str]:
    """The console's lines on the ensembles at ``train_size``: the best one by validation MAE (mean over its folds
    and seeds; never chosen on test), its test MAE and weights, and its MLflow model's URI per fold and seed."""
    at_size = [le for le in logged if le.ensemble.train_size == train_size and le.ensemble.kind != SEED_AVERAGE]
    if not at_size:
        return []
    by_name: dict[str, list[LoggedEnsemble]] = {}
    for le in at_size:
        by_name.setdefault(le.ensemble.name, []).append(le)
    name = min(by_name, key=lambda n: (float(np.mean([le.ensemble.val_mae for le in by_name[n]])), n))
    best = sorted(by_name[name], key=lambda le: (le.ensemble.fold, le.ensemble.seed))
    test = np.array([le.ensemble.test["mae"] for le in best])
    unit_text = f" {unit}" if unit else ""
    lines = [
        f"best post-hoc ensemble by validation MAE ({len(by_name)} built; Caruana et al. 2004): {name}, test MAE "
        f"{test.mean():.4g} ± {test.std():.2g}{unit_text} over {len(best)} run(s); weights "
        f"{best[0].ensemble.weights_text()}" + (" (fold 0)" if len(best) > 1 else "")
    ]
    lines += [f"  MLflow model (fold {le.ensemble.fold}, seed {le.ensemble.seed}): {le.model_uri}" for le in best]
    return lines


@dataclass(frozen=True)
class ConsoleEnsembles:
    """The ensembles of a benchmark's runs as ``benchmarks.run`` records and prints them."""

    logged: tuple[LoggedEnsemble, ...] = ()
    notes: tuple[str, ...] = ()

    @classmethod
    def record(cls, tracking_uri: str, task: str, preset: str, runs: pd.DataFrame) -> ConsoleEnsembles:
        """Record the ensembles of ``runs`` (finished parent runs, as ``read_finals`` gives them) in the store; a
        failure is one note, never the run's failure (the runs themselves are recorded)."""
        run_ids = {str(r) for r in runs.get("run_id", [])}
        if not run_ids:
            return cls()
        try:
            logged, notes = log_ensembles(tracking_uri, task, preset, run_ids)
        except Exception as exc:  # the benchmark's runs are recorded already; say why, and carry on
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            return cls((), (f"post-hoc ensembles not recorded ({type(exc).__name__}: {detail})",))
        return cls(tuple(logged), tuple(notes))

    def lines(self, runs: pd.DataFrame, unit: str = "") -> list[str]:
        """The lines on the best ensemble of ``runs``' training sizes (:func:`best_ensemble_lines`)."""
        ids = {str(r) for r in runs.get("run_id", [])}
        mine = [le for le in self.logged if {m.run_id for m in le.ensemble.members} <= ids]
        out: list[str] = []
        for size in sorted({le.ensemble.train_size for le in mine}):
            out += best_ensemble_lines(mine, size, unit)
        return out
