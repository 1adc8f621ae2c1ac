"""Conformance of the simulator's ``GET /rrd_updates``, called over plain HTTP as XAPI clients do.

Sources (xapi-project/xen-api): ocaml/libs/xapi-rrd/lib/rrd_updates.ml (JSON/XML format),
ocaml/xcp-rrdd/bin/rrdd/rrdd_http_handler.ml (query parameters, which RRDs),
ocaml/xcp-rrdd/bin/rrdd/rrdd_shared.ml (archives), ocaml/xcp-rrdd/bin/rrdp-netdev/rrdp_netdev.ml
(data source names), ocaml/xapi/rrdd_proxy.ml and ocaml/xapi/xapi_http.ml (session, 400/401).
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import XenAPI

from bot.xen.sim import Simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator.start("demo", task_delay_ms=5, event_batch_ms=5) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def session(sim: Simulator) -> str:
    client = XenAPI.Session(sim.url)
    client.xenapi.login_with_password("root", sim.password, "1.0", "rrd-conformance")
    return str(client._session)


def host_url(sim: Simulator, host: str) -> tuple[str, int]:
    """Where ``host`` listens: its ``host.address``, on the pool's port (as XAPI clients find it)."""
    address = str(sim.pool.fields(sim.pool.host(host))["address"])
    port = urlsplit(sim.url).port or 80
    if ":" in address:
        ip, _, given = address.rpartition(":")
        return ip, int(given)
    return address, port


def get(sim: Simulator, host: str, query: dict[str, Any], accept: str | None = None) -> tuple[int, bytes, str]:
    ip, port = host_url(sim, host)
    conn = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        headers = {"Accept": accept} if accept else {}
        conn.request("GET", "/rrd_updates?" + urlencode(query, doseq=True), headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


def vm_uuid(sim: Simulator, name: str) -> str:
    return str(sim.pool.fields(sim.pool.vm(name))["uuid"])


def test_json_format_last_hour_from_the_one_minute_archive(sim, session):
    """rrd_updates.ml json_of_t; rrdd_shared.ml timescales: the last hour comes in 60 s rows."""
    start = int(time.time()) - 3600
    status, body, content_type = get(sim, "xcp-host2", {"start": start, "cf": "AVERAGE", "host": "true",
                                                        "json": "true", "session_id": session})
    assert status == 200 and content_type == "application/json"
    document = json.loads(body)
    assert set(document) == {"meta", "data"}
    meta = document["meta"]
    assert set(meta) == {"start", "step", "end", "rows", "columns", "legend"}
    assert meta["step"] == 60 and meta["end"] % 60 == 0 and meta["start"] % 60 == 0
    assert meta["rows"] == len(document["data"]) in (60, 61)
    assert meta["columns"] == len(meta["legend"])
    times = [row["t"] for row in document["data"]]
    assert times == sorted(times, reverse=True) and times[0] == meta["end"]  # newest first
    assert all(t >= start for t in times) and all(a - b == 60 for a, b in itertools.pairwise(times))
    for row in document["data"]:
        assert set(row) == {"t", "values"} and len(row["values"]) == meta["columns"]
        assert all(isinstance(v, str) for v in row["values"])  # Utils.f_to_s: strings, not numbers
        for v in row["values"]:
            float(v)


def test_legend_names_vif_and_pif_sources_of_vms_resident_on_that_host(sim, session):
    """rrdp_netdev.ml: vif_<device>_rx/_tx per VM, pif_<dev>_rx/_tx and pif_aggr per host; the
    *_errors sources are not default, so absent; rrdd_http_handler.ml: only this host's VMs."""
    status, body, _ = get(sim, "xcp-host2", {"start": -600, "host": "true", "json": "", "session_id": session})
    assert status == 200
    legend = json.loads(body)["meta"]["legend"]
    host_uuid = str(sim.pool.fields(sim.pool.host("xcp-host2"))["uuid"])
    kiosk = vm_uuid(sim, "win7-kiosk")
    assert f"AVERAGE:vm:{kiosk}:vif_0_rx" in legend and f"AVERAGE:vm:{kiosk}:vif_0_tx" in legend
    assert f"AVERAGE:host:{host_uuid}:pif_aggr_rx" in legend and f"AVERAGE:host:{host_uuid}:pif_eth0_tx" in legend
    assert not any("errors" in e or "discard" in e for e in legend)
    pattern = re.compile(r"^AVERAGE:(vm|host):[0-9a-f-]{36}:(vif_\d+|pif_[a-z0-9.]+)_(rx|tx)$")
    assert all(pattern.match(e) for e in legend), legend
    assert vm_uuid(sim, "win2008r2-sql01") not in body.decode()  # resident on another host
    assert vm_uuid(sim, "ubuntu-build02") not in body.decode()  # halted: no live RRD anywhere
    # Without host=true the host's own RRD is left out; vm_uuid= narrows to one VM.
    _, body, _ = get(sim, "xcp-host2", {"start": -600, "json": "", "vm_uuid": kiosk, "session_id": session})
    legend = json.loads(body)["meta"]["legend"]
    assert legend == [f"AVERAGE:vm:{kiosk}:vif_0_rx", f"AVERAGE:vm:{kiosk}:vif_0_tx"]


def test_recent_start_uses_the_five_second_archive_and_negative_start_is_relative(sim, session):
    _, body, _ = get(sim, "xcp-host1", {"start": -300, "json": "true", "session_id": session})
    meta = json.loads(body)["meta"]
    assert meta["step"] == 5 and 59 <= meta["rows"] <= 61


def test_xml_xport_without_json(sim, session):
    """rrd_updates.ml xml_of: <xport><meta>…<legend><entry>…</entry></legend></meta><data><row><t>…"""
    status, body, content_type = get(sim, "xcp-host2", {"start": -600, "session_id": session})
    assert status == 200 and content_type == "text/xml"
    root = ET.fromstring(body)
    assert root.tag == "xport"
    entries = [e.text for e in root.findall("./meta/legend/entry")]
    rows = root.findall("./data/row")
    assert entries and rows and int(root.findtext("./meta/rows") or 0) == len(rows)
    assert len(rows[0].findall("v")) == len(entries)
    # The Accept header decides as well (rrdd_http_handler.ml client_prefers_json).
    _, body, content_type = get(sim, "xcp-host2", {"start": -600, "session_id": session}, accept="application/json")
    assert content_type == "application/json" and json.loads(body)["meta"]["legend"] == entries


def test_session_is_checked_like_xapi(sim, session):
    """xapi_http.ml: an unknown session is 401; rrdd_proxy.ml: no start is 400."""
    assert get(sim, "xcp-host2", {"start": -600, "json": "", "session_id": "OpaqueRef:nope"})[0] == 401
    assert get(sim, "xcp-host2", {"start": -600, "json": ""})[0] == 401
    assert get(sim, "xcp-host2", {"json": "", "session_id": session})[0] == 400


def test_discard_counting_vm_shows_broadcast_bursts_and_series_are_deterministic(sim, session):
    """win7-kiosk (Windows 7, PV drivers): a low rx baseline with a burst every five minutes."""
    kiosk = vm_uuid(sim, "win7-kiosk")
    query = {"start": int(time.time()) - 3600, "json": "", "vm_uuid": kiosk, "session_id": session}
    first = json.loads(get(sim, "xcp-host2", query)[1])
    rx = [float(row["values"][0]) for row in first["data"]]
    tx = [float(row["values"][1]) for row in first["data"]]
    bursts = [v for v in rx if v > 200_000]
    assert 10 <= len(bursts) <= 14  # one in five rows of 60 s
    assert max(v for v in rx if v <= 200_000) < 30_000 and max(tx) < 5_000
    again = json.loads(get(sim, "xcp-host2", query)[1])
    same = {row["t"]: row["values"] for row in again["data"]}
    assert all(same[row["t"]] == row["values"] for row in first["data"] if row["t"] in same)


def test_a_host_that_is_down_answers_nothing():
    """Like its XML-RPC calls (bot/xen/sim/emergency.py): the connection closes unanswered."""
    with Simulator.start("demo", task_delay_ms=5) as down:
        client = XenAPI.Session(down.url)
        client.xenapi.login_with_password("root", down.password, "1.0", "rrd-conformance")
        session = str(client._session)
        assert get(down, "xcp-host1", {"start": -600, "json": "", "session_id": session})[0] == 200
        down.stop_master()
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            get(down, "xcp-host1", {"start": -600, "json": "", "session_id": session})
