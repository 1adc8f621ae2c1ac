"""A pool's records kept in step with XAPI's event feed, so a fresh inventory costs only what changed.

A full read of a 500-VM pool is about 450 ms of XML-RPC parsing in this process, and
under one GIL that is 450 ms in which no Slack request gets acked (measured with
``tests/benchmarks/bench_ack.py``: it was the whole of the p99). XAPI's ``event.from``
answers "what changed since this token" with each changed object's *current* record
(coalesced: one ``mod`` per object however many writes, ``del`` for the gone ones), so
after one full read the gateway keeps the records and asks only for the changes: an
idle pool costs one small call, a pool-wide apply costs the records it touched.

The token is taken *before* the full read, so a write that lands during the read is
reported again by the next poll rather than missed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain.model import PoolInventory

# The classes an inventory is built from, as get_all_records names them.
INVENTORY_CLASSES = ("pool", "host", "VM", "VM_guest_metrics", "VIF", "PIF", "network")
# event.from reports classes in lower case ("vm_guest_metrics").
_BY_EVENT_NAME = {cls.lower(): cls for cls in INVENTORY_CLASSES}


@dataclass
class RecordMirror:
    """The raw records of one pool as of ``token``, and the inventory built from them."""

    token: str  # "" when the pool gave none: the next refresh is a full read
    epoch: int  # the gateway's master epoch the token belongs to
    records: dict[str, dict[str, Mapping[str, Any]]]
    inventory: PoolInventory

    def absorb(self, result: Mapping[str, Any]) -> bool:
        """Apply one ``event.from`` answer; True when any record changed."""
        changed = False
        for event in result.get("events", ()):
            cls = _BY_EVENT_NAME.get(str(event.get("class", "")).lower())
            if cls is None:
                continue
            ref = str(event.get("ref", ""))
            if event.get("operation") == "del":
                changed |= self.records[cls].pop(ref, None) is not None
            elif isinstance(event.get("snapshot"), Mapping):
                # A touch with no change (event.inject, XAPI's periodic pool heartbeat) needs no rebuild.
                changed |= self.records[cls].get(ref) != event["snapshot"]
                self.records[cls][ref] = event["snapshot"]
        self.token = str(result.get("token", ""))
        return changed

    def stale_classes(self, result: Mapping[str, Any]) -> list[str]:
        """Classes whose live count (``valid_ref_counts``) differs from the records held.

        XAPI's ``event.from`` never says it lost events: each table remembers only its last
        256 to 512 deletions, in memory (a xapi restart forgets them all), and older ``del`` events
        are silently skipped (XA ``ocaml/database/db_cache_types.ml``). XAPI's own advice is to
        compare ``valid_ref_counts`` with what the client holds (``ocaml/xapi/message_forwarding.ml``);
        a class that disagrees is read again, or its deleted VMs and VIFs would linger forever."""
        counts = result.get("valid_ref_counts")
        if not isinstance(counts, Mapping):
            return []
        stale = []
        for cls in INVENTORY_CLASSES:
            live = counts.get(cls.lower())
            if live is not None and int(live) != len(self.records[cls]):
                stale.append(cls)
        return stale
