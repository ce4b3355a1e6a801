"""Progress while a study or a refit runs: a bar on a terminal, timed log lines otherwise."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("studies.tuning")  # the logger name users filter on


class ProgressLog:
    """Timed progress lines for logs (stderr not a terminal), so a long stage is never minutes of silence.

    :meth:`say` logs a line now; :meth:`maybe` logs one if ``interval_s`` passed since the last line with news
    (or when forced). Used as a context manager, a daemon thread also says "still running" after ``interval_s``
    of silence, which covers a single trial or refit longer than that. "still running" carries no news, so it
    never holds back the next :meth:`maybe` line: a fit whose epochs each outlast the interval logs every epoch.
    """

    def __init__(self, description: str, interval_s: float = 30.0, every_trials: int = 5) -> None:
        self.description, self.interval_s, self.every_trials = description, interval_s, every_trials
        self.started = self.last = self.last_news = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def say(self, message: str, *, news: bool = True) -> None:
        log.info("%s: %s (%.0f s)", self.description, message, time.monotonic() - self.started)
        self.last = time.monotonic()
        if news:
            self.last_news = self.last

    def maybe(self, message: Callable[[], str], *, force: bool = False) -> None:
        if force or time.monotonic() - self.last_news >= self.interval_s:
            self.say(message())

    def _tick(self) -> None:
        while not self._stop.wait(max(0.01, self.interval_s - (time.monotonic() - self.last))):
            if time.monotonic() - self.last >= self.interval_s:
                self.say("still running", news=False)

    def __enter__(self) -> ProgressLog:
        self._thread = threading.Thread(target=self._tick, name="progress-log", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def progress_bar(budget: Any, done: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=budget.n_trials, initial=done, desc=description or "trials", unit="trial", leave=False)
