"""Where data, features and results live. One place decides, so every command agrees."""
from __future__ import annotations

import os
from pathlib import Path

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
