"""Keep Python's cyclic garbage collector from stalling acks.

A full collection walks every tracked object with the GIL held. Once Bolt, the Slack
SDK, SQLAlchemy, pydantic and uvicorn are imported and the app is wired, that is over
100,000 objects and 50-60 ms on this project's reference machine (2 cores); during a
pool-wide apply, ``bench_ack.py`` saw full collections of 45-90 ms in the serving
process, and every ack that arrived meanwhile waited them out: they were its p99.

Almost all of those objects live as long as the process (modules, classes, the wired
services), so walking them is wasted. ``settle`` runs one collection and then freezes
the survivors (``gc.freeze``, meant for exactly this): later collections walk only what
was allocated since. Frozen objects are still freed by reference counting when dropped.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle() -> int:
    """Collect once, then exempt everything alive from future collections. Call it when start-up
    is over and before serving. Returns how many objects were frozen (for the log)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("froze %d start-up objects out of garbage collection", frozen)
    return frozen
