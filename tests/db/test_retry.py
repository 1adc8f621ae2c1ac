"""Waiting out a database outage: what is retried, for how long, and who is told."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.db.retry import is_transient, patiently


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def down(times: int):
    calls = {"n": 0}

    def run() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise OperationalError("INSERT ...", {}, ConnectionResetError("server closed the connection"))
        return "stored"

    return run, calls


def test_outage_shorter_than_patience_is_waited_out_and_reported_once():
    clock, told = Clock(), []
    run, calls = down(5)
    assert patiently(run, patience=60, on_outage=told.append, sleep=clock.sleep, clock=clock) == "stored"
    assert calls["n"] == 6 and len(told) == 1
    assert clock.pauses == [0.2, 0.4, 0.8, 1.6, 3.2]  # growing, capped at 5 s


def test_outage_longer_than_patience_raises_the_last_error():
    clock = Clock()
    run, calls = down(1000)
    with pytest.raises(OperationalError):
        patiently(run, patience=30, sleep=clock.sleep, clock=clock)
    assert clock.now <= 30 and calls["n"] > 5


def test_errors_that_a_retry_cannot_fix_are_raised_at_once():
    clock = Clock()
    calls = {"n": 0}

    def run() -> None:
        calls["n"] += 1
        raise IntegrityError("INSERT ...", {}, ValueError("duplicate key"))

    with pytest.raises(IntegrityError):
        patiently(run, patience=60, sleep=clock.sleep, clock=clock)
    assert calls["n"] == 1 and clock.pauses == []
    assert not is_transient(ValueError("x"))
