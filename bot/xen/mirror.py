"""A pool's records kept in step with XAPI's event feed, so a fresh inventory costs only what changed.

A full read of a 500-VM pool is about 450 ms of XML-RPC parsing in this process, and
under one GIL that is 450 ms in which no Slack request gets acked (measured with
``tests/benchmarks/bench_ack.py``: it was the whole of the p99). XAPI's ``event.from``
answers "what changed since this token" with each changed object's *current* record
(coalesced: one ``mod`` per object however many writes, ``del`` for the gone ones), so
after one full read the gateway keeps the records and asks only for the changes: an
idle pool costs one small call, a pool-wide apply costs the records it touched.

Nor is the inventory rebuilt from the records after a batch (that alone was 290-450 ms at
5,000 VMs, per changed VIF): the mirror remembers which records a batch changed, and
``refresh`` patches the previous inventory with just those (bot/xen/patch.py).
Records are replaced, never mutated: the inventory's models keep views of them.

The token is taken *before* the full read, so a write that lands during the read is
reported again by the next poll rather than missed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.domain.model import PoolInventory
from bot.xen.patch import patch_inventory

# The classes an inventory is built from, as get_all_records names them.
INVENTORY_CLASSES = ("pool", "host", "VM", "VM_guest_metrics", "VIF", "PIF", "network")
# event.from reports classes in lower case ("vm_guest_metrics").
_BY_EVENT_NAME = {cls.lower(): cls for cls in INVENTORY_CLASSES}


def compact(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its field names and string values interned.

    XML-RPC parsing makes a new string for every field name and value of every record: at
    5,000 VMs the names alone ("uuid", "other_config", ...) were tens of megabytes, and every
    ref (a VM's, a network's) is repeated in each record that points at it. Interned, each
    distinct string is kept once. Maps and lists of strings (other_config, VIFs) are compacted
    one level down, which covers every field the inventory reads."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if type(value) is str:
            value = sys.intern(value)
        elif type(value) is dict:
            value = {sys.intern(k): sys.intern(v) if type(v) is str else v for k, v in value.items()}
        elif type(value) is list:
            value = [sys.intern(v) if type(v) is str else v for v in value]
        out[sys.intern(key)] = value
    return out


def compact_all(records: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {sys.intern(ref): compact(record) for ref, record in records.items()}


@dataclass
class RecordMirror:
    """The raw records of one pool as of ``token``, and the inventory built from them."""

    token: str  # "" when the pool gave none: the next refresh is a full read
    epoch: int  # the gateway's master epoch the token belongs to
    records: dict[str, dict[str, Mapping[str, Any]]]
    inventory: PoolInventory
    # Records changed since ``inventory`` was made: cls -> ref -> the record before (None: new).
    changes: dict[str, dict[str, Mapping[str, Any] | None]] = field(default_factory=dict)

    def absorb(self, result: Mapping[str, Any]) -> bool:
        """Apply one ``event.from`` answer to the records; True when any record changed."""
        changed = False
        for event in result.get("events", ()):
            cls = _BY_EVENT_NAME.get(str(event.get("class", "")).lower())
            if cls is None:
                continue
            ref = str(event.get("ref", ""))
            table = self.records[cls]
            before = table.get(ref)
            if event.get("operation") == "del":
                if before is None:
                    continue
                del table[ref]
            elif isinstance(event.get("snapshot"), Mapping):
                # A touch with no change (event.inject, XAPI's periodic pool heartbeat) needs no patch.
                if before == event["snapshot"]:
                    continue
                table[ref] = compact(event["snapshot"])
            else:
                continue
            self.changes.setdefault(cls, {}).setdefault(ref, before)
            changed = True
        self.token = str(result.get("token", ""))
        return changed

    def replace(self, cls: str, found: Mapping[str, Mapping[str, Any]]) -> None:
        """Take a fresh ``get_all_records`` of one class, noting what differs from the records held."""
        table, fresh = self.records[cls], compact_all(found)
        noted = self.changes.setdefault(cls, {})
        for ref in table.keys() | fresh.keys():
            if table.get(ref) != fresh.get(ref):
                noted.setdefault(ref, table.get(ref))
        self.records[cls] = fresh

    def refresh(self) -> PoolInventory:
        """The inventory with the noted changes applied (a new snapshot; the old one is untouched)."""
        changes, self.changes = self.changes, {}
        self.inventory = patch_inventory(self.inventory, self.records, changes)
        return self.inventory

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
