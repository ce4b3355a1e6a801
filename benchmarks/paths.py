"""Where data, features and results live. One place decides, so every command agrees."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.errors import UsageError

CACHE_ENV = "IRNET_BENCH_CACHE"
RESULTS_DIR = Path("results")


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data and feature cache: ``override`` (a --cache-dir flag), else $IRNET_BENCH_CACHE, else
    $XDG_CACHE_HOME/irnet-bench, else ~/.cache/irnet-bench."""
    if override:
        path = Path(override)
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = base / "irnet-bench"
    return path.expanduser()


def default_out_dir() -> Path:
    """Where a benchmark run writes its Optuna and MLflow stores unless --out says otherwise."""
    return RESULTS_DIR


def check_out_dir(path: Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output folder that cannot be made: ``path`` is an existing file, or its
    nearest existing ancestor is a file or not writable. Creates nothing (a refused run leaves no trace)."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is an existing file, not a folder; give a folder (it is created if missing)")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path} cannot be created: {ancestor} is a file; give a folder path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path} cannot be created: {ancestor} is not writable; give a folder you can write to")
    return path


def make_out_dir(path: Path, flag: str = "--out") -> Path:
    """:func:`check_out_dir`, then create the folder; an OS refusal (read-only file system, ...) is one line."""
    path = check_out_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{flag} {path} cannot be created ({exc.strerror or type(exc).__name__}); give another folder"
        ) from None
    return path
