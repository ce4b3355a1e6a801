"""Where results are stored: the MLflow tracking URI and the Optuna storage URL, their defaults and checks.

Defaults: an embedded sqlite MLflow store ``<out>/mlflow.db`` (MLflow 3 refuses its file store, which is in
maintenance mode) and an sqlite Optuna storage ``<out>/optuna.db``; any MLflow tracking server and any
SQLAlchemy URL (PostgreSQL for many workers) on request. A store that cannot be used fails before any work
with a one-line :class:`UsageError` (exit 2) that never shows a password.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from benchmarks.errors import UsageError


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.expanduser().resolve()}"


def sqlite_path(url: str) -> str:
    """The file of an ``sqlite:///PATH`` URL (":memory:" when there is none)."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return unquote(path.split("?", 1)[0]) or ":memory:"


def default_tracking_uri(out_dir: Path) -> str:
    """``sqlite:///<out>/mlflow.db``."""
    return sqlite_url(out_dir / "mlflow.db")


def default_storage_url(out_dir: Path) -> str:
    """``sqlite:///<out>/optuna.db``."""
    return sqlite_url(out_dir / "optuna.db")


def is_local_store(uri: str) -> bool:
    """A database URI (not a tracking server): artifacts then go to the output folder."""
    return not uri.startswith(("http://", "https://", "databricks"))


def redact_url(url: str) -> str:
    """A URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def make_client(uri: str) -> Any:
    """An MlflowClient for ``uri`` (imported lazily: mlflow takes seconds to import)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def check_tracking_uri(uri: str) -> None:
    """Fail fast with a one-line UsageError when the tracking store cannot be written to."""
    if uri.startswith("file:") or "://" not in uri:
        raise UsageError(
            f"tracking URI {uri!r} is MLflow's file store, which MLflow refuses (maintenance mode); "
            "use sqlite:///PATH/mlflow.db or a server URL (http://host:5000)"
        )
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
                pass
        except urllib.error.HTTPError:
            pass  # the server answered (with an error page): it is reachable; MLflow calls will say more
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UsageError(f"MLflow tracking server {redact_url(uri)} cannot be reached ({reason})") from None
        return
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            raise UsageError(f"tracking URI {uri}: folder {path.parent} does not exist")
    try:
        make_client(uri).search_experiments(max_results=1)
    except Exception as exc:  # MlflowException, SQLAlchemy errors, ...
        raise UsageError(
            f"cannot open MLflow tracking store {redact_url(uri)}: {type(exc).__name__}: {first_line(exc)}"
        ) from None


def check_store_exists(tracking_uri: str) -> None:
    """For readers: fail when a sqlite URI names a file that is not there (MLflow would silently create an
    empty store), or when the URI is a file store this suite never writes."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if str(path) != ":memory:" and not path.is_file():
            raise UsageError(
                f"no MLflow store at {path} (from --tracking-uri {tracking_uri}); "
                "run `python -m benchmarks.run` first or point --tracking-uri at its store"
            )
    elif parsed.scheme in ("", "file"):
        raise UsageError(
            f"tracking URI {tracking_uri!r} is a file store, which this suite does not write; use the sqlite:/// "
            "(or postgresql://) URI of the benchmark run"
        )


def _lock_sqlite_transactions_at_begin(engine: Any) -> None:
    """Make each transaction on a sqlite ``engine`` take the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna claims a queued trial by reading it as WAITING and writing RUNNING with ``SELECT ... FOR UPDATE``,
    which sqlite ignores; and Python's sqlite3 only opens a transaction at the first write, so the read runs
    on its own. Two workers then both read WAITING and both run the same trial (the second fails with "Cannot
    tell a COMPLETE trial"). Beginning every transaction with the write lock makes the read and the write one
    atomic step. This is SQLAlchemy's recipe for pysqlite transactions ("Serializable isolation / Savepoints /
    Transactional DDL" in its SQLite dialect docs); the lock waits up to the connection's ``timeout``.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the "begin" hook below emits BEGIN, not the driver

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while Optuna set up its tables get the hooks when reopened


def make_storage(url: str, *, heartbeat_interval_s: int | None = None, grace_beats: int = 3,
                 on_stale: Callable[..., None] | None = None) -> Any:  # fmt: skip
    """An Optuna RDB storage for ``url``; a clear UsageError (exit 2) when it cannot be reached.

    With ``heartbeat_interval_s``, each running trial records every so many seconds that its worker is alive;
    after ``grace_beats`` missed beats Optuna fails it and calls ``on_stale`` (how workers on other machines
    find a trial whose worker died). :func:`studies.coordination.open_storage` passes the suite's settings.
    """
    import optuna
    from optuna.storages import RDBStorage

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes may share one sqlite file; wait for a lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 120}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
        engine_kwargs["pool_pre_ping"] = True  # a server restart between trials is not an error
    beat = heartbeat_interval_s
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=beat,
                grace_period=None if beat is None else beat * grace_beats,
                heartbeat_stale_trial_callback=on_stale if beat is not None else None,
            )
        if url.startswith("sqlite"):
            _lock_sqlite_transactions_at_begin(storage.engine)
        return storage
    except Exception as exc:  # SQLAlchemy raises many types (OperationalError, ArgumentError, ImportError...)
        raise UsageError(
            f"cannot open Optuna storage {redact_url(url)}: {type(exc).__name__}: {first_line(exc)}"
        ) from None
