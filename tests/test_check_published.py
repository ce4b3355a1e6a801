"""``python -m reports.check_published``: a check that finds nothing to check fails (exit 2, one line), so the CI
stage that guards the published results cannot pass on a folder that moved or lost its exports. That it passes on
matching exports and fails on a differing report is ``tests/test_export.py``'s."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reports.check_published", str(root)], cwd=REPO, capture_output=True, text=True
    )


@pytest.mark.parametrize("holds", ["nothing", "a report without its export"])
def test_a_folder_without_exports_is_an_error_naming_it(tmp_path, holds):
    root = tmp_path / "results"
    if holds != "nothing":  # what a report folder looks like once its export/ has gone
        (root / "quick").mkdir(parents=True)
        (root / "quick" / "leaderboard.md").write_text("# Leaderboard\n")
    result = _check(root)
    assert result.returncode == 2, result
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert str(root) in result.stderr and "export/irnet-bench-export.json" in result.stderr
    assert ("is not a folder" if holds == "nothing" else "no export under") in result.stderr
