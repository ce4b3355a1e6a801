"""The speed script and the GPU check: they run, count FLOPs right, and need only numpy, pandas and torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.errors import UsageError
from benchmarks.speed import linear_shapes, parse_ints, training_flops_per_sample

ROOT = Path(__file__).resolve().parents[1]
BLOCKERS = ROOT / "tests" / "blockers"


def test_linear_shapes_and_flops_of_irnet17() -> None:
    shapes = linear_shapes(17, 145)
    # 16 hidden layers + head, plus the 6 projections where the width changes (145->1024, ..., 64->32).
    assert len(shapes) == 17 + 6
    assert shapes[0] == (145, 1024) and shapes[-1] == (32, 1)
    # 6 FLOPs per weight per sample (2 forward, 4 backward); weights = parameters minus biases.
    weights = sum(i * o for i, o in shapes)
    assert training_flops_per_sample(shapes) == 6 * weights
    assert weights == 5_554_529 - sum(o for _, o in shapes) - 2 * (1024 * 4 + 512 * 3 + 256 * 3 + 128 * 3 + 64 * 2 + 32)


def test_parse_ints_rejects_bad_lists() -> None:
    assert parse_ints("32, 256", "--batch-sizes") == [32, 256]
    for bad in ("", "0", "a,b"):
        with pytest.raises(UsageError, match="--batch-sizes"):
            parse_ints(bad, "--batch-sizes")


def _run_blocked(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a module with optuna, mlflow, matminer, pymatgen, sklearn, xgboost, lightgbm unimportable."""
    env = {**os.environ, "PYTHONPATH": f"{BLOCKERS}{os.pathsep}{ROOT}"}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def test_blocker_blocks(tmp_path: Path) -> None:
    done = _run_blocked(["-c", "import sklearn"], tmp_path)
    assert done.returncode != 0 and "blocked" in done.stderr


def test_speed_runs_without_the_heavy_packages(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    args = ["-m", "benchmarks.speed", "--quick", "--depths", "17", "--batch-sizes", "32", "--steps", "2",
            "--featurize-rows", "1000", "--json", str(out)]  # fmt: skip
    done = _run_blocked(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["featurisation"]["matminer"] is None  # matminer was blocked, so not timed
    assert result["featurisation"]["numpy"]["compositions"] == 1000
    fp32, bf16 = result["training"]  # float32 and bf16 side by side, the same steps
    for row in (fp32, bf16):
        assert (row["model"], row["batch_size"], row["rows"], row["device"]) == ("irnet-17", 32, 64, "cpu")
        assert row["samples_per_second"] > 0 and row["fraction_of_mm_peak"] > 0
    assert fp32["amp"] is False and fp32["precision"] == "float32"
    if bf16["amp"]:  # a CPU with native bf16: the ratio of the two rows is reported
        assert bf16["precision"].startswith("bf16 autocast (CPU ")
        (ratio,) = result["bf16_speedup"]
        assert ratio["ratio"] == pytest.approx(bf16["samples_per_second"] / fp32["samples_per_second"])
    else:  # without it, amp falls back to float32 and no ratio is claimed
        assert bf16["precision"].startswith("float32") and result["bf16_speedup"] == []


@pytest.mark.slow
def test_gpu_check_dry_run_without_the_heavy_packages(tmp_path: Path) -> None:
    env_out = tmp_path / "out"
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=1800,
                          env={**os.environ, "OUT": str(env_out), "PYTHONPATH": str(BLOCKERS),
                               "PYTHON": sys.executable})  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((env_out / "gpu_check.json").read_text())
    assert result["dry_run"] and result["paper_regime"]["epochs"] == 1
    # The full-data stage: the three networks as the quick trial 0, each scored once on the test rows.
    fits = {fit["model"]: fit for fit in result["full_data"]}
    assert list(fits) == ["irnet-17", "srnet-17", "plain-17"]
    for fit in fits.values():
        assert fit["epochs"] == 2 and fit["stopped"] == "max_steps" and 0 < fit["test_mae"] < 5
        assert (
            fit["params"]["amp"] is True and fit["params"]["lr_decay"] == 0.3 and fit["params"]["optimizer"] == "adamw"
        )
    assert "validation MAE" in (env_out / "gpu_check.txt").read_text()
