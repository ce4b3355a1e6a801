"""Who is running a trial or a final refit, and whether that process is still alive.

A worker is ``host:pid:start``, where ``start`` is the process start time (so a recycled pid is not taken for
the old process). Liveness can be decided only for workers on this host; a worker on another host is assumed
alive (heartbeats, a later issue, decide for those).
"""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


def _process_start(pid: int) -> str:
    """The process start time in clock ticks since boot (Linux), or "" where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after its closing ")".
    return stat.rsplit(")", 1)[1].split()[19]


HOST_ENV = "IRNET_BENCH_WORKER_HOST"


def _host() -> str:
    """This machine's name in worker ids: $IRNET_BENCH_WORKER_HOST, else the host name.

    Set the variable where workers on different machines share a host name (containers), so that a pid is
    only ever checked on the machine it belongs to.
    """
    return os.environ.get(HOST_ENV) or socket.gethostname()


@functools.cache
def current_worker() -> str:
    """This process's worker id."""
    return f"{_host()}:{os.getpid()}:{_process_start(os.getpid())}"


def is_alive(worker: str) -> bool:
    """False only when ``worker`` ran on this host and that process no longer exists."""
    try:
        host, pid_text, start = worker.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False  # not a worker id this code wrote
    if host != _host():
        return True  # another machine: heartbeats decide
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not start or _process_start(pid) == start
