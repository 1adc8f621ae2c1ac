"""A VM's VIF traffic over the last hour, as a chart: for the alert thread and the VIF button.

The data is the RRD of the host the VM runs on (``GET /rrd_updates``, bot/xen/rrd.py). When
it cannot be read (the VM is not running, the host does not answer, the session or role
is refused), the reason is said and everything else goes on without the chart: a chart
helps judge an alert, it is never what the alert's answer waits for.

Drawing runs in the calling thread: a worker of the work pool for a button press or an
alert, never the event loop that acknowledges Slack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from bot.domain import names
from bot.domain.model import PoolInventory, Vif, Vm
from bot.render import charts
from bot.render.blocks import Reply
from bot.render.charts import Chart, Line
from bot.services.inspection import InspectionService
from bot.services.messenger import Messenger
from bot.xen import rrd
from bot.xen.errors import XenError
from bot.xen.rrd import RrdUnavailable

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600


class UploadFailed(Exception):
    """The transport refused the file; the message is its reason (Slack's error code)."""


@runtime_checkable
class ChartUploader(Protocol):
    """A messenger that can upload files (Slack: ``files_upload_v2``; the console: a file on disk)."""

    def upload(self, channel: str, chart: Chart, thread_ts: str | None = None, *,
               private_to: str | None = None) -> str:
        """Upload the chart; returns where it went, as a phrase for the person; :class:`UploadFailed`."""


class TrafficCharts:
    def __init__(self, inspection: InspectionService, clock: Callable[[], float] = time.time) -> None:
        self.inspection = inspection
        self.clock = clock

    def chart(self, inventory: PoolInventory, vm: Vm) -> Chart:
        """The VM's VIF rx/tx over the last hour; :class:`RrdUnavailable` says why there is none."""
        host = inventory.hosts.get(vm.resident_on) if vm.resident_on else None
        if host is None:
            raise RrdUnavailable(f"{vm.name} is not running, so no host keeps its traffic")
        start = int(self.clock()) - WINDOW_SECONDS
        try:
            body = self.inspection.gateway(inventory.pool).rrd_updates(host.address, rrd.vm_query(start, vm.uuid))
        except RrdUnavailable as exc:
            raise RrdUnavailable(f"{host.name}: {exc.reason}", status=exc.status) from None
        except XenError as exc:  # no session could be had (pool down, password refused)
            raise RrdUnavailable(f"pool {inventory.pool}: {exc}") from None
        sources = rrd.parse(body).of(f"vm:{vm.uuid}:")
        lines = []
        for vif in inventory.vifs_of(vm):
            for direction in ("rx", "tx"):
                series = sources.get(f"vif_{vif.device}_{direction}")
                if series is not None:
                    lines.append(Line(f"{vif.device} {direction}", series.times, series.values,
                                      dashed=direction == "tx"))
        if not lines:
            raise RrdUnavailable(f"{host.name} has no traffic data for the VIFs of {vm.name} yet")
        return charts.traffic_chart(vm.name, inventory.pool, lines, WINDOW_SECONDS // 60)

    def for_button(self, messenger: Messenger, pool: str, vif_uuid: str, channel: str, user: str) -> Reply:
        """The button on ``/xen vif``: the chart of the VIF's VM goes to the person privately (DM),
        like any file of a private answer; the answer says where it went or why there is none."""
        inventory, vm = self._vm_of(pool, vif_uuid)
        if not isinstance(messenger, ChartUploader):
            return charts.no_uploads(vm.name)
        try:
            chart = self.chart(inventory, vm)
        except RrdUnavailable as exc:
            return charts.chart_unavailable(vm.name, exc.reason, in_alert=False)
        try:
            where = messenger.upload(channel, chart, private_to=user)
        except UploadFailed as exc:
            return charts.chart_unavailable(vm.name, f"the upload failed ({exc})", in_alert=False)
        return charts.chart_sent(vm.name, where)

    def _vm_of(self, pool: str, vif_uuid: str) -> tuple[PoolInventory, Vm]:
        inventories, _errors = self.inspection.inventories(pool)
        for inventory in inventories:
            vif = inventory.interface(vif_uuid)
            if isinstance(vif, Vif) and vif.vm_ref in inventory.vms:
                return inventory, inventory.vms[vif.vm_ref]
        raise names.NotFound("VIF", vif_uuid)


def post_to_alert_thread(
    charts_of: TrafficCharts, messenger: Messenger, channel: str, thread_ts: str, inventory: PoolInventory, vm: Vm
) -> str:
    """After the diagnosis: the chart in its thread, or one line saying why there is none.

    Never raises: the alert was answered already. Returns what happened, for logs and tests."""
    if not isinstance(messenger, ChartUploader):
        return "no uploads"
    try:
        chart = charts_of.chart(inventory, vm)
    except RrdUnavailable as exc:
        log.info("alert on %s: no traffic chart: %s", vm.name, exc.reason)
        try:
            messenger.post(channel, charts.chart_unavailable(vm.name, exc.reason, in_alert=True), thread_ts=thread_ts)
        except Exception as failure:  # noqa: BLE001 - the alert is answered; this line is a courtesy
            log.warning("alert on %s: could not say why there is no chart: %s", vm.name, failure)
        return "unavailable"
    except Exception:  # a drawing bug must not fail the alert
        log.exception("alert on %s: traffic chart failed", vm.name)
        return "failed"
    try:
        messenger.upload(channel, chart, thread_ts)
    except Exception as failure:  # noqa: BLE001 - Slack refused or did not answer; the diagnosis stands
        log.warning("alert on %s: chart upload failed: %s", vm.name, failure)
        return "failed"
    return "uploaded"
