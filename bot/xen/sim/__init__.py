"""An XAPI (XenServer / XCP-ng) pool simulator that the stock ``XenAPI`` client talks to.

No real pool is reachable from CI, so every part of xenbot that talks to XAPI is
tested against this simulator — which therefore copies XAPI's sharp edges rather
than smoothing them: integers as strings, ``MAP_DUPLICATE_KEY`` on a same-value
``add_to_other_config``, ``HOST_IS_SLAVE`` from pool members, coalescing
``event.from``, and offload settings that only take effect when dom0 re-applies
them. See ``bot/xen/sim/README.md``.

Public entry points: :class:`Simulator` (start/stop/control a pool),
:class:`Pool` (the object database, reachable as ``Simulator.pool``),
:class:`XapiError`, and the fixture helpers.
"""

from bot.xen.sim.errors import XapiError
from bot.xen.sim.faults import Faults
from bot.xen.sim.fixtures import FixtureError, build_pool, load_fixture, scale_fixture
from bot.xen.sim.pool import PIF_OFFLOAD_KEYS, VIF_OFFLOAD_KEYS, Pool
from bot.xen.sim.simulator import Simulator

__all__ = [
    "PIF_OFFLOAD_KEYS",
    "VIF_OFFLOAD_KEYS",
    "Faults",
    "FixtureError",
    "Pool",
    "Simulator",
    "XapiError",
    "build_pool",
    "load_fixture",
    "scale_fixture",
]
