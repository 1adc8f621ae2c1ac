"""What every alert parser shares: the parsed :class:`Alert`, its status and its identity.

Pure: no Slack, XAPI or database imports; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Source = Literal["alertmanager", "grafana", "zabbix", "librenms", "icinga", "nagios", "prtg", "datadog", "generic"]
Status = Literal["firing", "resolved"]
Direction = Literal["rx", "tx"]
SenderKind = Literal["person", "integration", "app", "unknown"]

SOURCES: Final[tuple[Source, ...]] = (
    "alertmanager",
    "grafana",
    "zabbix",
    "librenms",
    "icinga",
    "nagios",
    "prtg",
    "datadog",
    "generic",
)

# Bounds that keep a pathological message cheap: Slack itself caps a message far below these.
MAX_PART_CHARS: Final = 20_000
MAX_TEXT_CHARS: Final = 60_000
MAX_ITEMS: Final = 100  # attachments, blocks, fields, elements per level
MAX_DEPTH: Final = 10  # nesting of rich_text elements

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class Alert:
    """A discard alert as the monitoring tool stated it; nothing here is looked up or guessed.

    ``target`` is the VM name, host name or IP exactly as the tool gave it
    (a Prometheus ``instance`` loses its ``:port``); resolving it to a VM is
    the service's job. ``rx``/``tx`` are the figures tied to a direction;
    ``value`` is a figure given without one (Zabbix ``Opdata: 1520 packets``).
    ``unit`` is ``"packets"`` for counts, ``"pkt/s"`` for rates, ``"%"`` for
    ratios, or ``None`` when the tool did not say.

    ``update`` marks a notification about the alert that is not a new firing
    (a Zabbix "Updated problem", an Icinga2 acknowledgement or downtime): it
    never gets a diagnosis. ``members`` holds one alert per alerted target when
    a grouped notification (Alertmanager's ``[FIRING:2]``) lists them; ``count``
    is how many alerts the tool said the group holds.
    """

    source: Source
    status: Status
    target: str
    title: str
    identity: str
    raw_text: str
    target_ip: str | None = None
    interface: str | None = None
    directions: frozenset[Direction] = frozenset()
    rx: float | None = None
    tx: float | None = None
    value: float | None = None
    unit: str | None = None
    name: str = ""
    severity: str | None = None
    update: bool = False
    members: tuple[Alert, ...] = ()
    count: int = 1

    @property
    def firing(self) -> bool:
        return self.status == "firing"


def make_identity(source: str, target: str, interface: str | None, name: str) -> str:
    """The dedup key: what the alert is about, never its state or figures (they change between posts)."""
    return "|".join(_norm(p) for p in (source, target, interface or "", name))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# Slack turns the named attachment colours into hex, and delivers every colour without its "#".
_NAMED_COLORS: Final = {"good": "2eb886", "warning": "daa038", "danger": "a30200"}
GOOD_COLORS: Final = frozenset({"2eb886", "009900", "00ff00", "36a64f", "2fff00", "00cc00", "green"})


def normal_color(color: str | None) -> str | None:
    """``#2EB886``, ``2eb886`` and ``good`` all become ``2eb886``; ``None`` stays ``None``."""
    if not color or not color.strip():
        return None
    value = color.strip().lower().lstrip("#")
    return _NAMED_COLORS.get(value, value)


def is_good_color(color: str | None) -> bool:
    """The green tools use for a recovery (Slack's ``good``, Zabbix's ``#009900``, Grafana's ``#36a64f``…)."""
    return normal_color(color) in GOOD_COLORS
