"""``GET /rrd_updates`` on every simulated host: VIF and PIF traffic as xcp-rrdd exports it.

What a real host does, and where it is written down (XA = xapi-project/xen-api):

* Who may ask: xapi's forwarder (XA ``ocaml/xapi/rrdd_proxy.ml`` ``get_rrd_updates_forwarder``)
  runs the request through ``Xapi_http.with_context`` (XA ``ocaml/xapi/xapi_http.ml``): a
  ``session_id`` that is not a live session is ``401 Unauthorised``; the RBAC check needs
  ``_R_READ_ONLY`` (XA ``ocaml/idl/datamodel.ml``, ``get_rrd_updates``), which every role has.
  A request without ``start`` is ``400 Bad Request``.
* What it answers: the RRDs of the VMs *resident on that host* (and the host's own with
  ``host=true``), optionally only those named by repeated ``vm_uuid=`` (XA
  ``ocaml/xcp-rrdd/bin/rrdd/rrdd_http_handler.ml`` ``get_rrd_updates_handler``); JSON when the
  query has ``json`` or the ``Accept`` header prefers ``application/json``, else rrdtool's
  ``xport`` XML.
* The format (XA ``ocaml/libs/xapi-rrd/lib/rrd_updates.ml``): ``{"meta": {"start", "step",
  "end", "rows", "columns", "legend": ["AVERAGE:vm:<uuid>:vif_0_rx", ...]}, "data": [{"t": ...,
  "values": ["123.4", ...]}]}``; rows newest first; values are *strings* (``Utils.f_to_s``:
  ``%0.15g``, ``NaN``, ``0.0``). A negative ``start`` counts back from the last update.
* The archives (XA ``ocaml/xcp-rrdd/bin/rrdd/rrdd_shared.ml`` ``timescales`` and
  ``rrdd_monitor.ml`` ``create_rras``): a 5 s step; 120 rows of 5 s, 120 of 1 min, 168 of
  1 h, 366 of 1 day; AVERAGE only unless min/max archives are turned on. ``interval`` and
  ``start`` pick the finest archive that reaches back far enough (``Rrd.find_best_rras``):
  the last hour comes from the 1-minute archive.
* The data sources (XA ``ocaml/xcp-rrdd/bin/rrdp-netdev/rrdp_netdev.ml``): per VM
  ``vif_<device>_rx`` / ``vif_<device>_tx`` in B/s, seen from the guest (dom0's counters
  swapped); per host ``pif_<netdev>_rx`` / ``_tx`` (bonds included) and ``pif_aggr_rx`` /
  ``_tx``. The ``*_rx_errors`` / ``*_tx_errors`` sources exist but are not *default*, so they
  are in no RRD until someone enables them; there is no discard source at all.

The series are synthetic and deterministic (a function of the uuid, the source and the
time), so a chart is the same whenever it is drawn. A VM whose PV driver counts broadcast
traffic as discards (Windows Vista/7/2008/2008 R2 guests with PV drivers, like the demo's
win7-kiosk) shows that pattern: a low receive baseline with a broadcast burst every five
minutes, and almost no transmit.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from bot.xen.sim.api import Dispatcher
    from bot.xen.sim.pool import Pool

PATH = "/rrd_updates"
STEP = 5  # seconds per primary data point (rrdd_monitor.ml ``step``)
TIMESCALES = ((120, 1), (120, 12), (168, 720), (366, 17280))  # (rows, steps per row): rrdd_shared.ml
CFS = ("AVERAGE", "MIN", "MAX", "LAST")  # Rrd.cf_type_of_string
BURST_PERIOD = 300  # s between the broadcast bursts a discard-counting VM receives
BURST_LENGTH = 60

Answer = tuple[int, bytes, str]


@dataclass(frozen=True)
class _Source:
    prefix: str  # "vm:<uuid>:" or "host:<uuid>:"
    name: str  # "vif_0_rx"
    seed: str
    pattern: str  # "bursts" or "steady"


def respond(dispatcher: Dispatcher, host_ref: str, target: str, accept: str | None,
            now: float | None = None) -> Answer | None:
    """The answer to one GET on ``host_ref``; None drops the connection (the host is down)."""
    if dispatcher.emergency.is_down(host_ref):
        return None
    parts = urlsplit(target)
    if parts.path != PATH:
        return 404, b"Not found\n", "text/plain"
    query = parse_qs(parts.query, keep_blank_values=True)
    session = _one(query, "session_id")
    if session is None or dispatcher.sessions.get(session) is None:
        return 401, b"Unauthorised\n", "text/html"  # xapi_http.ml: Http.Unauthorised
    start_text = _one(query, "start")
    if start_text is None:
        return 400, b"get_rrd_updates: missing the 'start' parameter\n", "text/html"
    try:
        start = int(start_text)
        interval = int(_one(query, "interval") or 0)
    except ValueError:
        return 500, b"Int64.of_string\n", "text/html"  # an exception in the handler
    cf = (_one(query, "cf") or "").upper()
    if cf and cf not in CFS:
        cf = ""  # rrdd_http_handler.ml: an unknown cf means every archive
    if cf not in ("", "AVERAGE"):
        return 500, b"No_RRA_Available\n", "text/html"  # only AVERAGE archives (use_min_max false)
    sources = _sources(dispatcher.pool, host_ref, _one(query, "host") == "true", query.get("vm_uuid"))
    table = export(sources, start, interval, time.time() if now is None else now)
    wants_json = "json" in query or _prefers_json(accept)
    if wants_json:
        return 200, json.dumps(table, separators=(",", ":")).encode(), "application/json"
    return 200, _xml(table).encode(), "text/xml"


def export(sources: list[_Source], start: int, interval: int, now: float) -> dict[str, Any]:
    """``Rrd_updates.create_multi`` for one step size: pick the archive, then rows newest first."""
    last_updated = int(now) // STEP * STEP
    if start < 0:
        start += last_updated
    pdp_interval = interval // STEP
    rows, pdp_cnt = next(
        ((r, p) for r, p in TIMESCALES if p >= pdp_interval and start > last_updated - STEP * r * p),
        TIMESCALES[-1],
    )
    step = STEP * pdp_cnt
    last_cdp = last_updated // step * step
    first_cdp = start // step * step + step
    data = []
    for i in range(rows):
        t = last_cdp - i * step
        if t < start:
            break
        data.append({"t": t, "values": [_f_to_s(value(s, t)) for s in sources]})
    legend = [f"AVERAGE:{s.prefix}{s.name}" for s in sources]
    meta = {"start": first_cdp, "step": step, "end": last_cdp, "rows": len(data), "columns": len(legend),
            "legend": legend}
    return {"meta": meta, "data": data}


def value(source: _Source, t: int) -> float:
    """Bytes per second of one source at time ``t``: the same answer at every call."""
    noise = int.from_bytes(hashlib.blake2b(f"{source.seed}:{t}".encode(), digest_size=4).digest(), "big") / 2**32
    phase = int.from_bytes(hashlib.blake2b(source.seed.encode(), digest_size=2).digest(), "big") / 2**16
    rx = source.name.endswith("_rx")
    if source.pattern == "bursts":
        if not rx:
            return round(1_500 + 1_000 * noise, 1)
        burst = t % BURST_PERIOD < BURST_LENGTH
        return round((420_000 if burst else 18_000) * (0.85 + 0.3 * noise), 1)
    scale = 2_000_000 if source.prefix.startswith("host:") else 250_000
    wave = 1.2 + math.sin(2 * math.pi * (t / 3600 + phase))
    return round(scale * wave * (0.8 + 0.4 * noise) * (1.0 if rx else 0.6), 1)


def _sources(pool: Pool, host_ref: str, with_host: bool, vm_uuids: list[str] | None) -> list[_Source]:
    sources: list[_Source] = []
    with pool.lock:
        host = pool.get(host_ref, "host")
        if with_host:
            prefix = f"host:{host.fields['uuid']}:"
            devices = sorted({str(p.fields["device"]) for p in pool.all("PIF") if p.fields["host"] == host_ref})
            for device in [*devices, "aggr"]:
                sources += [_Source(prefix, f"pif_{device}_{d}", f"{prefix}{device}:{d}", "steady")
                            for d in ("rx", "tx")]
        for vm in pool.all("VM"):
            f = vm.fields
            if f["resident_on"] != host_ref or f["power_state"] != "Running" or f.get("is_control_domain"):
                continue
            if vm_uuids is not None and f["uuid"] not in vm_uuids:
                continue
            prefix = f"vm:{f['uuid']}:"
            pattern = "bursts" if _counts_broadcast_as_discards(pool, f) else "steady"
            vifs = sorted((pool.get(v, "VIF").fields for v in f["VIFs"]), key=lambda v: int(v["device"]))
            for vif in vifs:
                if vif["currently_attached"]:
                    sources += [_Source(prefix, f"vif_{vif['device']}_{d}", f"{prefix}{vif['device']}:{d}", pattern)
                                for d in ("rx", "tx")]
    return sources


def _counts_broadcast_as_discards(pool: Pool, vm: dict[str, Any]) -> bool:
    """Windows 6.0/6.1 (Vista, 7, 2008, 2008 R2) with PV drivers: the pattern worth seeing."""
    metrics = pool.find(str(vm.get("guest_metrics", "")))
    if metrics is None or metrics.cls != "VM_guest_metrics" or not metrics.fields.get("PV_drivers_version"):
        return False
    os_version = metrics.fields.get("os_version") or {}
    return bool(os_version.get("distro") == "windows" and os_version.get("major") == "6"
                and os_version.get("minor") in ("0", "1"))


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _prefers_json(accept: str | None) -> bool:
    """``client_prefers_json``: the Accept header, when it names either type, decides."""
    if not accept:
        return False
    ranked = []
    for item in accept.split(","):
        kind, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, number = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        if kind.strip() in ("application/json", "text/xml"):
            ranked.append((q, kind.strip() == "application/json"))
    return bool(ranked) and max(ranked)[1]


def _f_to_s(number: float) -> str:
    """``Utils.f_to_s`` (XA ``ocaml/libs/xapi-rrd/lib/rrd_utils.ml``)."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0.0"
    return f"{number:.15g}"


def _xml(table: dict[str, Any]) -> str:
    """``Rrd_updates.xml_of``: the rrdtool xport document."""
    meta = table["meta"]
    legend = "".join(f"<entry>{escape(e)}</entry>" for e in meta["legend"])
    rows = "".join(
        "<row><t>{}</t>{}</row>".format(r["t"], "".join(f"<v>{v}</v>" for v in r["values"])) for r in table["data"]
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><xport><meta>'
        f"<start>{meta['start']}</start><step>{meta['step']}</step><end>{meta['end']}</end>"
        f"<rows>{meta['rows']}</rows><columns>{meta['columns']}</columns><legend>{legend}</legend>"
        f"</meta><data>{rows}</data></xport>"
    )
