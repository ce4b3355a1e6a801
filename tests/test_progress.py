"""Progress in logs (stderr not a terminal): timed lines, never long silences."""

from __future__ import annotations

import logging
import time

from studies.progress import ProgressLog


def test_progress_log_says_maybe_and_ticks(caplog) -> None:
    caplog.set_level(logging.INFO, logger="studies.tuning")
    heartbeat = ProgressLog("tune x fold 0 seed 0", interval_s=0.2, every_trials=5)
    heartbeat.say("started")
    heartbeat.maybe(lambda: "too soon")  # within the interval: nothing
    heartbeat.maybe(lambda: "forced", force=True)
    with heartbeat:
        time.sleep(1.5)  # silence: the thread must speak about every 0.2 s (at least once a second)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("tune x fold 0 seed 0: started (")
    assert not any("too soon" in m for m in messages)
    assert any(m.startswith("tune x fold 0 seed 0: forced") for m in messages)
    ticks = [m for m in messages if "still running" in m]
    assert 2 <= len(ticks) <= 8, messages
    count = len(caplog.records)
    time.sleep(0.5)
    assert len(caplog.records) == count  # the thread stopped with the context


def test_a_fit_whose_epochs_outlast_the_interval_logs_every_epoch(caplog) -> None:
    caplog.set_level(logging.INFO, logger="studies.tuning")
    heartbeat = ProgressLog("refit", interval_s=0.2)
    with heartbeat:
        for epoch in range(1, 4):
            time.sleep(0.35)  # each epoch longer than the interval: "still running" speaks in between
            heartbeat.maybe(lambda epoch=epoch: f"epoch {epoch}")
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(" (")[0] for m in messages if "epoch" in m] == [
        "refit: epoch 1",
        "refit: epoch 2",
        "refit: epoch 3",
    ]
    assert any("still running" in m for m in messages)
