"""The pinned data archives: fetched through pip from the user's configured package index, checked against
pinned sha256 sums, unpacked file by file into the cache, atomically.

A corrupted or partial cache file fails its checksum on the next read and is fetched again once; a second
mismatch is an error. Offline users can point $IRNET_BENCH_ARCHIVE_DIR at a folder holding the wheels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from benchmarks.atomic import atomic_write
from benchmarks.errors import SourceUnavailable
from benchmarks.paths import cache_dir

log = logging.getLogger(__name__)

ARCHIVE_DIR_ENV = "IRNET_BENCH_ARCHIVE_DIR"


@cache
def sources() -> dict[str, Any]:
    """The pinned archives and file hashes (benchmarks/sources.json)."""
    return json.loads(resources.files("benchmarks").joinpath("sources.json").read_text())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _archive(name: str) -> dict[str, Any]:
    return sources()["archives"][name]


def _wheel_path(name: str, root: Path) -> Path:
    return root / "archives" / _archive(name)["wheel"]


def _download_wheel(name: str, dest: Path) -> None:
    """Fetch the pinned wheel with pip into ``dest``'s folder (no host name: pip uses the user's index)."""
    spec = _archive(name)
    local = os.environ.get(ARCHIVE_DIR_ENV)
    if local and (Path(local) / spec["wheel"]).is_file():
        with atomic_write(dest) as out, open(Path(local) / spec["wheel"], "rb") as src:
            shutil.copyfileobj(src, out)
        return
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--python-version", spec["python_version"], spec["requirement"], "-d", tmp, "--quiet",
        ]  # fmt: skip
        log.info("fetching %s through pip", spec["requirement"])
        done = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / spec["wheel"]
        if done.returncode != 0 or not got.is_file():
            reason = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise SourceUnavailable(
                f"could not fetch {spec['requirement']} through pip ({reason}); check the package index is "
                f"reachable, or put {spec['wheel']} in a folder and set {ARCHIVE_DIR_ENV} to it"
            )
        os.replace(got, dest)


def ensure_wheel(name: str, *, root: Path | None = None) -> Path:
    """The verified wheel of archive ``name`` in the cache, fetched if missing or corrupt."""
    root = root or cache_dir()
    path = _wheel_path(name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = _archive(name)["sha256"]
    for attempt in range(2):
        if not path.is_file():
            _download_wheel(name, path)
        if sha256_of(path) == expected:
            return path
        log.warning("%s fails its sha256 check (attempt %d); fetching it again", path.name, attempt + 1)
        path.unlink()
    raise SourceUnavailable(f"{path.name} fails its pinned sha256 twice; the index serves a different file")


def archive_file(name: str, member: str, *, root: Path | None = None) -> Path:
    """Path of one verified file of archive ``name`` (e.g. ``matbench/steels_yield.csv``) in the cache.

    Cached copies are hashed on every call: a corrupt or partial file is unpacked again once.
    """
    root = root or cache_dir()
    spec = _archive(name)
    try:
        expected = spec["files"][member]["sha256"]
    except KeyError:
        raise SourceUnavailable(f"{member} is not a pinned file of the {name} archive") from None
    target = root / "data" / name / member
    for _attempt in range(2):
        if target.is_file() and sha256_of(target) == expected:
            return target
        if target.is_file():
            log.warning("cached %s fails its sha256 check; unpacking it again", target)
        wheel = ensure_wheel(name, root=root)
        with zipfile.ZipFile(wheel) as zf, zf.open(spec["member_prefix"] + member) as src, atomic_write(target) as out:
            shutil.copyfileobj(src, out)
    if sha256_of(target) != expected:
        target.unlink(missing_ok=True)
        raise SourceUnavailable(f"{member} from {spec['wheel']} fails its pinned sha256; the archive changed")
    return target


def is_cached(name: str, member: str, *, root: Path | None = None) -> bool:
    """Whether the verified file is already in the cache (hashes it; reads nothing from the network)."""
    target = (root or cache_dir()) / "data" / name / member
    return target.is_file() and sha256_of(target) == _archive(name)["files"][member]["sha256"]
