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
