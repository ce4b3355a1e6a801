"""The report's scaling study, crossover, per-row paired test, refit_stopped marks and published OQMD rows.

Two kinds of test. Unit tests feed the statistics constructed numbers whose answer is known in closed form.
The store test writes a real MLflow store (as ``studies/schema.py`` lays it out, like tests/test_reports.py)
whose predictions are constructed so that every run's test MAE is exactly a * N^-b * (seed factor), with the
seed factors averaging to 1: the fitted power laws, the crossover and the per-row differences are then known
exactly. The experiment is named ``formation_energy`` so the published OQMD rows apply; its 300 test rows are
made up, not OQMD's (the report reads ids, targets and predictions, never the dataset).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reports import build, document, render, scaling, stats
from reports.collect import add_train_size
from studies import schema
from tests.test_reports import _fresh_store, _log, empty_store  # noqa: F401  (empty_store is a fixture)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

TASK = "formation_energy"
SIZES = (1000, 3000, 10000, 30000)
SEED_FACTORS = {0: 0.96, 1: 1.00, 2: 1.04}  # per-run jitter; mean 1, so each size's mean MAE is exactly a N^-b
# model -> (a, b) of its constructed MAE = a N^-b. irnet meets rf where 5 N^-0.4 = N^-0.2, i.e. N = 5^5 = 3125.
LAWS = {"irnet": (5.0, 0.4), "rf": (1.0, 0.2), "xgboost": (0.9, 0.15)}
CROSSING = 5.0**5
N_TEST = 300


def _mae(model: str, size: int, seed: int) -> float:
    a, b = LAWS[model]
    return a * size**-b * SEED_FACTORS[seed]


# ---------------------------------------------------------------------------------------------- unit tests


def test_power_law_fit_recovers_a_and_b():
    sizes = np.array(SIZES, dtype=float)
    fit = scaling.fit_power_law("m", sizes, 2.0 * sizes**-0.3)
    assert fit.a == pytest.approx(2.0, rel=1e-10) and fit.b == pytest.approx(0.3, rel=1e-10)
    assert (fit.size_min, fit.size_max, fit.n_sizes) == (1000, 30000, 4)
    with pytest.raises(ValueError):
        scaling.fit_power_law("m", np.array([10.0, 10.0]), np.array([1.0, 2.0]))


def test_crossing_in_closed_form():
    log_n = scaling.crossing(math.log(5.0), 0.4, math.log(1.0), 0.2)
    assert math.exp(float(log_n)) == pytest.approx(CROSSING, rel=1e-10)
    assert np.isnan(scaling.crossing(0.0, 0.3, 1.0, 0.3))  # parallel: never meet


def test_paired_test_model_against_itself_plus_noise_finds_no_difference():
    rng = np.random.default_rng(42)
    y = rng.normal(size=4000)
    # Two models with exchangeable errors: the same predictor, each with its own noise of one distribution.
    a = np.abs(y + rng.normal(0, 0.3, size=y.size) - y)
    b = np.abs(y + rng.normal(0, 0.3, size=y.size) - y)
    diff, low, high, p = stats.paired_difference_test(a, b, n_resamples=2000, seed=0)
    assert low < 0 < high and p > 0.05
    assert diff == pytest.approx(float(np.mean(b - a)), rel=1e-12)
    # The bootstrap interval agrees with the normal-theory one on this many rows.
    se = float(np.std(b - a, ddof=1)) / math.sqrt(y.size)
    assert low == pytest.approx(diff - 1.96 * se, abs=0.15 * se * 1.96)
    assert high == pytest.approx(diff + 1.96 * se, abs=0.15 * se * 1.96)
    # Exactly tied errors: no difference at all, p = 1.
    assert stats.paired_difference_test(a, a.copy(), n_resamples=200)[1:] == (0.0, 0.0, 1.0)


def test_paired_test_sees_a_clearly_better_model():
    rng = np.random.default_rng(7)
    better = np.abs(rng.normal(0, 0.1, size=500))
    worse = better * 1.5 + np.abs(rng.normal(0, 0.02, size=500))
    diff, low, high, p = stats.paired_difference_test(better, worse, n_resamples=999, seed=3)
    assert 0 < low < diff < high
    assert p == pytest.approx(1 / 1000)  # no sign flip comes near: the smallest p the test can give
    # Seeded: the same call gives the same numbers.
    assert stats.paired_difference_test(better, worse, n_resamples=999, seed=3) == (diff, low, high, p)


def test_wilcoxon_floor_is_what_scipy_gives_when_all_pairs_agree():
    assert stats.wilcoxon_floor(5) == 0.0625
    assert float(sps.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.5, 4.1, 6.0, 5.5]).pvalue) == pytest.approx(0.0625)
    finals = pd.DataFrame(
        {
            "task": "t",
            "model": ["irnet"] * 5 + ["rf"] * 5,
            "fold": list(range(5)) * 2,
            "seed": 0,
            "test_mae": [*[1.0, 1.1, 1.2, 1.3, 1.4], *[2.0, 2.5, 2.1, 3.0, 2.2]],
        }
    )
    (c,) = stats.compare_task(finals, "t")
    assert c.p_value == pytest.approx(0.0625) and c.p_floor == 0.0625
    table = document.comparison_table("t", [c], 3)
    assert "0.0625 (floor 0.0625)" in table.rows[0] and "Wilcoxon p (its floor)" in table.columns


def test_runs_without_train_size_tag_are_one_size():
    finals = pd.DataFrame(
        {
            "task": ["a"] * 4 + ["b"] * 3,
            "run_id": list("1234567"),
            "train_size_tag": ["", "", "", "", "1000", "3000", "1010"],
            schema.METRIC_N_TRAIN: [249.0, 250.0, 250.0, math.nan, 1000.0, 3000.0, 1010.0],
        }
    )
    out = add_train_size(finals)
    assert list(out["train_size"]) == [250, 250, 250, 250, 1010, 3000, 1010]  # within 2%: one size
    assert "train_size_tag" not in out.columns


def test_a_size_only_some_models_reached_yet_does_not_replace_the_complete_leaderboard():
    # Three models at 1,000 and 30,000 rows, irnet alone at 239,190 (a study whose largest size is in progress).
    runs = [(m, n) for n in (1000, 30000) for m in ("irnet", "rf", "xgboost")] + [("irnet", 239190)]
    finals = pd.DataFrame(runs, columns=["model", "train_size"]).assign(task=TASK, test_mae=0.1, run_id="r")
    other = pd.DataFrame({"task": "t", "model": ["irnet", "rf"], "train_size": 500, "test_mae": 0.2, "run_id": "r"})
    assert stats.headline_size(finals) == 30000
    headline = stats.at_headline_size(pd.concat([finals, other], ignore_index=True))
    assert sorted(headline.loc[headline["task"] == TASK, "model"]) == ["irnet", "rf", "xgboost"]
    assert set(headline.loc[headline["task"] == TASK, "train_size"]) == {30000}
    assert len(headline[headline["task"] == "t"]) == 2  # one size: all its runs
    # Once every model has run there, the largest size is the headline.
    done = pd.concat([finals, finals[finals["train_size"] == 30000].assign(train_size=239190)]).drop_duplicates()
    assert stats.headline_size(done) == 239190
    # The best tree ensemble is picked where the tree models meet, not where one of them ran first.
    points = pd.DataFrame(
        {"model": ["rf", "xgboost", "rf", "xgboost", "xgboost"], "train_size": [1000, 1000, 30000, 30000, 239190],
         "mae_mean": [0.20, 0.21, 0.09, 0.10, 0.05]}
    )  # fmt: skip
    fits = scaling.fit_all(points)
    assert scaling.best_tree_model(points, fits) == "rf"


# ---------------------------------------------------------------------------------------------- the store


def _write_scaling_store(root, template) -> str:
    import mlflow

    uri = _fresh_store(template, root / "mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(TASK, artifact_location=(root / "artifacts").as_uri())
    rng = np.random.default_rng(0)
    ids = [f"oqmd-{i}" for i in range(N_TEST)]
    y_true = rng.normal(-1.0, 0.8, size=N_TEST)
    for model in LAWS:
        for size in SIZES:
            for seed in SEED_FACTORS:
                # Errors of mean exactly 1, random signs, scaled: the run's test MAE is exactly _mae(...).
                shape = rng.exponential(size=N_TEST)
                error = shape / shape.mean() * _mae(model, size, seed) * rng.choice([-1.0, 1.0], size=N_TEST)
                y_pred = y_true + error
                tags = {
                    schema.TAG_TASK: TASK, schema.TAG_MODEL: model, schema.TAG_FOLD: "0", schema.TAG_SEED: str(seed),
                    schema.TAG_PRESET: "quick", schema.TAG_KIND: schema.KIND_FINAL, schema.TAG_DATA_SHA256: "f" * 64,
                    schema.TAG_COMPOSITION_ONLY: "false", schema.TAG_MAX_TRAIN_ROWS: str(size),
                    schema.TAG_TRAIN_SIZE: str(size),
                    schema.TAG_REFIT_STOPPED: "time_limit" if (model, size) == ("irnet", 1000) else "early_stopping",
                }  # fmt: skip
                run_id = client.create_run(exp_id, tags=tags).info.run_id
                csv = root / "scratch" / run_id / schema.ARTIFACT_PREDICTIONS
                csv.parent.mkdir(parents=True)
                pd.DataFrame({"id": ids, "y_true": y_true, "y_pred": y_pred}).to_csv(
                    csv, index=False, float_format="%.17g"
                )
                client.log_artifact(run_id, str(csv))
                absolute = np.abs(error)
                _log(
                    client,
                    run_id,
                    metrics={
                        "test_mae": float(np.mean(absolute)),
                        "test_rmse": float(np.sqrt(np.mean(error**2))),
                        "test_r2": 0.9,
                        "test_max_error": float(absolute.max()),
                        schema.METRIC_TUNING_SECONDS: size / 100.0,
                        schema.METRIC_TRAIN_SECONDS: size / 1000.0,
                        schema.METRIC_N_TRAIN: size,
                    },
                    params={schema.PARAM_TASK_UNIT: "eV/atom", schema.PARAM_BUDGET_TRIALS: str(size // 100)},
                    tags={schema.TAG_STATUS: schema.STATUS_DONE},
                )
                client.set_terminated(run_id, "FINISHED")
    return uri


@pytest.fixture(scope="module")
def scaling_report(tmp_path_factory, empty_store):  # noqa: F811
    root = tmp_path_factory.mktemp("scaling")
    uri = _write_scaling_store(root, empty_store)
    out = root / "report"
    return out, build.run(["--tracking-uri", uri, "--out", str(out)])


def test_scaling_fits_and_crossover_on_constructed_runs(scaling_report):
    _, report = scaling_report
    study = report.studies[TASK]
    assert study is not None
    for model, (a, b) in LAWS.items():
        assert study.fits[model].a == pytest.approx(a, rel=1e-9) and study.fits[model].b == pytest.approx(b, rel=1e-9)
    assert study.tree_model == "rf"  # the tree-family model with the lowest MAE at 30,000 rows
    c = study.crossover
    assert c.crossing == pytest.approx(CROSSING, rel=1e-8) and c.in_range
    assert c.ci_low < CROSSING < c.ci_high
    assert (c.ahead_small, c.ahead_large) == ("rf", "irnet")
    assert "meets rf's at N ≈ 3,125 training rows" in c.statement()
    # Beside the fit, the measured points: rf lower at 1,000 and 3,000 rows (5 * 3000^-0.4 = 0.204 > 3000^-0.2).
    leaders = scaling.measured_leaders(study.points, "irnet", "rf")
    assert leaders == "rf lower at 1,000-3,000 rows, irnet lower at 10,000-30,000 rows"


def test_no_crossing_in_range_is_said_plainly(scaling_report):
    _, report = scaling_report
    finals = report.collected.finals
    # IRNet ten times worse at every size: 50 N^-0.4 = N^-0.2 only at N = 50^5, far beyond 30,000.
    worse = finals.assign(test_mae=np.where(finals["model"] == "irnet", finals["test_mae"] * 10, finals["test_mae"]))
    study = scaling.scaling_study(worse, TASK)
    assert study.crossover.crossing == pytest.approx(50.0**5, rel=1e-8) and not study.crossover.in_range
    text = study.crossover.statement()
    assert "do not cross in the measured range (1,000-30,000 training rows): rf is ahead throughout" in text
    assert "beyond the largest measured size" in text


def test_leaderboard_is_the_largest_size_with_refit_stopped(scaling_report):
    out, report = scaling_report
    summary = report.summary.set_index("model")
    for model in LAWS:
        assert summary.loc[model, "n_runs"] == 3
        assert summary.loc[model, "mae_mean"] == pytest.approx(_mae(model, 30000, 1), rel=1e-9)
        assert summary.loc[model, "refit_stopped"] == "early_stopping 3"
    md = (out / "leaderboard.md").read_text()
    assert "largest training size, 30,000 rows, of 4" in md
    # The cut-short refits (irnet at 1,000 rows) are marked in the scaling table and in provenance, with a legend.
    d = document.decimals(report.studies[TASK].points["mae_mean"])
    irnet_1000 = f"{_mae('irnet', 1000, 1):.{d}f}"
    assert any(
        line.startswith(f"| irnet | 1,000 | {irnet_1000}") and "† |" in line and "time_limit 3" in line
        for line in md.splitlines()
    )
    assert md.count("| time_limit |") == 3
    csv = pd.read_csv(out / "leaderboard.csv")
    assert set(csv.loc[(csv["model"] == "irnet") & (csv["train_size"] == 1000), "refit_stopped"]) == {"time_limit"}
    assert len(csv) == 4 * len(LAWS) * len(SIZES) * len(SEED_FACTORS)


def test_a_larger_size_one_model_reached_so_far_is_named_beside_the_complete_leaderboard(scaling_report):
    _, report = scaling_report
    finals = report.collected.finals
    first = finals[(finals["model"] == "irnet") & (finals["train_size"] == 30000) & (finals["seed"] == 0)]
    ahead = first.assign(train_size=100000, run_id="irnet-100k", test_mae=0.03)  # irnet alone at 100,000 so far
    partial = build.report_of(dataclasses.replace(report.collected, finals=pd.concat([finals, ahead])))
    assert set(partial.summary["n_runs"]) == {3} and set(partial.summary["model"]) == set(LAWS)  # still at 30,000
    md = partial.files["leaderboard.md"].decode()
    assert "tables are at 30,000 training rows, the largest of its 5 sizes at which the most models ran " in md
    assert "(100,000 rows: irnet only; see the scaling study below)" in md
    assert "| irnet | 100,000 | 0.030" in md  # the partial size is in the scaling table
    # IRNet's own curve spans every size it ran; the crossover compares the sizes both models ran, unchanged.
    study, before = partial.studies[TASK], report.studies[TASK].crossover
    assert study.fits["irnet"].size_max == 100000 and study.fits["irnet"].n_sizes == 5
    assert study.crossover.crossing == pytest.approx(before.crossing, rel=1e-9)
    assert (study.crossover.size_min, study.crossover.size_max) == (1000, 30000)


def test_scaling_figures_and_tables_are_written(scaling_report):
    out, _report = scaling_report
    for name in (f"plots/{TASK}_scaling.png", f"plots/{TASK}_compute.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "leaderboard.md").read_text()
    assert f"### {TASK}: scaling with training rows" in md
    assert "| irnet | 5 | 0.400 | 4 | 1,000-30,000 |" in md
    assert "Measured, mean test MAE at each size: rf lower at 1,000-3,000 rows, irnet lower at 10,000-30,000" in md
    html = (out / "leaderboard.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # parity, time, scaling, compute


def test_published_oqmd_rows_sit_next_to_the_table(scaling_report):
    out, _ = scaling_report
    md = (out / "leaderboard.md").read_text()
    assert "| — | CrabNet (published, same split) | 0.03115 |" in md
    assert "| — | RF (500 trees, CBFV magpie) (published, same split) | 0.08341 |" in md
    assert "| — | IRNet-48 (OQMD-C) (published, different split) | 0.048 |" in md
    assert "npj Comput. Mater. 7, 77 (2021)" in md and "Jha et al., KDD 2019" in md


def test_per_row_paired_comparison_on_constructed_runs(scaling_report):
    out, report = scaling_report
    rows = {(c.baseline, c.train_size): c for c in report.row_comparisons[TASK]}
    assert set(rows) == {(m, n) for m in ("rf", "xgboost") for n in SIZES}
    for (baseline, size), c in rows.items():
        # Per-row errors averaged over the 3 seeds and pooled: their mean is the mean of the runs' MAEs.
        expected = _mae(baseline, size, 1) - _mae("irnet", size, 1)
        assert c.diff == pytest.approx(expected, rel=1e-9)
        assert (c.n_rows, c.n_seeds) == (N_TEST, 3)
    assert rows[("rf", 30000)].ci_low > 0 and rows[("rf", 30000)].p_value == pytest.approx(1 / 2001)
    assert rows[("rf", 1000)].ci_high < 0  # rf is ahead at 1,000 rows
    md = (out / "leaderboard.md").read_text()
    assert "IRNet against each baseline on the same test rows" in md
    line = next(line for line in md.splitlines() if line.startswith("| rf | 30,000 | 300 | 3 |"))
    assert line.endswith("| 5.00e-04 | IRNet better |")


def test_html_renders_every_new_block(scaling_report):
    _, report = scaling_report
    blocks = document.assemble(
        report.collected, report.summary, report.ranks, report.comparisons, [], report.row_comparisons, report.studies
    )
    html = render.to_html("t", blocks)
    assert "refit stopped" in html and "†" in html and "published, same split" in html


def test_crossover_statements_for_curves_that_diverge_or_run_parallel():
    base = {"task": TASK, "reference": "irnet", "tree_model": "rf", "size_min": 1000, "size_max": 30000,
            "ci_low": None, "ci_high": None, "share_in_range": 0.0, "n_resamples": 100, "resampled": "run scores",
            "ahead_small": "rf", "ahead_large": "rf"}  # fmt: skip
    below = scaling.Crossover(crossing=12.0, **base).statement()
    assert "do not cross in the measured range" in below and "N ≈ 12, below the smallest measured size" in below
    # Nearly parallel fits put the meeting point absurdly far out: said so, without an absurd interval.
    far = scaling.Crossover(crossing=2e-16, **{**base, "ci_low": 1e-160, "ci_high": 1e130}).statement()
    assert "nearly parallel" in far and "more than 100x below the smallest measured size (N ≈ 2e-16)" in far
    assert "1e-160" not in far and "0% of 100 resamples of run scores cross inside it" in far
    parallel = scaling.Crossover(crossing=None, **base).statement()
    assert parallel.endswith("Their fitted curves are parallel (equal b) and never meet.")


def test_one_run_per_size_gives_no_bootstrap_interval(scaling_report):
    _, report = scaling_report
    finals = report.collected.finals
    study = scaling.scaling_study(finals[finals["seed"] == 1], TASK)  # seed factor 1: the laws exactly
    c = study.crossover
    assert c.crossing == pytest.approx(CROSSING, rel=1e-8) and c.n_resamples == 0 and c.ci_low is None
    assert "one run per size and no common test rows: nothing to resample" in c.statement()


def test_one_run_per_size_with_predictions_gets_a_row_bootstrap_interval(scaling_report):
    # One seed per size, as a fixed split with one seed gives: the test rows themselves are resampled.
    _, report = scaling_report
    finals, predictions = report.collected.finals, report.collected.predictions
    one_seed = finals[finals["seed"] == 1]
    study = scaling.scaling_study(one_seed, TASK, predictions=predictions[predictions["seed"] == 1])
    c = study.crossover
    assert c.resampled == "test rows and seeds" and c.n_resamples == scaling.N_BOOTSTRAP
    assert c.ci_low is not None and c.ci_low < c.ci_high
    assert c.crossing == pytest.approx(CROSSING, rel=1e-8)
    assert "resamples of test rows and seeds" in c.statement()


# ------------------------------------------------------------------------------------------ depth study ---


def _depth_finals() -> pd.DataFrame:
    """formation_energy runs at 30,000 rows: IRNet flat with depth, plain worse at every depth; SRNet at one depth
    only (no line), and a smaller size that must not count."""
    rows = []
    for arch, maes in (("irnet", {17: 0.100, 24: 0.099, 48: 0.101}), ("plain", {17: 0.101, 24: 0.110, 48: 0.140})):
        for depth, mae in maes.items():
            for seed, noise in ((0, -0.001), (1, 0.001)):
                rows.append({"task": "formation_energy", "train_size": 30_000, "arch": arch, "depth": depth,
                             "model": f"{arch}-{depth}", "seed": seed, "run_id": f"{arch}{depth}s{seed}",
                             schema.TEST_MAE: mae + noise})  # fmt: skip
    rows.append({"task": "formation_energy", "train_size": 30_000, "arch": "srnet", "depth": 17, "model": "srnet",
                 "seed": 0, "run_id": "sr", schema.TEST_MAE: 0.095})  # fmt: skip
    rows.append({"task": "formation_energy", "train_size": 3_000, "arch": "plain", "depth": 24, "model": "plain",
                 "seed": 0, "run_id": "small", schema.TEST_MAE: 0.5})  # fmt: skip
    rows.append({"task": "formation_energy", "train_size": 30_000, "arch": "", "depth": None, "model": "xgboost",
                 "seed": 0, "run_id": "xgb", schema.TEST_MAE: 0.097})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_depth_table_holds_each_architecture_run_at_several_depths_at_the_largest_size():
    from reports.stats import depth_table

    table = depth_table(_depth_finals(), "formation_energy")
    assert list(zip(table["arch"], table["depth"], strict=True)) == [
        ("irnet", 17), ("irnet", 24), ("irnet", 48), ("plain", 17), ("plain", 24), ("plain", 48)
    ]  # fmt: skip
    plain48 = table[(table["arch"] == "plain") & (table["depth"] == 48)].iloc[0]
    assert plain48["runs"] == 2 and plain48["mae_mean"] == pytest.approx(0.140) and plain48["models"] == "plain-48"
    assert depth_table(_depth_finals(), "matbench_steels").empty


def test_the_report_says_whether_plain_degrades_with_depth_and_irnet_does_not():
    from reports.document import depth_blocks
    from reports.render import Figure, Para, Table
    from reports.stats import depth_table

    blocks = depth_blocks("formation_energy", depth_table(_depth_finals(), "formation_energy"), "eV/atom")
    text = next(b.text for b in blocks if isinstance(b, Para))
    assert "plain: 0.10100 at depth 17, 0.14000 at 48 (+38.6%), worse at every greater depth" in text
    assert "irnet: 0.10000 at depth 17, 0.10100 at 48 (+1.0%), not monotone in depth" in text
    assert any(isinstance(b, Table) for b in blocks)
    figure = next(b for b in blocks if isinstance(b, Figure))
    assert figure.filename == "plots/formation_energy_depth.png" and figure.png.startswith(b"\x89PNG")
    assert depth_blocks("formation_energy", depth_table(_depth_finals().iloc[-1:], "formation_energy"), "") == []
