"""Simulator fixtures: a fresh simulated pool per test, reached over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from bot.settings import PoolSettings
from bot.xen.gateway import PoolGateway
from bot.xen.sim import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start(fixture="demo", task_delay_ms=5, event_batch_ms=5, login_failure_delay_ms=0) as simulator:
        yield simulator


def pool_settings(sim: Simulator, name: str = "demo", **overrides: object) -> PoolSettings:
    values: dict[str, object] = {"name": name, "url": sim.url, "password": SecretStr(sim.password)}
    values.update(overrides)
    return PoolSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def gateway(sim: Simulator) -> Iterator[PoolGateway]:
    gw = PoolGateway(pool_settings(sim), retry_delays=(0.01, 0.02, 0.05))
    yield gw
    gw.close()
