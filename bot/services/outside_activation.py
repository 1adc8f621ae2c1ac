"""Activations done by someone else, noticed in the event feed: the pending state is cleared.

An applied offload key waits for its device to be rebuilt (``pending_activation`` rows). xenbot
is not the only one who rebuilds devices:

* a **live migration** (``VM.pool_migrate``, also XenCenter's and XO's "migrate", or a host
  evacuation) builds every attached VIF anew on the destination, and ``vif-real`` applies its
  keys (XA ``ocaml/xenopsd/scripts/vif-real``). Seen as a VM event whose ``resident_on`` changes
  while it stays Running;
* a **toolstack restart** (``xe-toolstack-restart``, ``host.restart_agent``) plugs the host's PIFs
  again at xapi's start of day (XA ``ocaml/xapi/xapi_pif.ml`` ``start_of_day_best_effort_bring_up``),
  applying PIF keys without a reboot. Seen as a host event whose ``other_config:agent_start_time``
  (written at each xapi start, ``ocaml/xapi/dbsync_slave.ml``) is later than what xenbot knew —
  or, for a host not seen yet, later than when watching began.

Each one deletes the matching rows and writes an audit entry saying what activated them. The
watcher feeds events in (``see``) and calls ``flush`` once per burst, outside any long-poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from bot.db import audit
from bot.db.models import PendingActivation
from bot.domain.model import PoolInventory

log = logging.getLogger(__name__)


class OutsideActivations:
    """Per pool: what xenbot last knew of VM placement and toolstack starts, and the rows to clear."""

    def __init__(self, sessions: sessionmaker[Session], pool: str, wall: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self.pool = pool
        self.wall = wall
        self._since = wall()
        self._resident: dict[str, str] = {}  # running VM ref -> host ref
        self._agent_start: dict[str, float] = {}  # host ref -> agent_start_time
        self._seen: list[tuple[str, list[str], str]] = []  # (kind, VIF or PIF refs, what happened)

    def prime(self, inventory: PoolInventory) -> None:
        """After a (re)scan: where each running VM is now; host restarts count from now on."""
        self._since = self.wall()
        self._resident = {ref: vm.resident_on for ref, vm in inventory.vms.items() if vm.running and vm.resident_on}

    def see(self, event: Mapping[str, Any]) -> None:
        """One event of ``event.from`` (class ``vm`` or ``host``, operation ``mod``)."""
        if event.get("operation") != "mod" or not isinstance(event.get("snapshot"), Mapping):
            return
        snap: Mapping[str, Any] = event["snapshot"]
        cls, ref = str(event.get("class", "")).lower(), str(event.get("ref", ""))
        if cls == "vm" and not snap.get("is_control_domain"):
            running = snap.get("power_state") == "Running"
            host, before = str(snap.get("resident_on", "")), self._resident.get(ref)
            if running and before and host and host != before:
                self._seen.append(("vif", [str(r) for r in snap.get("VIFs") or []],
                                   f"live migration of VM {snap.get('name_label', ref)} (seen in XAPI events)"))
            if running and host:
                self._resident[ref] = host
            else:
                self._resident.pop(ref, None)
        elif cls == "host":
            try:
                started = float(str(dict(snap.get("other_config") or {}).get("agent_start_time", "")))
            except ValueError:
                return
            # xapi writes string_of_float (Unix.time ()): whole seconds, so a start in the second
            # watching began counts (a restart xenbot may not have seen is cleared, not missed).
            known = self._agent_start.get(ref, float(int(self._since)) - 0.5)
            self._agent_start[ref] = started
            if started > known:
                self._seen.append(("pif", [str(r) for r in snap.get("PIFs") or []],
                                   f"toolstack restart on host {snap.get('name_label', ref)} (seen in XAPI events)"))

    def flush(self, inventory: Callable[[], PoolInventory]) -> int:
        """Clear the pending rows the events showed activated; returns how many. ``inventory`` is
        read only when there is something to clear (interface refs to uuids)."""
        seen, self._seen = self._seen, []
        if not seen:
            return 0
        current = inventory()
        cleared = 0
        for kind, refs, what in seen:
            known: Mapping[str, Any] = current.vifs if kind == "vif" else current.pifs
            uuids = [known[r].uuid for r in refs if r in known]
            with self.sessions.begin() as session:
                where = (PendingActivation.pool == self.pool, PendingActivation.kind == kind,
                         PendingActivation.interface_uuid.in_(uuids))
                rows = session.scalars(select(PendingActivation).where(*where)).all()
                if not rows:
                    continue
                session.execute(delete(PendingActivation).where(*where))
                audit.record(session, actor="system", action="activation.by_others", target=what,
                             details={"activated_by": what, "at": datetime.now(UTC).isoformat(),
                                      "interfaces": [{"interface": r.interface_uuid, "label": r.label,
                                                      "change": r.request_id, "was": r.method} for r in rows]})
                cleared += len(rows)
                log.info("pool %s: %d pending activation(s) done by %s", self.pool, len(rows), what)
        return cleared
