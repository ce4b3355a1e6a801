"""Cross-process locks in the shared storage: no two holders at once, on sqlite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Each process does 15 read-sleep-write increments of a shared counter file under the lock; without mutual
# exclusion the sleeps make lost updates all but certain.
WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from studies.coordination import storage_lock
    url, counter = sys.argv[1], Path(sys.argv[2])
    for _ in range(15):
        with storage_lock(url, "counter"):
            value = int(counter.read_text())
            time.sleep(0.01)
            counter.write_text(str(value + 1))
    """
)


def _race(url: str, tmp_path) -> int:
    counter = tmp_path / "counter.txt"
    counter.write_text("0")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), url, str(counter)]) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    return int(counter.read_text())


def test_sqlite_lock_excludes_other_processes(tmp_path):
    assert _race(f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path) == 45


@pytest.mark.postgres
def test_postgres_lock_excludes_other_processes(tmp_path, postgres_url):
    assert _race(postgres_url, tmp_path) == 45
