"""Reading RRDs through the gateway (bot/xen/rrd.py) from the simulator's hosts over HTTP."""

from __future__ import annotations

import time

import pytest

from bot.services.inspection import InspectionService
from bot.services.traffic import TrafficCharts
from bot.xen import rrd
from bot.xen.gateway import Gateways
from bot.xen.rrd import RrdUnavailable
from tests.conftest_xen import pool_settings

PNG = b"\x89PNG\r\n\x1a\n"


def kiosk(sim):
    fields = sim.pool.fields(sim.pool.vm("win7-kiosk"))
    host = sim.pool.fields(fields["resident_on"])
    return str(fields["uuid"]), str(host["address"])


def test_gateway_reads_a_vms_vif_series_from_its_host(sim, gateway):
    uuid, address = kiosk(sim)
    updates = rrd.parse(gateway.rrd_updates(address, rrd.vm_query(int(time.time()) - 3600, uuid)))
    series = updates.of(f"vm:{uuid}:")
    assert set(series) == {"vif_0_rx", "vif_0_tx"}
    assert updates.step == 60 and 59 <= len(series["vif_0_rx"].times) <= 61
    assert list(series["vif_0_rx"].times) == sorted(series["vif_0_rx"].times)  # oldest first once parsed


def test_a_refused_session_is_replaced_once(sim, gateway):
    uuid, address = kiosk(sim)
    gateway.check()
    sim.expire_sessions()
    body = gateway.rrd_updates(address, rrd.vm_query(-600, uuid))
    assert rrd.parse(body).of(f"vm:{uuid}:")


def test_401_and_unreachable_hosts_are_rrd_unavailable(sim):
    uuid, address = kiosk(sim)
    port = sim.url.rsplit(":", 1)[1].strip("/")
    with pytest.raises(RrdUnavailable) as refused:
        rrd.get(f"http://{address}:{port}/", {**rrd.vm_query(-600, uuid), "session_id": "OpaqueRef:x"}, None, 5)
    assert refused.value.status == 401 and "refused xenbot's session" in refused.value.reason
    with pytest.raises(RrdUnavailable, match="did not answer"):
        rrd.get(f"http://127.0.0.9:{port}/", rrd.vm_query(-600, uuid), None, 5)


def test_parse_rejects_what_is_not_rrd_updates():
    for body in (b"<html>", b"{}", b'{"meta": {"legend": ["a"], "step": 5, "start": 0, "end": 0}, "data": '
                                      b'[{"t": 1, "values": ["1", "2"]}]}'):
        with pytest.raises(RrdUnavailable):
            rrd.parse(body)
    ok = rrd.parse(b'{"meta": {"legend": ["AVERAGE:vm:u:vif_0_rx"], "step": 5, "start": 0, "end": 5}, '
                   b'"data": [{"t": 5, "values": ["NaN"]}, {"t": 0, "values": ["1.5"]}]}')
    series = ok.of("vm:u:")["vif_0_rx"]
    assert series.times == (0, 5) and series.values[0] == 1.5 and series.values[1] != series.values[1]


def test_traffic_chart_is_a_png_and_a_halted_vm_has_none(sim):
    gateways = Gateways([pool_settings(sim)])
    try:
        charts = TrafficCharts(InspectionService(gateways))
        inventory, vm = charts.inspection.find_vm("win7-kiosk")
        chart = charts.chart(inventory, vm)
        assert chart.png.startswith(PNG) and chart.filename == "traffic-win7-kiosk.png"
        inventory, halted = charts.inspection.find_vm("ubuntu-build02")
        with pytest.raises(RrdUnavailable, match="not running"):
            charts.chart(inventory, halted)
    finally:
        gateways.close()
