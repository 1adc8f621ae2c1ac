"""Writing a plan's keys to XAPI, in parallel, recording what XAPI shows afterwards."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bot.db.models import ChangeRequest
from bot.domain.approvals import State
from bot.domain.changes import InterfacePlan
from bot.services.apply_results import Collector, Outcome
from bot.xen.errors import XapiUnavailable, XenError
from bot.xen.gateway import PoolGateway

if TYPE_CHECKING:
    from bot.services.apply import ApplyService

log = logging.getLogger(__name__)


def apply_interfaces(
service: ApplyService, request: ChangeRequest, interfaces: Iterable[InterfacePlan], *, resumed: bool
) -> State | None:
    items = list(interfaces)
    gateway = service.gateways.get(request.pool)
    collector = Collector(service, request, total=len(items))
    service._progress(request, 0, len(items))

    def one(item: InterfacePlan) -> None:
        if collector.may_write():
            collector.add(apply_one(gateway, item))

    try:
        gateway.map(one, items)
    finally:
        collector.close()
    if collector.lost:
        return None
    if collector.unstored or collector.left:
        # Closing now would count only what was stored and hide the rest from recover().
        log.warning("change #%s stays applying: %d results to record and %d interfaces to write are "
                    "left to recovery", request.id, collector.unstored, collector.left)
        return None
    return service._finish(request, resumed)

def apply_one(gateway: PoolGateway, item: InterfacePlan) -> Outcome:
    expected = item.expected()
    before = item.previous()
    known = {k: v for k, v in before.items() if v is not None}
    try:
        after_map = gateway.write_other_config(item.kind, item.ref, expected, known)
    except XapiUnavailable as exc:
        # Timed out or cut off: the write may have landed. Record what is there, not a guess.
        return after_uncertain_write(gateway, item, expected, before, str(exc))
    except XenError as exc:
        error = exc.short if hasattr(exc, "short") else str(exc)
        return Outcome(item.uuid, item.label, item.kind, "failed", before, None, error, item.activation)
    after = {k: after_map.get(k) for k in expected}
    status = "applied" if after == expected else "verify_failed"
    error = None if status == "applied" else f"read back {after}, expected {expected}"
    return Outcome(item.uuid, item.label, item.kind, status, before, after, error, item.activation)

def after_uncertain_write(
    gateway: PoolGateway,
    item: InterfacePlan,
    expected: dict[str, str | None],
    before: dict[str, str | None],
    error: str,
) -> Outcome:
    """Read the interface back; finish the keys still missing once; record what is really there."""
    for attempt in (1, 2):
        try:
            live = gateway.other_config(item.kind, item.ref)
        except XenError as exc:
            error = f"{error}; could not read back ({exc}), so the value is unknown"
            return Outcome(item.uuid, item.label, item.kind, "failed", before, None, error, item.activation)
        after: dict[str, str | None] = {k: live.get(k) for k in expected}
        if after == expected:
            return Outcome(item.uuid, item.label, item.kind, "applied", before, after, None, item.activation)
        missing = {k: v for k, v in expected.items() if after[k] != v}
        if attempt == 2 or any(after[k] != before.get(k) for k in missing):
            break  # someone else is changing these keys too: do not fight them
        try:
            gateway.write_other_config(item.kind, item.ref, missing, live)
        except XenError as exc:
            error = str(exc)
    return Outcome(item.uuid, item.label, item.kind, "failed", before, after, error, item.activation)
