"""The model registry: discovery of the ``MODELS`` declarations (in this repository and from installed plugins),
loud failures, and the promise that a new model is one new file (a ridge regression written to a temporary folder
runs through tuning, refit, tracking and the report under ``smoke`` and ``quick`` without any other change), and
the one-line refusals when a preset cannot run a model."""

from __future__ import annotations

import sys
import textwrap

import pandas as pd
import pytest

from benchmarks.contract import ModelInfo
from benchmarks.searchspace import ModelSearch, log_uniform
from studies import schema
from studies.registry import BENCHMARK_MODELS, ENTRY_POINT_GROUP, Registry, model_names, registry, use_registry

RIDGE_FILE = '''
"""Ridge regression in closed form: a model added in one file, nothing else changed."""
from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from benchmarks.contract import CurvePoint, FitCost, FitReport, Model, ModelInfo
from benchmarks.metrics import mae
from benchmarks.searchspace import ModelSearch, log_uniform


class RidgeModel(Model):
    name: ClassVar[str] = "ridge"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"alpha": 1.0}

    def fit(self, X_train, y_train, X_val, y_val, *, on_step=None, time_limit_s=None) -> FitReport:
        start = time.perf_counter()
        self.mean_, self.scale_ = X_train.mean(axis=0), X_train.std(axis=0) + 1e-12
        Z = (X_train - self.mean_) / self.scale_
        self.bias_ = float(np.mean(y_train))
        gram = Z.T @ Z + float(self.params["alpha"]) * np.eye(Z.shape[1])
        self.coef_ = np.linalg.solve(gram, Z.T @ (y_train - self.bias_))
        train_mae, val_mae = mae(y_train, self.predict(X_train)), mae(y_val, self.predict(X_val))
        if on_step is not None:
            on_step(1, val_mae)
        seconds = time.perf_counter() - start
        return FitReport([CurvePoint(1, train_mae, val_mae, seconds)], 1, val_mae, seconds, "cpu", "completed")

    def predict(self, X):
        return ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_) @ self.coef_ + self.bias_

    def state(self):
        return {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "bias": self.bias_}

    def load_state(self, state):
        self.mean_, self.scale_, self.coef_, self.bias_ = state["mean"], state["scale"], state["coef"], state["bias"]


MODELS = (
    ModelInfo(name="ridge", model_class=RidgeModel, family="reference", group="GROUP",
              search=ModelSearch({"alpha": log_uniform(1e-3, 1e3)}), color="#000000",
              packages={"numpy-for-ridge": ("numpy",)}, step_name="solve",
              fit_cost=FitCost(seconds_per_1k_rows=0.01, min_seconds=0.1)),
)
'''


def test_discovery_finds_every_declared_model_once():
    import importlib
    import pkgutil

    declared = [
        info.name
        for package in ("irnet", "baselines")
        for module in pkgutil.iter_modules(importlib.import_module(package).__path__, package + ".")
        for info in getattr(importlib.import_module(module.name), "MODELS", ())
    ]
    names = model_names()
    assert sorted(names) == sorted(declared) and len(set(names)) == len(names)  # each declaration, once
    assert names[: len(BENCHMARK_MODELS)] == BENCHMARK_MODELS  # the default comparison first
    families = {info.name: info.family for info in registry()}
    assert [families[m] for m in BENCHMARK_MODELS] == ["network"] * 3 + ["tree"] * 3
    assert {"catboost", "tabm", "elemnet", "dummy"} <= set(names) - set(BENCHMARK_MODELS)  # only with --models
    assert len({info.color for info in registry()}) == len(names)  # a model can be told apart in every figure


def test_a_duplicate_or_broken_declaration_fails_loudly():
    infos = list(registry())
    with pytest.raises(RuntimeError, match="'rf' is declared twice"):
        Registry([*infos, infos[3]])
    rf = registry().info("rf")
    broken = ModelInfo(**{**rf.__dict__, "name": "rf2"})  # its class says "rf"
    with pytest.raises(RuntimeError, match=r"broken model declaration.*says name 'rf'"):
        Registry([*infos, broken])
    bad_space = ModelInfo(**{**rf.__dict__, "search": ModelSearch({"alpha": log_uniform(1e-3, 1.0)})})
    with pytest.raises(RuntimeError, match="unknown parameter 'alpha'"):
        Registry([info for info in infos if info.name != "rf"] + [bad_space])
    with pytest.raises(RuntimeError, match="cannot import model module no_such_module_here"):
        Registry.discover(modules=["no_such_module_here"])


def write_ridge(folder, module, group):
    """The ridge model's file in ``folder``, declared in budget group ``group``, importable as ``module``."""
    (folder / f"{module}.py").write_text(textwrap.dedent(RIDGE_FILE).replace("GROUP", group))
    sys.modules.pop(module, None)


@pytest.mark.parametrize(("preset", "n_trials"), [("smoke", 3), ("quick", 2)])
def test_a_model_in_one_new_file_runs_through_tuning_refit_tracking_and_the_report(
    preset, n_trials, tmp_path, monkeypatch, capsys
):
    from benchmarks.run import main
    from reports.build import main as build_report
    from studies.stores import make_client

    write_ridge(tmp_path, "ridge_model", "reference")  # quick budgets the reference group by rule: 2 trials
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    with use_registry(Registry.discover(modules=["ridge_model"])):
        code = main(["--task", "matbench_steels", "--preset", preset, "--models", "ridge,dummy", "--folds", "0",
                     "--out", str(out), "--no-progress"])  # fmt: skip
        stdout = capsys.readouterr().out
        assert code == 0
        assert "ridge" in stdout.split("rank", 1)[1]  # on the console leaderboard

        client = make_client(f"sqlite:///{out / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("matbench_steels")
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.model = 'ridge'")
        parent = [r for r in runs if r.data.tags[schema.TAG_KIND] == schema.KIND_FINAL]
        trials = [r for r in runs if r.data.tags[schema.TAG_KIND] == schema.KIND_TRIAL]
        assert len(parent) == 1 and parent[0].data.tags[schema.TAG_STATUS] == schema.STATUS_DONE
        assert parent[0].data.tags["pkg.numpy-for-ridge"]  # its declared package is recorded
        assert len(trials) == n_trials and all("alpha" in t.data.params for t in trials)  # tuned over its space

        assert (
            build_report(["--tracking-uri", f"sqlite:///{out / 'mlflow.db'}", "--out", str(tmp_path / "report")]) == 0
        )
    board = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    ridge = board[(board["model"] == "ridge") & (board["metric"] == "mae")]
    assert len(ridge) == 1 and ridge["value"].iloc[0] == pytest.approx(parent[0].data.metrics[schema.TEST_MAE])
    assert "ridge" not in model_names()  # the temporary registry is gone
    sys.modules.pop("ridge_model", None)


@pytest.mark.parametrize(
    ("group", "preset", "message"),
    [
        ("linear", "quick", "preset quick has no budget rule for the linear group of model ridge"),
        (
            "networks",
            "smoke",
            "preset smoke sets batch_size, step_cap, patience for the networks group, but model "
            "ridge declares no parameter for it",
        ),
    ],
)
def test_a_preset_that_cannot_run_a_model_refuses_it_in_one_line_before_any_work(
    group, preset, message, tmp_path, monkeypatch, capsys
):
    from benchmarks.cli import main_guard
    from benchmarks.run import main

    write_ridge(tmp_path, "ridge_refused", group)
    monkeypatch.syspath_prepend(str(tmp_path))
    with use_registry(Registry.discover(modules=["ridge_refused"])):
        args = ["--task", "matbench_steels", "--preset", preset, "--models", "ridge", "--folds", "0",
                "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
        code = main_guard(main, args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()  # before any work: no store was made
    sys.modules.pop("ridge_refused", None)


def test_an_installed_plugin_is_discovered_through_its_entry_point(tmp_path, monkeypatch):
    # An installed distribution, as pip leaves it: its metadata folder names the module in the entry-point group.
    write_ridge(tmp_path, "ridge_plugin", "reference")
    dist_info = tmp_path / "ridge_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ridge-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nridge = ridge_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = Registry.discover()
    assert "ridge" in found.names and found.info("ridge").model_class.__module__ == "ridge_plugin"
    assert "ridge" not in Registry.discover(plugins=False).names
    sys.modules.pop("ridge_plugin", None)
