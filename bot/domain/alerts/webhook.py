"""Alertmanager's and Grafana's JSON webhooks → the same :class:`Alert` a Slack message would give.

Both send one notification per alert group: ``status``, ``groupKey``,
``groupLabels``, ``commonLabels`` and ``alerts``, each alert with its own
``status``, ``labels``, ``annotations`` and ``fingerprint`` (Alertmanager's
``notify/webhook`` message, version 4; Grafana's webhook contact point adds
``values`` and ``valueString``). Labels name the target exactly, so nothing is
guessed from text; the identity is built as the Slack parsers build it, so an
alert is the same alert whichever way it arrives.

Pure: no Slack, XAPI or database imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from bot.domain.alerts.common import Alert, Status, make_identity
from bot.domain.alerts.vocab import _figures, _target, directions_in, mentions_discards

WebhookSource = Literal["alertmanager", "grafana"]

MAX_ALERTS: Final = 500  # Alertmanager's max_alerts is unlimited by default; a group this large is not a NIC problem
_TARGET_KEYS: Final = ("vm", "vm_name", "xen_vm", "domain", "nodename", "hostname", "host", "instance", "target")
_IFACE_KEYS: Final = ("device", "interface", "ifname", "ifdescr", "ifalias", "nic", "iface")


class WebhookError(ValueError):
    """The body is not a notification we can read; the sender gets 400 with this text."""


@dataclass(frozen=True, slots=True)
class WebhookGroup:
    source: WebhookSource
    group_key: str
    status: Status
    title: str
    alerts: tuple[Alert, ...]  # discard alerts with a target, in the order sent
    ignored: int  # alerts that are not about discards, or name no target


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k)[:200]: str(v)[:1000] for k, v in list(value.items())[:100] if isinstance(v, str | int | float)}


def _status(value: object) -> Status:
    return "resolved" if value == "resolved" else "firing"


def read_webhook(source: WebhookSource, payload: object) -> WebhookGroup:
    """The discard alerts of one webhook notification; raises :class:`WebhookError` for a malformed body."""
    if not isinstance(payload, Mapping):
        raise WebhookError("expected a JSON object")
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list):
        raise WebhookError("expected an 'alerts' list (Alertmanager/Grafana webhook format)")
    if len(raw_alerts) > MAX_ALERTS:
        raise WebhookError(f"too many alerts in one notification ({len(raw_alerts)} > {MAX_ALERTS})")
    group_labels = _labels(payload.get("groupLabels"))
    common = _labels(payload.get("commonLabels"))
    group_key = str(payload.get("groupKey") or "")[:500]
    group_key = group_key or "|".join(f"{k}={v}" for k, v in sorted(group_labels.items()))
    alerts: list[Alert] = []
    ignored = 0
    for raw in raw_alerts:
        alert = _alert(source, raw, common)
        if alert is None:
            ignored += 1
        else:
            alerts.append(alert)
    name = group_labels.get("alertname") or common.get("alertname") or "alerts"
    firing = sum(1 for a in alerts if a.firing)
    title = f"[{'FIRING:' + str(firing) if firing else 'RESOLVED'}] {name}"
    return WebhookGroup(source, group_key, _status(payload.get("status")), title, tuple(alerts), ignored)


def _alert(source: WebhookSource, raw: object, common: Mapping[str, str]) -> Alert | None:
    if not isinstance(raw, Mapping):
        return None
    labels = {**common, **_labels(raw.get("labels"))}
    annotations = _labels(raw.get("annotations"))
    name = labels.get("alertname", "")
    about = " ".join([name, *labels.values(), *annotations.values()])
    if not mentions_discards(about):
        return None
    target, target_ip = _target(next((labels[k] for k in _TARGET_KEYS if labels.get(k)), None))
    if not target:
        return None
    if target_ip is None:
        target_ip = next((ip for ip in (_target(v)[1] for v in labels.values()) if ip), None)
    interface = next((labels[k] for k in _IFACE_KEYS if labels.get(k)), None)
    text = "\n".join(f"{k}: {v}" for k, v in annotations.items())
    figures = _figures(text)
    values = raw.get("values")
    if figures.rx is None and figures.tx is None and figures.value is None and isinstance(values, Mapping):
        number = next((v for v in values.values() if isinstance(v, int | float) and not isinstance(v, bool)), None)
        figures.put(None, float(number) if number is not None else None, None)
    directions = set(directions_in(" ".join(filter(None, (labels.get("direction"), name, text)))))
    if figures.rx is not None:
        directions.add("rx")
    if figures.tx is not None:
        directions.add("tx")
    frozen = frozenset(directions)
    figures.settle(frozen)
    return Alert(
        source=source,
        status=_status(raw.get("status")),
        target=target,
        title=f"{name} on {target}",
        identity=make_identity(source, target, interface, name),
        raw_text="\n".join([*(f"{k}={v}" for k, v in labels.items()), text])[:20_000],
        target_ip=target_ip,
        interface=interface,
        directions=frozen,
        rx=figures.rx,
        tx=figures.tx,
        value=figures.value,
        unit=figures.unit,
        name=name,
        severity=labels.get("severity"),
    )


def parse_json(body: bytes) -> Any:
    """The decoded body; :class:`WebhookError` when it is not JSON."""
    import json

    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(f"not JSON: {exc}") from None
