"""How many workers share one run without losing or repeating work: the one home of coordination.

- Workers: a worker is ``host:pid:start`` (``start``: the process start time, so a recycled pid is not taken
  for the old process). Liveness is decided by pid on this host, by heartbeats everywhere.
- Locks: "look, then write" claims run under a lock in the database every worker already shares, the Optuna
  storage (PostgreSQL advisory lock, MySQL ``GET_LOCK``, sqlite exclusive transaction).
- Trials: a RUNNING trial whose worker died (stale Optuna heartbeat on any machine, or a dead pid here) is
  failed and queued again once with the same parameters; a trial interrupted by Ctrl-C too. The retry names
  the first trial of its chain (``checkpoint_of``), whose checkpoint its fit resumes; the retry is claimed by
  one worker like any queued trial, so no checkpoint is resumed twice.
- Parent runs: one per :class:`studies.schema.RunKey`, created or resumed under a lock, never duplicated;
  :func:`studies.schema.is_done` is the one definition of a finished (model, fold, seed, size), used here, by
  ``benchmarks.run`` and by the report.
- Refits: exactly one worker refits and scores the test part of a parent run (a claim under a lock, kept
  alive by a heartbeat tag); a run that waits for refits other workers took takes over those whose worker died.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import optuna
from optuna.trial import FrozenTrial, TrialState

from benchmarks.errors import BenchError, UsageError
from studies import schema
from studies.stores import make_storage, sqlite_path
from studies.tracking import create_parent_run, find_parent_runs, set_tags

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ workers ---

HOST_ENV = "IRNET_BENCH_WORKER_HOST"


def process_start_time(pid: int) -> str:
    """The process start time in clock ticks since boot (Linux), or "" where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after its closing ")".
    return stat.rsplit(")", 1)[1].split()[19]


def _host() -> str:
    """This machine's name in worker ids: $IRNET_BENCH_WORKER_HOST, else the host name.

    Set the variable where workers on different machines share a host name (containers), so that a pid is
    only ever checked on the machine it belongs to.
    """
    return os.environ.get(HOST_ENV) or socket.gethostname()


@functools.cache
def current_worker() -> str:
    """This process's worker id."""
    return f"{_host()}:{os.getpid()}:{process_start_time(os.getpid())}"


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
    return not start or process_start_time(pid) == start


# -------------------------------------------------------------------------------------------------- locks ---

LOCK_TIMEOUT_S = 300.0


@contextlib.contextmanager
def storage_lock(url: str, name: str, *, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock ``name`` in the database at ``url`` (an Optuna RDB storage URL) for the ``with`` body."""
    scheme = urlparse(url).scheme.split("+", 1)[0]
    if scheme == "sqlite":
        with _sqlite_lock(sqlite_path(url), timeout_s):
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


def _engine(url: str) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def _lock_busy(name: str, timeout_s: float) -> BenchError:
    return BenchError(f"waited {timeout_s:.0f} s for the lock {name!r}; is a worker stuck holding it?")


@contextlib.contextmanager
def _postgres_lock(url: str, name: str, timeout_s: float) -> Iterator[None]:
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)  # a signed 64-bit key
    with _engine(url).connect() as connection:
        deadline = time.monotonic() + timeout_s
        while not connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            if time.monotonic() > deadline:
                raise _lock_busy(name, timeout_s)
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
        got = connection.execute(
            sqlalchemy.text("SELECT GET_LOCK(:n, :t)"), {"n": lock_name, "t": int(timeout_s)}
        ).scalar()
        if got != 1:
            raise _lock_busy(name, timeout_s)
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name})


# ------------------------------------------------------------------------------------------------- trials ---

# Trial user attributes that say who runs a trial and what became of it.
ATTR_WORKER = "worker"  # who runs the trial
ATTR_FAILURE = "failure"  # set when the model crashed: "<ExceptionType>: message"; such a FAIL counts
ATTR_SURPLUS = "surplus"  # why a trial was not run: "budget" (taken by other processes) or "duplicate" (defaults)
ATTR_INTERRUPTED = "interrupted"  # found RUNNING with its local process dead; does not count, re-queued
ATTR_RETRY_OF = "retry_of"  # number of the interrupted trial this one re-runs
ATTR_DEFAULTS = "defaults"  # set on the enqueued trial 0: the model's defaults (under the preset's caps)
ATTR_CHECKPOINT_OF = "checkpoint_of"  # the first trial of a retry chain: its number names the fit's checkpoint
# A study with row rungs (studies.row_rungs): the rung a trial runs on, the trial a promoted one repeats on more rows,
# and its rung's training rows.
ATTR_ROW_RUNG, ATTR_PROMOTED_FROM, ATTR_RUNG_ROWS = "row_rung", "promoted_from", "rung_rows"
# What a retry takes over from the trial it repeats (besides its parameters): what that trial was.
INHERITED_BY_RETRY = (ATTR_DEFAULTS, ATTR_ROW_RUNG, ATTR_PROMOTED_FROM, ATTR_RUNG_ROWS)
STUDY_ATTR_WORKER_PREFIX = "worker:"  # one study attribute per process that has worked on the study

# A RUNNING trial whose process was killed between creating it and recording its worker has no owner. It is
# taken as dead at once when no other process that worked on the study is alive, else after this long.
STALE_OWNERLESS_SECONDS = 60.0
HEARTBEAT_ENV = "IRNET_BENCH_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10
HEARTBEAT_GRACE = 3  # missed Optuna heartbeats before a running trial is taken as dead


def heartbeat_seconds() -> int:
    """How often a running trial records that its worker is alive ($IRNET_BENCH_HEARTBEAT_S, default 10)."""
    try:
        return max(1, int(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)))
    except ValueError:
        raise UsageError(f"${HEARTBEAT_ENV} must be a whole number of seconds") from None


def register_worker(study: optuna.Study) -> None:
    """Record that this process works on ``study`` (before it starts any trial), so that others can tell
    whether a RUNNING trial without a recorded owner may still belong to a live process."""
    study.set_user_attr(STUDY_ATTR_WORKER_PREFIX + current_worker(), time.time())


def other_workers_alive(study: optuna.Study) -> bool:
    """Whether another process that worked on ``study`` may still be running."""
    me = current_worker()
    workers = [
        k.removeprefix(STUDY_ATTR_WORKER_PREFIX) for k in study.user_attrs if k.startswith(STUDY_ATTR_WORKER_PREFIX)
    ]
    return any(w != me and is_alive(w) for w in workers)


def running_elsewhere(trial: FrozenTrial, others_alive: bool) -> bool:
    """A RUNNING trial whose process still exists (or may: another host, or an owner not yet recorded while
    another process that works on the study is alive)."""
    if trial.state != TrialState.RUNNING:
        return False
    owner = trial.user_attrs.get(ATTR_WORKER)
    if owner is None:
        started = trial.datetime_start or datetime.now()
        return others_alive and datetime.now() - started < timedelta(seconds=STALE_OWNERLESS_SECONDS)
    return is_alive(owner)


def open_storage(url: str) -> Any:
    """The Optuna storage at ``url`` as workers share it: each running trial beats every
    :func:`heartbeat_seconds`; after :data:`HEARTBEAT_GRACE` missed beats (its worker died, on any machine) the
    trial is failed and queued again with the same parameters (:func:`requeue_interrupted`)."""
    return make_storage(url, heartbeat_interval_s=heartbeat_seconds(), grace_beats=HEARTBEAT_GRACE,
                        on_stale=requeue_interrupted)  # fmt: skip


def is_interrupted(trial: FrozenTrial) -> bool:
    """A trial cut short by a kill, a dead worker or Ctrl-C: FAIL without a crash of the model (``failure``) and
    not a surplus trial. It does not count, and a retry (:func:`requeue_interrupted`) takes its place."""
    return trial.state == TrialState.FAIL and not ({ATTR_FAILURE, ATTR_SURPLUS} & set(trial.user_attrs))


def chain_head(trial: FrozenTrial) -> int:
    """The first trial of ``trial``'s retry chain (itself unless it is a retry): the configuration it runs."""
    return int(trial.user_attrs.get(ATTR_CHECKPOINT_OF, trial.number))


def requeue_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue an interrupted trial again with the parameters it had drawn, once.

    Optuna calls this for a trial whose heartbeat went stale (its worker died, on any machine);
    :func:`recover_interrupted` calls it for trials found dead by process id or cut short by Ctrl-C. The retry
    inherits what its original was: trial 0 (``defaults``, kept apart from a budget's search seconds), the
    first trial of the chain (whose checkpoint its fit resumes); :mod:`studies.tuning` gives it the rungs its
    original passed and the seconds its checkpoint holds when it starts.
    """
    trials = study.get_trials(deepcopy=False)
    if any(t.user_attrs.get(ATTR_RETRY_OF) == trial.number for t in trials):
        return
    # The retry resumes the interrupted fit's checkpoint: it is named by the first trial of the chain.
    attrs: dict[str, Any] = {ATTR_RETRY_OF: trial.number, ATTR_CHECKPOINT_OF: chain_head(trial)}
    attrs.update({k: trial.user_attrs[k] for k in INHERITED_BY_RETRY if k in trial.user_attrs})
    study.enqueue_trial(trial.params, user_attrs=attrs)
    log.info("%s: trial %d was interrupted; queued again", study.study_name, trial.number)


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by dead processes as FAIL, and re-queue every interrupted trial once.

    Dead means: a stale heartbeat (any machine), or a process that no longer exists (this machine). A FAIL
    is an interruption unless the model crashed (``failure``) or the trial was a surplus one. Returns the
    numbers of the trials found interrupted (for the tracker to mark their runs).
    """
    from optuna.storages import fail_stale_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fail_stale_trials is marked experimental
        fail_stale_trials(study)  # calls requeue_interrupted for each trial it fails
    others_alive = other_workers_alive(study)
    interrupted: list[FrozenTrial] = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING and not running_elsewhere(t, others_alive):
            study._storage.set_trial_user_attr(t._trial_id, ATTR_INTERRUPTED, True)  # Optuna has no public call
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            interrupted.append(t)
        elif is_interrupted(t):
            interrupted.append(t)  # Ctrl-C (Optuna marks the trial FAIL) or a stale heartbeat
    for t in interrupted:
        requeue_interrupted(study, t)
    return [t.number for t in interrupted]


# ------------------------------------------------------------------------------------------- parent runs ---


def _done_runs(client: Any, experiment_id: str, key: schema.RunKey) -> list[Any]:
    return [r for r in find_parent_runs(client, experiment_id, key) if schema.is_done(r)]


def is_key_done(client: Any, experiment_id: str, key: schema.RunKey) -> bool:
    """Whether the parent run of ``key`` is done (whoever did it)."""
    return bool(_done_runs(client, experiment_id, key))


def close_if_done(client: Any, experiment_id: str, key: schema.RunKey) -> bool:
    """Whether the parent run of ``key`` is done; a done run never marked FINISHED (the order in which
    earlier versions wrote the done tag left that possible) is marked FINISHED now."""
    done = _done_runs(client, experiment_id, key)
    if done and done[0].info.status != "FINISHED":
        client.set_terminated(done[0].info.run_id, status="FINISHED")
    return bool(done)


def check_parent_config(run: Any, config_tags: Mapping[str, str], key: schema.RunKey) -> None:
    """Refuse to resume or skip a parent run made from other data or another training-row cap."""
    changed = {k: (run.data.tags.get(k), v) for k, v in config_tags.items() if run.data.tags.get(k, v) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise UsageError(
            f"{key.run_name} of {key.task} ({key.preset}) in this tracking store was run with other settings "
            f"({detail}); use the same settings to resume, or another --out/--tracking-uri"
        )


def claim_parent_run(
    client: Any, experiment_id: str, key: schema.RunKey, tags: Mapping[str, str], config_tags: Mapping[str, str]
) -> tuple[str, str]:
    """Find or create the parent run of ``key``; returns (run id, state), state "new", "resumed" or "done"
    (skip it). An unfinished run (crashed, killed, or being worked on by a joining process) is resumed,
    never duplicated. Call it under :func:`storage_lock` so that two workers cannot both create one.
    """
    runs = find_parent_runs(client, experiment_id, key)
    for run in runs:
        check_parent_config(run, config_tags, key)
    done = [r for r in runs if schema.is_done(r)]
    if done:
        return done[0].info.run_id, "done"
    if not runs:
        return create_parent_run(client, experiment_id, key, {**tags, **config_tags}), "new"
    run = runs[0]
    if len(runs) > 1:
        log.warning("%s: %d unfinished parent runs; resuming the oldest (%s)", key.run_name, len(runs), run.info.run_id)
    client.update_run(run.info.run_id, status="RUNNING")
    if schema.TAG_ERROR in run.data.tags:  # the failure of an earlier attempt; this one retries
        client.delete_tag(run.info.run_id, schema.TAG_ERROR)
    set_tags(client, run.info.run_id, {**tags, **config_tags})
    return run.info.run_id, "resumed"


def mark_parent_interrupted(client: Any, run_id: str) -> None:
    """Leave an unfinished parent run KILLED (a rerun of the same command resumes it)."""
    try:
        client.set_terminated(run_id, status="KILLED")
    except Exception:  # best effort while the process is being interrupted
        log.debug("could not mark run %s KILLED", run_id, exc_info=True)


# ------------------------------------------------------------------------------------------------ refits ---


class FinalHeartbeat:
    """While a worker refits and scores, beat a tag on the parent run so workers on other machines can tell
    a long refit from a dead worker."""

    interval_s: float = 10.0
    grace: int = 6  # missed beats before the refit is taken as abandoned

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="final-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.client.set_tag(self.run_id, schema.TAG_FINAL_HEARTBEAT, f"{time.time():.3f}")
            except Exception:  # a missed beat is survivable; the refit itself reports store failures
                log.debug("final heartbeat failed", exc_info=True)

    def __enter__(self) -> FinalHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _final_owner_alive(tags: Mapping[str, str]) -> bool:
    """Whether the worker that took a parent's refit is still at it: its process exists (this machine) and,
    wherever it runs, its refit heartbeat is fresh."""
    owner = tags.get(schema.TAG_FINAL_OWNER)
    if not owner or not is_alive(owner):
        return False
    beat = tags.get(schema.TAG_FINAL_HEARTBEAT)
    if beat is None:
        return True  # claimed a moment ago; the first beat follows the claim at once
    try:
        return time.time() - float(beat) < FinalHeartbeat.interval_s * FinalHeartbeat.grace
    except ValueError:
        return False


def claim_final_step(client: Any, run_id: str) -> bool:
    """Take the refit and test scoring of a parent run for this process, unless a live worker has it.

    Call it under :func:`storage_lock`: with the lock, reading the owner and writing ourselves cannot
    interleave with another worker's claim, so exactly one worker scores the test part.
    """
    run = client.get_run(run_id)
    if schema.is_done(run):
        return False
    tags = run.data.tags
    me = current_worker()
    if tags.get(schema.TAG_FINAL_OWNER) not in (None, me) and _final_owner_alive(tags):
        return False
    set_tags(client, run_id, {schema.TAG_FINAL_OWNER: me, schema.TAG_FINAL_HEARTBEAT: f"{time.time():.3f}"})
    return True


def final_step_state(client: Any, run_id: str) -> str:
    """ "done", "running" (a live worker has the refit) or "orphaned" (nobody is doing it)."""
    run = client.get_run(run_id)
    if schema.is_done(run):
        return "done"
    return "running" if _final_owner_alive(run.data.tags) else "orphaned"


FINAL_POLL_S = 5.0


def wait_for_refits(
    client: Any, experiment_id: str, keys: list[schema.RunKey], take_over: Callable[[schema.RunKey], bool]
) -> None:
    """Wait until the refits of ``keys``, taken by other workers, are done; call ``take_over(key)`` for each
    whose worker died (it returns True when it settled the key). A run that ends has then every key scored
    exactly once, whichever workers survive."""
    waiting = list(keys)
    while waiting:
        still = []
        for key in waiting:
            runs = find_parent_runs(client, experiment_id, key)
            state = final_step_state(client, runs[0].info.run_id) if runs else "orphaned"
            if state == "orphaned":
                log.warning("%s: the worker that took its refit stopped; taking it over", key.run_name)
                if take_over(key):
                    continue
            if state != "done":
                still.append(key)
        waiting = still
        if waiting:
            time.sleep(FINAL_POLL_S)
