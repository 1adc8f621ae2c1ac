"""Reading a host's RRDs: ``GET /rrd_updates`` and its JSON, as XAPI clients call it.

Each host keeps the RRDs of the VMs running on it and serves them over HTTP, not XML-RPC
(XA ``ocaml/xcp-rrdd/bin/rrdd/rrdd_http_handler.ml``), so a chart is one GET to the VM's
*resident* host with the pool session in the query. The JSON (XA
``ocaml/libs/xapi-rrd/lib/rrd_updates.ml`` ``json_of_t``) has ``meta.legend`` entries
``AVERAGE:vm:<uuid>:vif_0_rx`` and ``data`` rows ``{"t": ..., "values": ["1.5", ...]}``, newest
first, values as strings. VIF sources are ``vif_<device>_rx`` / ``vif_<device>_tx`` in bytes
per second from the guest's side (XA ``ocaml/xcp-rrdd/bin/rrdp-netdev/rrdp_netdev.ml``).
"""

from __future__ import annotations

import http.client
import json
import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

PATH = "/rrd_updates"
_ANSWERS = {
    401: "the host refused xenbot's session",
    403: "xenbot's XAPI role may not read performance data",
}


class RrdUnavailable(Exception):
    """The RRDs could not be read; ``reason`` is a sentence for the person."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Series:
    """One data source over time, oldest first; ``nan`` where the RRD has no value."""

    name: str
    times: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Updates:
    step: int
    start: int
    end: int
    columns: dict[str, Series] = field(default_factory=dict)  # by legend entry

    def of(self, prefix: str) -> dict[str, Series]:
        """The series of one object (``vm:<uuid>:``), by data source name, for the AVERAGE archive."""
        head = f"AVERAGE:{prefix}"
        return {legend[len(head):]: s for legend, s in self.columns.items() if legend.startswith(head)}


def parse(body: bytes) -> Updates:
    """The JSON ``/rrd_updates`` answers; anything else is :class:`RrdUnavailable`."""
    try:
        document = json.loads(body)
        meta = document["meta"]
        legend = [str(e) for e in meta["legend"]]
        rows = sorted(((int(r["t"]), [_number(v) for v in r["values"]]) for r in document["data"]),
                      key=lambda r: r[0])
    except (ValueError, KeyError, TypeError) as exc:
        raise RrdUnavailable(f"the host's answer is not rrd_updates JSON ({type(exc).__name__})") from None
    if any(len(values) != len(legend) for _t, values in rows):
        raise RrdUnavailable("the host's answer has rows of the wrong width")
    times = tuple(t for t, _values in rows)
    columns = {
        entry: Series(entry.rsplit(":", 1)[-1], times, tuple(values[i] for _t, values in rows))
        for i, entry in enumerate(legend)
    }
    return Updates(int(meta["step"]), int(meta["start"]), int(meta["end"]), columns)


def _number(text: object) -> float:
    """``Utils.f_to_s`` wrote it: ``%0.15g``, ``NaN``, ``Infinity``; a number is accepted too."""
    value = float(text)  # type: ignore[arg-type]  # str or number; anything else is a ValueError/TypeError
    return value if math.isfinite(value) else math.nan


def get(base_url: str, query: Mapping[str, str], context: ssl.SSLContext | None, timeout: float) -> bytes:
    """One GET of ``/rrd_updates`` at ``base_url`` (``http(s)://host[:port]/``)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    try:
        conn.request("GET", f"{PATH}?{urlencode(query)}", headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
    except ssl.SSLCertVerificationError as exc:
        raise RrdUnavailable(f"TLS certificate of {host} not trusted ({exc.verify_message})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise RrdUnavailable(f"host {host} did not answer ({exc or type(exc).__name__})") from None
    finally:
        conn.close()
    if response.status != 200:
        reason = _ANSWERS.get(response.status, f"the host answered HTTP {response.status}")
        raise RrdUnavailable(reason, status=response.status)
    return body


def vm_query(start: int, vm_uuid: str) -> dict[str, str]:
    """The query XAPI clients send for one VM's recent rows (host RRD left out)."""
    return {"start": str(start), "cf": "AVERAGE", "host": "false", "json": "true", "vm_uuid": vm_uuid}
