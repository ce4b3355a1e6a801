"""Cross-process locks kept in the database every worker already shares: the Optuna storage.

Many workers, on one machine or many, claim parent runs and final refits. A claim is "look, then write"; under
one of these locks no two workers can interleave those steps. PostgreSQL uses an advisory lock, MySQL
``GET_LOCK``, sqlite an exclusive transaction on the database file (which all local processes share).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

from benchmarks.errors import BenchError

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 300.0


def _lock_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _sqlite_path(url: str) -> str:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return unquote(path.split("?", 1)[0]) or ":memory:"


@contextlib.contextmanager
def storage_lock(url: str, name: str, *, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock ``name`` in the database at ``url`` (an Optuna RDB storage URL) for the ``with`` body."""
    scheme = urlparse(url).scheme.split("+", 1)[0]
    if scheme == "sqlite":
        with _sqlite_lock(_sqlite_path(url), timeout_s):
            yield
    elif scheme in ("postgresql", "postgres"):
        with _postgres_lock(url, name, timeout_s):
            yield
    elif scheme in ("mysql", "mariadb"):
        with _mysql_lock(url, name, timeout_s):
            yield
    else:
        log.warning("no cross-process lock for %s storages; run one worker per study", scheme)
        yield


@contextlib.contextmanager
def _sqlite_lock(path: str, timeout_s: float) -> Iterator[None]:
    connection = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")  # waits up to timeout_s for other writers
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
    finally:
        connection.close()


def _engine(url: str):
    import sqlalchemy

    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


@contextlib.contextmanager
def _postgres_lock(url: str, name: str, timeout_s: float) -> Iterator[None]:
    import sqlalchemy

    key = _lock_key(name)
    with _engine(url).connect() as connection:
        deadline = time.monotonic() + timeout_s
        while not connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            if time.monotonic() > deadline:
                raise BenchError(f"waited {timeout_s:.0f} s for the lock {name!r}; is a worker stuck holding it?")
            time.sleep(0.2)
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.commit()


@contextlib.contextmanager
def _mysql_lock(url: str, name: str, timeout_s: float) -> Iterator[None]:
    import sqlalchemy

    lock_name = "irnet_bench_" + hashlib.sha256(name.encode()).hexdigest()[:40]
    with _engine(url).connect() as connection:
        got = connection.execute(sqlalchemy.text("SELECT GET_LOCK(:n, :t)"), {"n": lock_name, "t": int(timeout_s)}).scalar()
        if got != 1:
            raise BenchError(f"waited {timeout_s:.0f} s for the lock {name!r}; is a worker stuck holding it?")
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name})
