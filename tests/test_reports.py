"""The report: leaderboards, paired tests and the Matbench export, built from a real MLflow store.

Until the benchmark's own smoke run is wired in here, the store is written by :func:`_write_store` exactly as
``studies/schema.py`` lays it out, from real fits on real data: matbench_steels, its official folds, Magpie
features. scikit-learn estimators stand in for the suite's models (the report reads model names, metrics and
artifacts, never model internals): the three network names get MLPs of equal depth trained epoch by epoch, so
their curves are real curves; ``rf`` is a random forest; ``dummy`` predicts the training mean.

Expected values are read back from the store with the MLflow client directly, not through ``reports``.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reports import build, document, matbench_export, render, stats
from reports.collect import ReportInputError
from studies import schema

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline machines; nothing to report home

TASK = "matbench_steels"
# model -> seeds it runs with, folds it covers, hidden layers (networks) or None.
PLAN = {
    "irnet": {"seeds": (0, 1), "folds": range(5), "hidden": (32, 32, 32)},
    "srnet": {"seeds": (0,), "folds": range(5), "hidden": (24, 24, 24)},
    "plain": {"seeds": (0,), "folds": range(5), "hidden": (16, 16, 16)},
    "rf": {"seeds": (0, 1), "folds": range(5), "hidden": None},
    "dummy": {"seeds": (0,), "folds": range(4), "hidden": None},  # 4 folds: too few pairs for a test, no Matbench file
}
EPOCHS = 15


# ---------------------------------------------------------------------------------------------- the store


@dataclass
class _Fit:
    params: dict[str, str]
    curve: list[tuple[int, float, float]]  # step, train_mae, val_mae
    val_mae: float
    predict: object
    seconds: float


def _fit(model: str, params: dict, seed: int, tr) -> _Fit:
    """One real fit on the fold's training rows, scored on its validation rows."""
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    curve: list[tuple[int, float, float]] = []
    if PLAN[model]["hidden"] is not None:
        xs = StandardScaler().fit(tr.X_train)
        mu, sd = float(tr.y_train.mean()), float(tr.y_train.std())
        net = MLPRegressor(
            hidden_layer_sizes=PLAN[model]["hidden"],
            learning_rate_init=params["lr"],
            alpha=params["alpha"],
            random_state=seed,
        )
        Xt, Xv = xs.transform(tr.X_train), xs.transform(tr.X_val)
        for step in range(1, EPOCHS + 1):
            net.partial_fit(Xt, (tr.y_train - mu) / sd)
            tm = float(np.mean(np.abs(net.predict(Xt) * sd + mu - tr.y_train)))
            vm = float(np.mean(np.abs(net.predict(Xv) * sd + mu - tr.y_val)))
            curve.append((step, tm, vm))

        def predict(X, net=net, xs=xs, mu=mu, sd=sd):
            return net.predict(xs.transform(X)) * sd + mu

        logged = {"depth": str(len(PLAN[model]["hidden"])), "lr": str(params["lr"]), "alpha": str(params["alpha"])}
    elif model == "rf":
        est = RandomForestRegressor(n_estimators=25, max_features=params["max_features"], random_state=seed, n_jobs=1)
        est.fit(tr.X_train, tr.y_train)
        predict, logged = est.predict, {"n_estimators": "25", "max_features": str(params["max_features"])}
    else:
        est = DummyRegressor(strategy=params["strategy"]).fit(tr.X_train, tr.y_train)
        predict, logged = est.predict, {"strategy": params["strategy"]}
    val_mae = float(np.mean(np.abs(predict(tr.X_val) - tr.y_val)))
    return _Fit(logged, curve, val_mae, predict, time.perf_counter() - start)


def _space(model: str) -> list[dict]:
    if PLAN[model]["hidden"] is not None:
        return [{"lr": 3e-3, "alpha": 1e-4}, {"lr": 1e-2, "alpha": 1e-2}]
    if model == "rf":
        return [{"max_features": 0.3}, {"max_features": 1.0}]
    return [{"strategy": "mean"}, {"strategy": "median"}]


def _log(
    client, run_id: str, *, metrics: dict | None = None, curve=(), params: dict | None = None, tags: dict | None = None
):
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
    for step, tm, vm in curve:
        batch += [Metric(schema.CURVE_TRAIN, tm, now, step), Metric(schema.CURVE_VAL, vm, now, step)]
    client.log_batch(
        run_id,
        metrics=batch,
        params=[Param(k, v) for k, v in (params or {}).items()],
        tags=[RunTag(k, v) for k, v in (tags or {}).items()],
    )


def _common_tags(model: str, fold: int, seed: int, sha: str) -> dict[str, str]:
    return {
        schema.TAG_TASK: TASK,
        schema.TAG_MODEL: model,
        schema.TAG_FOLD: str(fold),
        schema.TAG_SEED: str(seed),
        schema.TAG_PRESET: "smoke",
        schema.TAG_CODE_VERSION: "test-fixture",
        schema.TAG_DATA_SHA256: sha,
        schema.TAG_FEATURIZER: "magpie",
        schema.TAG_COMPOSITION_ONLY: "false",
        schema.TAG_DEVICE: "cpu",
        schema.TAG_MAX_TRAIN_ROWS: "all",
        schema.TAG_VAL_SEED: "0",
    }


def _log_parent(client, exp_id: str, model: str, fold: int, seed: int, sha: str, tr, te, scratch: Path) -> str:
    """Tune (nested trial runs), keep the best trial's fit as the refit, score it once on the test rows."""
    tags = {**_common_tags(model, fold, seed, sha), schema.TAG_KIND: schema.KIND_FINAL}
    parent = client.create_run(exp_id, tags=tags).info.run_id
    tuning_start = time.perf_counter()
    best: _Fit | None = None
    for number, params in enumerate(_space(model)):
        fit = _fit(model, params, seed, tr)
        trial = client.create_run(
            exp_id,
            tags={
                **_common_tags(model, fold, seed, sha),
                "mlflow.parentRunId": parent,
                schema.TAG_KIND: schema.KIND_TRIAL,
                schema.TAG_TRIAL_NUMBER: str(number),
                schema.TAG_TRIAL_STATE: "COMPLETE",
            },
        ).info.run_id
        _log(client, trial, metrics={schema.METRIC_TRIAL_VALUE: fit.val_mae}, curve=fit.curve, params=fit.params)
        client.set_terminated(trial, "FINISHED")
        if best is None or fit.val_mae < best.val_mae:
            best = fit
    tuning_seconds = time.perf_counter() - tuning_start
    start = time.perf_counter()
    y_pred = np.asarray(best.predict(te.X), dtype=np.float64)
    inference = time.perf_counter() - start
    scores = te.score(y_pred)
    csv = scratch / parent / schema.ARTIFACT_PREDICTIONS
    csv.parent.mkdir(parents=True)
    pd.DataFrame({"id": te.ids, "y_true": te.y, "y_pred": y_pred}).to_csv(csv, index=False, float_format="%.17g")
    client.log_artifact(parent, str(csv))
    _log(
        client,
        parent,
        metrics={
            **{f"test_{k}": v for k, v in scores.items()},
            schema.METRIC_BEST_VAL_MAE: best.val_mae,
            schema.METRIC_TRAIN_SECONDS: best.seconds,
            schema.METRIC_INFERENCE_SECONDS: inference,
            schema.METRIC_TUNING_SECONDS: tuning_seconds,
            schema.METRIC_N_TRIALS: len(_space(model)),
            schema.METRIC_N_TEST: len(te.y),
        },
        curve=best.curve,
        params={
            **best.params,
            schema.PARAM_TASK_UNIT: "MPa",
            schema.PARAM_BUDGET_TRIALS: str(len(_space(model))),  # stand-ins: equal spaces would need equal sizes
            schema.PARAM_BUDGET_TUNING_SECONDS: "60.0",
            schema.PARAM_BUDGET_FIT_SECONDS: "20.0",
        },
        tags={schema.TAG_STATUS: schema.STATUS_DONE},
    )
    client.set_terminated(parent, "FINISHED")
    return parent


def _fresh_store(template: Path, path: Path) -> str:
    """A new empty store: a copy of one migrated once (creating MLflow's schema takes seconds)."""
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def _write_store(root: Path, template: Path, steels_task) -> str:
    import mlflow
    from threadpoolctl import threadpool_limits

    from benchmarks.loader import task_fold

    # Tiny matrices: BLAS threads would only contend with each other (and with parallel CI jobs).
    with threadpool_limits(1):
        uri = _fresh_store(template, root / "mlflow.db")
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp_id = client.create_experiment(TASK, artifact_location=(root / "artifacts").as_uri())
        folds = {f: task_fold(steels_task, f, featurizer="magpie", val_seed=0, progress=False) for f in range(5)}
        for model, plan in PLAN.items():
            for fold in plan["folds"]:
                for seed in plan["seeds"]:
                    _log_parent(client, exp_id, model, fold, seed, steels_task.sha256, *folds[fold], root / "scratch")
        # A crashed parent run: must be left out of the report and listed, never scored.
        tags = {**_common_tags("lightgbm", 0, 0, steels_task.sha256), schema.TAG_KIND: schema.KIND_FINAL}
        crashed = client.create_run(exp_id, tags=tags)
        client.set_terminated(crashed.info.run_id, "FAILED")
    return uri


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An sqlite file holding MLflow's schema and no experiments; copy it, never write to it."""
    import mlflow

    path = tmp_path_factory.mktemp("template") / "empty.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, empty_store, steels_task) -> str:
    return _write_store(tmp_path_factory.mktemp("store"), empty_store, steels_task)


@pytest.fixture(scope="module")
def logged(store) -> pd.DataFrame:
    """Finished parent runs as logged, read with the MLflow client alone."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(TASK)
    runs = client.search_runs([exp.experiment_id], f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}'", max_results=1000)
    rows = [
        {
            "run_id": r.info.run_id,
            "model": r.data.tags[schema.TAG_MODEL],
            "fold": int(r.data.tags[schema.TAG_FOLD]),
            "seed": int(r.data.tags[schema.TAG_SEED]),
            **{m: r.data.metrics[m] for m in schema.TEST_METRICS},
            "train_seconds": r.data.metrics[schema.METRIC_TRAIN_SECONDS],
            "n_test": r.data.metrics[schema.METRIC_N_TEST],
        }
        for r in runs
        if r.data.tags.get(schema.TAG_STATUS) == schema.STATUS_DONE
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def built(store, tmp_path_factory) -> tuple[Path, build.Report]:
    out = tmp_path_factory.mktemp("report")
    return out, build.run(["--tracking-uri", store, "--out", str(out)])


# ---------------------------------------------------------------------------------------------- outputs


def test_build_writes_every_output(built, logged):
    out, report = built
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.csv"):
        assert (out / name).stat().st_size > 0
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == sorted(
        [
            f"{TASK}_convergence_depth3.png",
            f"{TASK}_elements.png",
            f"{TASK}_parity.png",
            f"{TASK}_time.png",
            f"{TASK}_tuning.png",
        ]
    )
    for png in pngs:
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # What was computed is what was written, and nothing else (no temporary files left behind).
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != build.MANIFEST)
    assert written == sorted(report.files)
    for name, data in report.files.items():
        assert (out / name).read_bytes() == data, name


def test_rebuild_removes_only_its_own_stale_files(built, store, tmp_path):
    out = tmp_path / "report"
    shutil.copytree(built[0], out)
    (out / "plots" / "old_task_parity.png").write_bytes(b"stale")  # as if an earlier build had written it
    (out / "notes.txt").write_text("the user's own file")
    manifest = json.loads((out / build.MANIFEST).read_text())
    manifest["files"] += ["plots/old_task_parity.png"]
    (out / build.MANIFEST).write_text(json.dumps(manifest))
    build.run(["--tracking-uri", store, "--task", TASK, "--out", str(out)])
    assert not (out / "plots" / "old_task_parity.png").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert (out / "leaderboard.html").is_file()


def test_html_is_self_contained(built):
    out, _ = built
    html = (out / "leaderboard.html").read_text()
    assert "<link" not in html and "<script" not in html
    sources = re.findall(r'src="([^"]+)"', html)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        assert base64.b64decode(s.split(",", 1)[1])[:4] == b"\x89PNG"
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_csv_is_the_long_table_of_logged_values(built, logged):
    out, _ = built
    table = pd.read_csv(out / "leaderboard.csv")
    assert list(table.columns)[:4] == ["task", "model", "fold", "seed"]
    assert {"metric", "value", "train_seconds", "run_id", "preset"} <= set(table.columns)
    assert len(table) == 4 * len(logged) == 4 * sum(len(p["seeds"]) * len(p["folds"]) for p in PLAN.values())
    merged = table.merge(logged, on=["model", "fold", "seed", "run_id"], suffixes=("", "_logged"))
    assert len(merged) == len(table)
    for metric in ("mae", "rmse", "r2", "max_error"):
        part = merged[merged["metric"] == metric]
        np.testing.assert_allclose(part["value"], part[f"test_{metric}"], rtol=1e-9)
    np.testing.assert_allclose(merged["train_seconds"], merged["train_seconds_logged"], rtol=1e-9)
    assert set(table["task"]) == {TASK}


def test_ranking_and_spread_match_the_logged_maes(built, logged):
    _, report = built
    # Population std (ddof=0), the convention of Matbench and of benchmarks.run's own summary.
    expected = logged.groupby("model")["test_mae"].agg(["mean", lambda s: float(np.std(s, ddof=0)), "size"])
    expected.columns = ["mean", "std", "n"]
    summary = report.summary.set_index("model")
    for model, row in expected.iterrows():
        assert summary.loc[model, "mae_mean"] == pytest.approx(row["mean"], rel=1e-12)
        assert summary.loc[model, "mae_std"] == pytest.approx(row["std"], rel=1e-12)
        assert summary.loc[model, "n_runs"] == row["n"]
    order = list(expected.sort_values("mean").index)
    assert list(report.summary.sort_values("rank")["model"]) == order
    assert list(report.ranks["model"]) == order  # one task: mean rank is the rank
    # The Markdown table lists the models in that order, with mean ± std as printed by the report.
    md = built[0].joinpath("leaderboard.md").read_text()
    table = md.split(f"**{TASK}: test scores")[1].split("\n\n")[1]
    ours = [line.split(" | ")[1] for line in table.splitlines()[2:] if not line.startswith("| —")]
    assert ours == order
    best = expected.loc[order[0]]
    d = document.decimals(expected["mean"])
    assert f"| 1 | {order[0]} | {best['mean']:.{d}f} ± {best['std']:.{d}f} |" in md


def _summary(scores: dict[str, list[float]]) -> pd.DataFrame:
    """A summary frame (task, model, mae_mean) with one task per position of the score lists."""
    rows = [
        {"task": f"t{i}", "model": m, "mae_mean": v, "n_folds": 5}
        for m, values in scores.items()
        for i, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_rank_test_equals_scipy_friedman_and_demsar_critical_difference():
    rng = np.random.default_rng(3)
    scores = {m: list(rng.normal(1.0 + 0.1 * i, 0.05, size=14)) for i, m in enumerate(["a", "b", "c", "d"])}
    test = stats.rank_test(_summary(scores))
    # No ties: Friedman's statistic as scipy computes it from the same per-task scores.
    expected = sps.friedmanchisquare(*scores.values())
    assert test.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert test.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    # Demšar (JMLR 7, 2006), section 3.2.4: 4 models on 14 data sets, CD = 2.569 * sqrt(4 * 5 / (6 * 14)) = 1.25.
    assert test.critical_difference == pytest.approx(1.2536, abs=1e-4)
    assert list(test.mean_ranks) == sorted(test.mean_ranks, key=test.mean_ranks.get)


def test_rank_test_groups_models_closer_than_the_critical_difference_and_leaves_out_partial_models():
    # Two tasks, three models always in the order a < b < c; d ran on one task only.
    summary = _summary({"a": [1.0, 1.0], "b": [2.0, 2.0], "c": [3.0, 3.0]})
    summary = pd.concat([summary, pd.DataFrame([{"task": "t0", "model": "d", "mae_mean": 0.5, "n_folds": 5}])])
    test = stats.rank_test(summary)
    assert test.mean_ranks == {"a": 1.0, "b": 2.0, "c": 3.0} and test.left_out == ("d",) and not test.tasks_left_out
    assert test.critical_difference > 2.0  # 3.314 * sqrt(3 * 4 / 12) / sqrt(2): two tasks tell nothing apart
    assert test.groups() == [("a", "b", "c")]
    assert stats.rank_test(summary[summary["task"] == "t0"]) is None  # one task: no test
    md = render.to_markdown("t", document.rank_test_blocks(summary))
    assert "Left out (not run on every task): d." in md and "plots/critical_difference.png" in md
    # A study in progress: c has 2 of 5 folds on t2, so t2 is left out while two tasks have every model.
    partial = _summary({"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0], "c": [3.0, 3.0, 0.5]})
    partial.loc[(partial["model"] == "c") & (partial["task"] == "t2"), "n_folds"] = 2
    test = stats.rank_test(partial)
    assert test.tasks == ("t0", "t1") and test.tasks_left_out == ("t2",) and test.mean_ranks["c"] == 3.0
    assert "Tasks left out (not every model has all its folds there): t2." in render.to_markdown(
        "t", document.rank_test_blocks(partial)
    )
    # Far apart on many tasks: every model alone, no bar.
    apart = stats.rank_test(_summary({"a": [1.0] * 30, "b": [2.0] * 30, "c": [3.0] * 30}))
    assert apart.critical_difference < 1.0 and apart.groups() == [] and apart.p_value < 1e-6


def test_wall_time_per_task_sums_each_family_s_parent_runs():
    from reports import declared

    minute = 60_000
    finals = pd.DataFrame(
        [
            {"task": "a", "model": "irnet", "run_id": "1", "start_time": 0, "end_time": 3 * minute},
            {"task": "a", "model": "irnet", "run_id": "2", "start_time": 0, "end_time": 2 * minute},
            {"task": "a", "model": "rf", "run_id": "3", "start_time": minute, "end_time": 2 * minute},
            {"task": "b", "model": "rf", "run_id": "4", "start_time": 0, "end_time": 30 * minute},
        ]
    ).assign(family=lambda f: np.where(f["model"] == "rf", "tree", "network"), color="#000000")
    declared.remember(finals)
    try:
        md = render.to_markdown("t", document.wall_time_blocks(finals))
    finally:
        declared.remember(finals.iloc[0:0])  # no declarations left behind for other tests
    assert "| task | runs | network min | tree min | all min |" in md
    assert "| a | 3 | 5.00 | 1.00 | 6.00 |" in md and "| b | 1 | — | 30 | 30 |" in md
    assert "| all | 4 | 5.00 | 31 | 36 |" in md
    assert document.wall_time_blocks(finals[finals["task"] == "a"]) == []  # one task: its own table says it


def test_wilcoxon_equals_scipy_on_pairs_by_fold_and_seed(built, logged):
    _, report = built
    by_baseline = {c.baseline: c for c in report.comparisons[TASK]}
    assert set(by_baseline) == {"srnet", "plain", "rf", "dummy"}
    irnet = logged[logged["model"] == "irnet"].set_index(["fold", "seed"])["test_mae"]
    for baseline, comparison in by_baseline.items():
        other = logged[logged["model"] == baseline].set_index(["fold", "seed"])["test_mae"]
        pairs = pd.concat([irnet, other], axis=1, join="inner", keys=["irnet", "other"]).sort_index()
        assert comparison.n_pairs == len(pairs)
        assert comparison.wins == int((pairs["irnet"] < pairs["other"]).sum())
        assert comparison.losses == int((pairs["irnet"] > pairs["other"]).sum())
        assert comparison.mean_diff == pytest.approx(float((pairs["other"] - pairs["irnet"]).mean()), rel=1e-12)
        if len(pairs) >= 5:
            expected = sps.wilcoxon(pairs["irnet"], pairs["other"])
            assert comparison.p_value == pytest.approx(float(expected.pvalue), rel=1e-12)
            assert comparison.statistic == pytest.approx(float(expected.statistic))
        else:
            assert comparison.p_value is None and comparison.note == "n<5, no test"
    assert by_baseline["rf"].n_pairs == 10  # 5 folds x 2 seeds
    assert by_baseline["srnet"].n_pairs == 5  # seed 0 only
    assert by_baseline["dummy"].n_pairs == 4
    # Holm: the smallest of the tested p-values times the number tested (capped at 1).
    tested = sorted(c.p_value for c in by_baseline.values() if c.p_value is not None)
    smallest = min((c for c in by_baseline.values() if c.p_value is not None), key=lambda c: c.p_value)
    assert smallest.p_holm == pytest.approx(min(1.0, len(tested) * tested[0]))
    md = built[0].joinpath("leaderboard.md").read_text()
    assert "| dummy | 4 |" in md and "n<5, no test" in md


def test_per_row_comparison_pools_folds_and_joins_on_seed(built, logged):
    """The per-row MAE difference is the test-size-weighted mean over folds of the seed-mean fold MAEs."""
    out, report = built
    rows = {c.baseline: c for c in report.row_comparisons[TASK]}
    assert set(rows) == {"srnet", "plain", "rf", "dummy"}
    irnet = logged[logged["model"] == "irnet"]
    for baseline, c in rows.items():
        other = logged[logged["model"] == baseline]
        pairs = irnet.merge(other, on=["fold", "seed"], suffixes=("_irnet", "_other"))  # only seeds both ran
        by_fold = pairs.groupby("fold").agg(
            irnet=("test_mae_irnet", "mean"), other=("test_mae_other", "mean"), n=("n_test_irnet", "first")
        )
        weights = by_fold["n"] / by_fold["n"].sum()
        assert c.diff == pytest.approx(float((weights * (by_fold["other"] - by_fold["irnet"])).sum()), rel=1e-9)
        assert c.n_rows == int(by_fold["n"].sum()) and c.n_seeds == pairs["seed"].nunique()
        assert c.ci_low <= c.diff <= c.ci_high and 1 / 2001 <= c.p_value <= 1
    assert rows["rf"].n_seeds == 2 and rows["srnet"].n_seeds == 1
    # dummy predicts the training mean: far worse than any fitted model on these rows, and the test says so.
    assert rows["dummy"].ci_low > 0 and rows["dummy"].p_value == pytest.approx(1 / 2001)
    md = (out / "leaderboard.md").read_text()
    assert "IRNet against each baseline on the same test rows" in md


def test_store_without_train_size_or_refit_stopped_tags_is_one_size(built):
    out, report = built
    assert report.collected.finals["train_size"].nunique() == 1 and report.studies[TASK] is None
    assert set(report.summary["refit_stopped"]) == {f"not recorded {n}" for n in report.summary["n_runs"]}
    md = (out / "leaderboard.md").read_text()
    assert "scaling with training rows" not in md and "†" not in md
    # The fold-level test's floor: 2/2^5 with srnet's 5 pairs (seed 0), 2/2^10 with rf's 10 (two seeds).
    assert "| Wilcoxon p (its floor) |" in md and "(floor 0.0625)" in md and "(floor 0.00195)" in md


def test_report_shows_published_figures_provenance_and_skipped_runs(built, logged):
    out, report = built
    md = (out / "leaderboard.md").read_text()
    assert "| — | RF-SCM/Magpie (published, not rerun; composition input) | 103.51 |" in md
    assert "| — | TPOT-Mat, best on leaderboard (published, not rerun; composition input) | 79.95 |" in md
    for run_id in logged["run_id"]:
        assert run_id in md
    assert "test-fixture" in md and "smoke" in md
    assert len(report.collected.skipped) == 1 and "lightgbm" in report.collected.skipped[0]
    assert "1 unfinished parent run(s) left out" in md
    assert "composition-only" not in md


def test_budgets_are_listed_per_model_and_mixed_budgets_flagged(built):
    out, report = built
    md = (out / "leaderboard.md").read_text()
    assert "Tuning budget per study (trials / tuning s / s per fit): " in md and "rf 2 / 60.0 / 20.0" in md
    assert "Warning" not in md
    finals = report.collected.finals
    # Families may differ by the preset's rule: listed, not flagged.
    by_family = finals.assign(budget=np.where(finals["model"] == "rf", "50 / 60.0 / 20.0", finals["budget"]))
    md = render.to_markdown("t", document.assemble(replace(report.collected, finals=by_family), report.summary,
                                                   report.ranks, report.comparisons, []))  # fmt: skip
    assert "rf 50 / 60.0 / 20.0" in md and "several budgets" not in md
    # One model with two budgets at one size means runs under different rules were mixed: flagged.
    first_rf = finals.index[finals["model"] == "rf"][0]
    mixed = finals.assign(budget=finals["budget"].where(finals.index != first_rf, "50 / 60.0 / 20.0"))
    md = render.to_markdown("t", document.assemble(replace(report.collected, finals=mixed), report.summary,
                                                   report.ranks, report.comparisons, []))  # fmt: skip
    assert "Warning: a model of this task was tuned with several budgets at one size" in md


def test_published_entries_that_read_the_formula_alone_are_marked_on_a_structure_task(built):
    _, report = built
    published = document.load_published()
    structure = report.summary.assign(task="matbench_dielectric")
    md = render.to_markdown("t", [document.leaderboard_table("matbench_dielectric", structure, published, True)])
    assert "| — | CrabNet (published, not rerun; composition only) | 0.3234 |" in md
    assert "| — | ALIGNN (published, not rerun; structure input) | 0.3449 |" in md
    # On a composition task every published entry reads the formula: no entry is singled out.
    md = render.to_markdown("t", [document.leaderboard_table(TASK, report.summary, published, False)])
    assert "| — | CrabNet (published, not rerun; composition input) | 107.32 |" in md and "composition only" not in md


def test_composition_only_runs_are_marked(built):
    _, report = built
    collected = replace(report.collected, finals=report.collected.finals.assign(composition_only=True))
    blocks = document.assemble(collected, report.summary, report.ranks, report.comparisons, [])
    md = render.to_markdown("t", blocks)
    assert f"## {TASK} (composition-only)" in md
    assert "test scores, mean ± std over folds and seeds (composition-only)" in md


# ---------------------------------------------------------------------------------------------- Matbench


def test_matbench_export_round_trips(built, logged, steels_task, tmp_path):
    pytest.importorskip("matbench")
    from matbench.bench import MatbenchBenchmark

    out, report = built
    folders = sorted(p.name for p in (out / "matbench").iterdir())
    # dummy covers 4 folds only: no submission, and the report says why.
    expected = [(m, s) for m, p in sorted(PLAN.items()) if len(p["folds"]) == 5 for s in p["seeds"]]
    assert folders == sorted(f"matbench_v0.1_irnet-bench-{m}-seed{s}" for m, s in expected)
    assert "not exported: folds [0, 1, 2, 3] recorded" in (out / "leaderboard.md").read_text()
    # A training-row cap that binds (the quick preset's 10,000 on a larger task) is not Matbench's protocol.
    finals, predictions = report.collected.finals, report.collected.predictions
    capped = finals.assign(max_train_rows=np.where(finals["fold"] == 2, "10000", finals["max_train_rows"]))
    capped_exports = {e.model: e for e in matbench_export.build_exports(capped, predictions)}
    for model, _seed in expected:
        assert not capped_exports[model].tasks and capped_exports[model].skipped == {
            TASK: "trained on at most 10000 rows per fold, Matbench needs all (--max-train-rows 0)"
        }

    for model, seed in expected:
        folder = out / "matbench" / f"matbench_v0.1_irnet-bench-{model}-seed{seed}"
        assert sorted(p.name for p in folder.iterdir()) == ["info.json", "results.json.gz"]
        # matbench 0.6 opens plain JSON: the submission's gzip, unpacked, is what it reads and writes.
        plain = tmp_path / f"{model}-{seed}.json"
        plain.write_bytes(gzip.decompress((folder / "results.json.gz").read_bytes()))
        loaded = MatbenchBenchmark.from_file(str(plain))  # checks the hash and the official test ids
        assert loaded.is_valid
        # Written again by matbench itself: the same results (to_file stamps its own date, hence a new hash).
        loaded.to_file(str(tmp_path / "again.json"))
        again, ours = (json.loads(p.read_text()) for p in (tmp_path / "again.json", plain))
        assert {k: v for k, v in again.items() if k not in ("datestamp", "hash")} == {
            k: v for k, v in ours.items() if k not in ("datestamp", "hash")
        }
        assert MatbenchBenchmark.from_file(str(tmp_path / "again.json")).is_valid
        task = loaded.tasks_map[TASK]
        ours = logged[(logged["model"] == model) & (logged["seed"] == int(seed))].set_index("fold")["test_mae"]
        assert task.scores.mae.mean == pytest.approx(ours.mean(), rel=1e-12)

        # Rescore from scratch: a fresh benchmark with the dataset put in by hand, recording our predictions.
        fresh = MatbenchBenchmark(subset=[TASK])
        target = fresh.tasks_map[TASK]
        target.df = pd.DataFrame(
            {"composition": steels_task.formulas, "yield strength": steels_task.targets},
            index=pd.Index(steels_task.ids, name="mbid"),
        )
        for fold in target.folds:
            data = task.results[f"fold_{fold}"]["data"]
            test_ids = target.validation[f"fold_{fold}"].test
            target.record(fold, [data[i] for i in test_ids])
            for metric in ("mae", "rmse", "mape", "max_error"):
                assert target.results[f"fold_{fold}"]["scores"][metric] == pytest.approx(
                    task.results[f"fold_{fold}"]["scores"][metric], rel=1e-12
                )
            assert target.results[f"fold_{fold}"]["scores"]["mae"] == pytest.approx(ours.loc[fold], rel=1e-12)


def test_matbench_hash_equals_matbench_own(built):
    pytest.importorskip("matbench")
    from matbench.util import hash_dictionary

    _, report = built
    export = next(e for e in report.exports if e.tasks)
    document_ = json.loads(export.json_bytes())
    claimed = document_.pop("hash")
    assert claimed == hash_dictionary(document_)


# ---------------------------------------------------------------------------------------------- failures


def _run_build(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()  # drop what setting up the store printed (MLflow's own log lines)
    code = build.main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_store_fails_without_creating_one(tmp_path, capsys):
    db = tmp_path / "nowhere.db"
    code, err = _run_build(capsys, "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1 and "no MLflow store" in err
    assert not db.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_out_that_cannot_be_a_folder_is_one_line_before_the_store_is_read(tmp_path, capsys, where):
    blocker = tmp_path / "report.txt"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "report"
    db = tmp_path / "nowhere.db"  # never opened: the folder is checked first
    code, err = _run_build(capsys, "--tracking-uri", f"sqlite:///{db}", "--out", str(out))
    assert code == 2 and len(err.splitlines()) == 1 and f"--out {out}" in err, err
    assert ("is an existing file" if where == "file" else "cannot be created") in err
    assert blocker.read_text() == "x" and not db.exists()


def test_empty_store_fails_with_exit_2(tmp_path, empty_store, capsys):
    uri = _fresh_store(empty_store, tmp_path / "empty.db")
    code, err = _run_build(capsys, "--tracking-uri", uri, "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1 and "nothing to report" in err
    assert not (tmp_path / "out").exists()


def _an_rf_run(store: str):
    """The client of the shared store and one of its finished rf parent runs."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(TASK)
    where = f"tags.{schema.TAG_KIND} = '{schema.KIND_FINAL}' and tags.{schema.TAG_MODEL} = 'rf'"
    return client, client.search_runs([exp.experiment_id], where, max_results=1)[0]


def _copy_parent(
    client, source_client, source_run, exp_id: str, *, drop_metric: str | None = None, **retag: str
) -> str:
    """A new parent run repeating ``source_run``'s tags (but ``retag``), params, metrics and predictions."""
    tags = {k: v for k, v in source_run.data.tags.items() if not k.startswith("mlflow.")} | retag
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    metrics = {k: v for k, v in source_run.data.metrics.items() if k != drop_metric}
    _log(client, run_id, metrics=metrics, params=dict(source_run.data.params))
    local = source_client.download_artifacts(source_run.info.run_id, schema.ARTIFACT_PREDICTIONS)
    client.log_artifact(run_id, local)
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.mark.parametrize("fault", ["duplicate", "missing_test_mae", "no_finished_run", "mixed_presets"])
def test_inconsistent_store_fails_with_exit_2(fault, store, empty_store, tmp_path, capsys):
    import mlflow

    source_client, source = _an_rf_run(store)
    uri = _fresh_store(empty_store, tmp_path / "bad.db")
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(TASK, artifact_location=(tmp_path / "artifacts").as_uri())
    if fault == "duplicate":
        first = _copy_parent(client, source_client, source, exp_id)
        second = _copy_parent(client, source_client, source, exp_id)
        expected = ["duplicate finished parent runs", first, second]
    elif fault == "missing_test_mae":
        bad = _copy_parent(client, source_client, source, exp_id, drop_metric="test_mae")
        expected = [bad, "without metric(s) test_mae"]
    elif fault == "no_finished_run":
        tags = {k: v for k, v in source.data.tags.items() if k != schema.TAG_STATUS and not k.startswith("mlflow.")}
        run = client.create_run(exp_id, tags=tags)
        client.set_terminated(run.info.run_id, "KILLED")
        expected = ["no finished parent runs"]
    else:
        _copy_parent(client, source_client, source, exp_id)
        _copy_parent(client, source_client, source, exp_id, preset="quick")
        expected = ["several presets (quick, smoke)", "--preset"]
    code, err = _run_build(capsys, "--tracking-uri", uri, "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1
    for text in expected:
        assert text in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ReportInputError):
        build.make_report(uri)
    if fault == "mixed_presets":  # choosing one preset makes the same store reportable
        assert build.main(["--tracking-uri", uri, "--preset", "quick", "--out", str(tmp_path / "out")]) == 0
        assert len(pd.read_csv(tmp_path / "out" / "leaderboard.csv")) == 4


def test_models_scored_on_different_test_rows_fail(store, empty_store, tmp_path, capsys):
    import mlflow

    from benchmarks.metrics import regression_metrics

    source_client, source = _an_rf_run(store)
    uri = _fresh_store(empty_store, tmp_path / "bad.db")
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(TASK, artifact_location=(tmp_path / "artifacts").as_uri())
    _copy_parent(client, source_client, source, exp_id)
    # A second model whose test part lost one row (as a featuriser that fails on one formula would leave it).
    preds = pd.read_csv(source_client.download_artifacts(source.info.run_id, schema.ARTIFACT_PREDICTIONS)).iloc[:-1]
    tags = {k: v for k, v in source.data.tags.items() if not k.startswith("mlflow.")} | {schema.TAG_MODEL: "lightgbm"}
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    scores = regression_metrics(preds["y_true"].to_numpy(), preds["y_pred"].to_numpy())
    _log(client, run_id, metrics={f"test_{k}": v for k, v in scores.items()})
    csv = tmp_path / schema.ARTIFACT_PREDICTIONS
    preds.to_csv(csv, index=False, float_format="%.17g")
    client.log_artifact(run_id, str(csv))
    client.set_terminated(run_id, "FINISHED")
    code, err = _run_build(capsys, "--tracking-uri", uri, "--out", str(tmp_path / "out"))
    n = len(preds) + 1
    assert code == 2 and "different test rows" in err and f"lightgbm: {n - 1} rows" in err and f"rf: {n} rows" in err


def test_unknown_task_is_named(store, tmp_path, capsys):
    code, err = _run_build(capsys, "--tracking-uri", store, "--task", "matbench_nope", "--out", str(tmp_path / "out"))
    assert code == 2 and "matbench_nope" in err and TASK in err


def test_mae_mismatch_between_metric_and_predictions_fails(tmp_path, store, empty_store, capsys):
    import mlflow

    source_client, source = _an_rf_run(store)
    uri = _fresh_store(empty_store, tmp_path / "bad.db")
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(TASK, artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = _copy_parent(client, source_client, source, exp_id)
    _log(client, run_id, metrics={"test_mae": source.data.metrics["test_mae"] * 1.01})
    code, err = _run_build(capsys, "--tracking-uri", uri, "--out", str(tmp_path / "out"))
    assert code == 2 and "predictions give" in err and math.isfinite(source.data.metrics["test_mae"])


def test_task_overview_puts_every_task_beside_the_published_entries():
    summary = pd.DataFrame(
        [
            {"task": "matbench_steels", "model": "irnet", "mae_mean": 109.4, "mae_std": 19.4, "n_cut_short": 0},
            {"task": "matbench_steels", "model": "rf", "mae_mean": 101.8, "mae_std": 11.7, "n_cut_short": 0},
            {"task": "matbench_dielectric", "model": "rf", "mae_mean": 0.4128, "mae_std": 0.0625, "n_cut_short": 1},
        ]
    ).assign(n_runs=[2, 5, 5])
    summary["rank"] = summary.groupby("task")["mae_mean"].rank(method="min").astype(int)
    published = document.load_published()
    md = render.to_markdown("t", document.task_overview_blocks(summary, stats.mean_ranks(summary), published))
    assert "| model | matbench_dielectric (unitless) | matbench_steels (MPa) |" in md
    # rf ranks first on both tasks, so it leads; irnet has no dielectric run; a cut-short score is marked.
    assert "| rf | 0.4128 ± 0.0625 † (1) | 101.8 ± 11.7 (1) |" in md
    assert "| irnet | — | 109.4 ± 19.4 (2; 2 of 5 runs) |" in md  # a study in progress says so
    # Published figures as printed; on a structure task only CrabNet reads the formula alone, as ours do.
    assert "| CrabNet (published, not rerun) | 0.3234 (composition only) | 107.32 |" in md
    assert "| RF-SCM/Magpie (published, not rerun) | 0.4196 (structure) | 103.51 |" in md
    assert "| best on leaderboard (published, not rerun) | 0.2711 (MODNet) | 79.95 (TPOT-Mat) |" in md
    assert document.task_overview_blocks(summary[summary["task"] == "matbench_steels"], stats.mean_ranks(summary),
                                         published) == []  # fmt: skip
