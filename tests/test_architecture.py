"""The house rules that a reader of the code relies on: no import cycle in ``studies/``, deferred or not, and a
report that needs none of the models' libraries (it reads what each run recorded about its model)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def imports_within(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports anywhere in its body (function-level imports too)."""
    modules = {path.stem: path for path in (REPO / package).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == package:
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith(package + ".")}
        graph[name] = found & set(modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[node] = "closed"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_cycle_finder_finds_a_deferred_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_studies_has_no_import_cycle_deferred_or_not():
    assert find_cycle(imports_within("studies")) is None


def test_a_report_builds_with_torch_and_the_tree_libraries_unimportable(smoke_store, tmp_path):
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests' / 'blockers'}{os.pathsep}{REPO}",
           "IRNET_BENCH_BLOCKED": "torch,sklearn,xgboost,lightgbm"}  # fmt: skip
    probe = "import reports.build, sys; sys.exit(int(any(m in sys.modules for m in ('torch', 'xgboost'))))"
    assert subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path).returncode == 0
    done = subprocess.run([sys.executable, "-m", "reports.build", "--tracking-uri", smoke_store, "--out", str(out)],
                          env=env, cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    board = pd.read_csv(out / "leaderboard.csv")
    assert {"rf", "dummy"} <= set(board["model"])
    assert "No module named 'torch'" not in done.stderr


def test_a_run_is_grouped_by_the_depth_its_model_declared_not_by_a_parameter_of_that_name():
    from reports.collect import _depth
    from studies import schema

    network = {schema.TAG_MODEL_FAMILY: "network", schema.TAG_MODEL_DEPTH: "24"}
    assert _depth(network, {"depth": "24"}) == 24
    assert _depth({schema.TAG_MODEL_FAMILY: "tree"}, {"depth": "7"}) is None  # CatBoost's depth is a tree's
    assert _depth({}, {"depth": "17"}) == 17  # a run written before runs recorded their declaration
