"""Conformance details of events (XA ocaml/xapi/xapi_event.ml, ocaml/xapi/xapi_globs.ml,
ocaml/xapi-aux/throttle.ml): event.from waits 50 ms before its first read, event.inject names
the row's table exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from bot.xen.sim import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start("demo", task_delay_ms=5, event_batch_ms=50, login_failure_delay_ms=0) as simulator:
        yield simulator


@pytest.fixture
def xapi(sim: Simulator) -> Any:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "xenroot", "1.0", "events")
    return session.xenapi


def test_event_from_waits_50_ms_before_its_first_read(xapi: Any) -> None:
    token = xapi.event.inject("pool", xapi.pool.get_all()[0])
    started = time.monotonic()
    getattr(xapi.event, "from")(["vm"], token, 0.0)  # even a zero timeout (event_from_delay: 50 ms before)
    assert time.monotonic() - started >= 0.05


def test_event_inject_class_names_are_case_sensitive(xapi: Any) -> None:
    pool = xapi.pool.get_all()[0]
    vm = xapi.VM.get_all()[0]
    assert xapi.event.inject("VM", vm)
    for cls, ref in (("Pool", pool), ("vm", vm), ("VIF", vm)):
        with pytest.raises(XenAPI.Failure) as caught:
            xapi.event.inject(cls, ref)
        assert caught.value.details == ["HANDLE_INVALID", cls, ref]
