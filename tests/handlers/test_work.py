"""The work pool on shutdown: what was acked is finished for a while, then the rest is dropped and counted."""

from __future__ import annotations

import threading
import time

from handlers.work import WorkPool


def test_shutdown_finishes_acked_work_within_the_grace_period():
    pool = WorkPool(workers=2)
    done: list[int] = []
    for n in range(4):
        pool.submit(lambda n=n: (time.sleep(0.1), done.append(n)))
    assert pool.shutdown(grace=5) == 0
    assert sorted(done) == [0, 1, 2, 3]


def test_shutdown_drops_what_cannot_finish_in_time_and_says_how_much():
    pool = WorkPool(workers=1)
    release = threading.Event()
    started = threading.Event()
    pool.submit(lambda: (started.set(), release.wait(5)))
    queued = [pool.submit(lambda: None) for _ in range(3)]
    started.wait(5)
    began = time.monotonic()
    assert pool.shutdown(grace=0.3) == 4  # the stuck one and the three behind it
    assert time.monotonic() - began < 2
    assert all(f.cancelled() for f in queued)
    release.set()


def test_commands_do_not_wait_behind_alerts():
    pool = WorkPool(workers=1, alert_workers=1, alert_queue_per_channel=100)
    release = threading.Event()
    for _ in range(20):  # slow alerts, as when Slack takes a second per post
        pool.submit_alert("C0ALERTS", release.wait, 5, item=None, summarise=lambda c, i: None)
    started = time.monotonic()
    assert pool.submit(lambda: "answer").result(timeout=5) == "answer"
    assert time.monotonic() - started < 1
    release.set()
    assert pool.shutdown(grace=5) == 0


def test_alerts_past_the_channels_bound_are_summarised_once_per_backlog():
    pool = WorkPool(workers=1, alert_workers=1, alert_queue_per_channel=3)
    release = threading.Event()
    handled: list[int] = []
    summaries: list[tuple[str, list[int]]] = []
    for n in range(10):
        pool.submit_alert("C0A", lambda n=n: (release.wait(5), handled.append(n)), item=n,
                          summarise=lambda channel, items: summaries.append((channel, items)))
    pool.submit_alert("C0B", lambda: handled.append(100), item=100, summarise=lambda c, i: summaries.append((c, i)))
    release.set()
    assert pool.shutdown(grace=5) == 0
    assert sorted(handled) == [0, 1, 2, 100]  # another channel has its own bound
    assert summaries == [("C0A", [3, 4, 5, 6, 7, 8, 9])]


def test_a_command_waiting_for_a_worker_is_told_once_and_one_taken_in_time_is_not():
    pool = WorkPool(workers=1, delay_notice_seconds=0.2)
    release = threading.Event()
    notices: list[tuple[str, float]] = []
    first = pool.submit(release.wait, 5, on_delay=lambda waited: notices.append(("first", waited)))
    second = pool.submit(lambda: None, on_delay=lambda waited: notices.append(("second", waited)))
    deadline = time.monotonic() + 5
    while not notices:
        assert time.monotonic() < deadline, "no delay notice"
        time.sleep(0.01)
    release.set()
    first.result(5)
    second.result(5)
    assert [(who, waited >= 0.2) for who, waited in notices] == [("second", True)]
    assert pool.shutdown(grace=5) == 0
