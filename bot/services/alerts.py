"""Discard alerts: read what monitoring posts, find the VM, diagnose from live evidence, answer once.

Deduplication happens twice: by Slack ``event_id`` (a primary key, so Slack's
retries and a second replica insert nothing) and by alert identity per channel
(one diagnosis per open alert; a repeat or a resolution gets one short line in
the same thread). Everything the reply says comes from the evidence stored
with the alert.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.db import audit
from bot.db.models import AlertMute, AlertRecord
from bot.domain import names
from bot.domain.access import AccessPolicy
from bot.domain.alerts import Alert
from bot.domain.alerts.intake import Audience, Installation, audience
from bot.domain.alerts.vocab import strip_port
from bot.domain.alerts.webhook import WebhookGroup
from bot.domain.diagnosis import Diagnosis, Rule, diagnose, evidence_for, load_rules
from bot.domain.model import Host, PoolInventory, Vm
from bot.render import alerts as render
from bot.render.blocks import Reply
from bot.services.changes import ChangeService
from bot.services.inspection import InspectionService
from bot.services.messenger import Messenger
from bot.settings import AlertSettings

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, frozenset | set | tuple | list):
        return [_jsonable(v) for v in sorted(value, key=str)] if isinstance(value, frozenset | set) else [
            _jsonable(v) for v in value
        ]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class AlertService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        inspection: InspectionService,
        changes: ChangeService,
        messenger: Messenger,
        alert_channels: tuple[str, ...],
        rules: list[Rule] | None = None,
        mute_hours: int = 168,
        access: AccessPolicy | None = None,
        options: AlertSettings | None = None,
    ) -> None:
        self.sessions = sessions
        self.inspection = inspection
        self.changes = changes
        self.messenger = messenger
        self.alert_channels = alert_channels
        self.rules = rules if rules is not None else load_rules()
        self.mute_hours = mute_hours
        self.access = access or AccessPolicy()
        self.options = options or AlertSettings()
        from bot.services.alert_intake import AlertIntake

        self.intake = AlertIntake(self)

    @property
    def clock(self) -> Any:
        return self.changes.clock

    # -- listening ---------------------------------------------------------------------

    def handle_message(
        self,
        event: Mapping[str, Any],
        event_id: str | None,
        envelope: Mapping[str, Any] | None = None,
        us: Installation | None = None,
    ) -> str:
        """Returns what happened (for logs and tests): ignored, duplicate, new, repeat, resolved, …"""
        return self.intake.handle_message(event, event_id, envelope or {}, us or Installation())

    def audience(self, channel: str, shared: bool = False) -> Audience:
        return audience(
            channel,
            allowed_channels=self.access.allowed_channels,
            operators=self.access.operators,
            shared=shared,
        )

    def diagnose_alert(
        self, channel: str, root: str, alert: Alert, now: datetime, reopen: bool, seen_by: Audience
    ) -> tuple[str, Reply]:
        """Find the alert's VM, diagnose it and store the result; the reply is for the caller to post."""
        try:
            found = self.find(alert.target_ip or alert.target, alert.target)
        except names.NotFound as exc:
            self._store(channel, root, alert, now, reopen, None, None, None)
            return "unresolved", render.not_found(alert, exc, suggestions=seen_by == "full")
        inventory, subject = found
        if isinstance(subject, Host):
            self._store(channel, root, alert, now, reopen, inventory.pool, None, None)
            return "host", render.host_alert(alert, inventory, subject, full=seen_by == "full")
        vm = subject
        mute = self.active_mute(vm.uuid)
        diagnosis = self.diagnose_vm(inventory, vm, alert)
        self._store(channel, root, alert, now, reopen, inventory.pool, vm, diagnosis)
        metrics.ALERTS.labels(alert.source, diagnosis.verdict).inc()
        if mute is not None:
            return "muted", render.muted(vm, mute.until, mute.muted_by, diagnosis)
        return "new", render.diagnosis_reply(inventory.pool, vm, alert, diagnosis, full=seen_by == "full")

    def _store(
        self,
        channel: str,
        root: str,
        alert: Alert,
        now: datetime,
        reopen: bool,
        pool: str | None,
        vm: Vm | None,
        diagnosis: Diagnosis | None,
    ) -> None:
        summary = None
        if diagnosis is not None:
            summary = {
                "verdict": diagnosis.verdict,
                "label": diagnosis.verdict_label,
                "confidence": diagnosis.confidence,
                "rule": diagnosis.rule_id,
                "explanation": diagnosis.explanation,
                "why": diagnosis.why(),
                "evidence": [list(row) for row in diagnosis.evidence_table()],
                "actions": [{"code": a.code, "modes": list(a.modes)} for a in diagnosis.actions],
            }
        values = {
            "thread_ts": root,
            "source": alert.source,
            "status": alert.status,
            "target": alert.target,
            "pool": pool,
            "vm_uuid": vm.uuid if vm else None,
            "vm_name": vm.name if vm else None,
            "verdict": diagnosis.verdict if diagnosis else None,
            "confidence": diagnosis.confidence if diagnosis else None,
            "parsed": _jsonable(asdict(alert)),
            "diagnosis": summary,
            "last_seen": now,
        }
        with self.sessions.begin() as session:
            row = session.scalar(
                select(AlertRecord).where(AlertRecord.channel == channel, AlertRecord.identity == alert.identity)
            )
            if row is None:
                row = AlertRecord(channel=channel, identity=alert.identity, repeats=0, first_seen=now, **values)
                session.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
            session.flush()
            audit.record(
                session,
                actor="system",
                action="alert.diagnosed" if diagnosis else "alert.unresolved",
                target=f"alert #{row.id}",
                channel=channel,
                details={"target": alert.target, "vm": vm.name if vm else None, "verdict": values["verdict"],
                         "reopened": reopen},
            )

    def store_unnamed(self, channel: str, root: str, alert: Alert, now: datetime) -> None:
        self._store(channel, root, alert, now, False, None, None, None)

    def store_group(self, channel: str, identity: str, thread: str, group: WebhookGroup, now: datetime) -> None:
        """The message a webhook group's replies hang under, by the group's identity."""
        values = {"thread_ts": thread, "source": group.source, "status": "firing", "last_seen": now,
                  "parsed": {"group_key": group.group_key, "title": group.title}}
        with self.sessions.begin() as session:
            row = session.scalar(
                select(AlertRecord).where(AlertRecord.channel == channel, AlertRecord.identity == identity)
            )
            if row is None:
                session.add(AlertRecord(channel=channel, identity=identity, target="", repeats=0, first_seen=now,
                                        **values))
            else:
                for name, value in values.items():
                    setattr(row, name, value)

    def close_group(self, channel: str, identity: str, now: datetime) -> None:
        with self.sessions.begin() as session:
            row = session.scalar(
                select(AlertRecord).where(AlertRecord.channel == channel, AlertRecord.identity == identity)
            )
            if row is not None:
                row.status, row.last_seen = "resolved", now

    # -- finding and diagnosing ---------------------------------------------------------

    def find(self, query: str, fallback: str | None = None) -> tuple[PoolInventory, Vm | Host]:
        """VM by name (any case, FQDN or short), by guest IP, or a host by name/address."""
        inventories, errors = self.inspection.inventories()
        vms = [(inv, vm) for inv in inventories for vm in inv.vms.values()]
        if _is_ip(query):
            by_ip = [(inv, vm) for inv, vm in vms if vm.guest and query in vm.guest.ips]
            if len(by_ip) == 1:
                return by_ip[0]
            hosts = [(inv, h) for inv in inventories for h in inv.hosts.values() if h.address == query]
            if hosts:
                return hosts[0]
            if fallback and fallback != query:
                return self.find(fallback)
        candidates = [
            names.Candidate((inv, vm), vm.uuid, (vm.name,), f"{vm.name} ({inv.pool})") for inv, vm in vms
        ]
        host_candidates = [
            names.Candidate((inv, h), h.uuid, (h.name, h.hostname), h.name)
            for inv in inventories
            for h in inv.hosts.values()
        ]
        attempts = [query] + ([query.split(".", 1)[0]] if "." in query and not _is_ip(query) else [])
        last: names.NotFound | None = None
        for attempt in attempts:
            try:
                inv, vm = names.resolve("VM", attempt, candidates)
                return inv, vm
            except names.NotFound as exc:
                last = last or exc
            try:
                inv, host = names.resolve("host", attempt, host_candidates)
                return inv, host
            except names.NotFound:
                pass
        suggestions = list(last.suggestions) if last else []
        if errors:
            suggestions.append(f"(pools not answering: {', '.join(sorted({e.pool for e in errors}))})")
        raise names.NotFound("VM or host", query, suggestions)

    def find_vm(self, query: str, pool: str | None = None) -> tuple[PoolInventory, Vm]:
        """A VM as alerts name it: name, uuid, FQDN (its short name), ``host:port`` (port dropped) or guest IP."""
        target = strip_port(query)
        if _is_ip(target):
            inventories, _errors = self.inspection.inventories(pool)
            by_ip = [(inv, vm) for inv in inventories for vm in inv.vms.values() if vm.guest and target in vm.guest.ips]
            if len(by_ip) == 1:
                return by_ip[0]
            if len(by_ip) > 1:
                raise names.NotFound("VM", target, [f"{vm.name} ({inv.pool})" for inv, vm in by_ip])
        try:
            return self.inspection.find_vm(target, pool)
        except names.NotFound:
            if "." in target and not _is_ip(target):
                return self.inspection.find_vm(target.split(".", 1)[0], pool)
            raise

    def diagnose_vm(self, inventory: PoolInventory, vm: Vm, alert: Alert | None) -> Diagnosis:
        own = {v.uuid for v in inventory.vifs_of(vm)}
        pending = self.changes.pending_activation(own)
        evidence = evidence_for(inventory, vm, alert, pending, recent_change_pending=bool(own & pending.keys()))
        return diagnose(evidence, self.rules)

    def explain(self, query: str, rx: float | None, tx: float | None, pool: str | None) -> Reply:
        inventory, vm = self.find_vm(query, pool)
        diagnosis = self.diagnose_vm(inventory, vm, None)
        if rx is not None or tx is not None:
            directions = frozenset(d for d, v in (("rx", rx), ("tx", tx)) if v is not None)
            evidence = replace(diagnosis.evidence, rx=rx, tx=tx, directions=directions)
            diagnosis = diagnose(evidence, self.rules)
        return render.diagnosis_reply(inventory.pool, vm, None, diagnosis)

    # -- actions ------------------------------------------------------------------------

    def active_mute(self, vm_uuid: str) -> AlertMute | None:
        with self.sessions() as session:
            return session.scalar(
                select(AlertMute)
                .where(AlertMute.vm_uuid == vm_uuid, AlertMute.until > self.clock())
                .order_by(AlertMute.until.desc())
                .limit(1)
            )

    def mute(self, user: str, pool: str, vm_uuid: str) -> Reply:
        inventory = self.inspection.gateway(pool).inventory()
        vm = next((v for v in inventory.vms.values() if v.uuid == vm_uuid), None)
        if vm is None:
            raise names.NotFound("VM", vm_uuid)
        now = self.clock()
        until = now + timedelta(hours=self.mute_hours)
        with self.sessions.begin() as session:
            session.add(AlertMute(pool=pool, vm_uuid=vm.uuid, vm_name=vm.name, muted_by=user, until=until, at=now))
            audit.record(session, actor=user, action="alert.muted", target=f"vm {vm.name}",
                         details={"pool": pool, "vm_uuid": vm.uuid, "until": until.isoformat()})
        return render.mute_recorded(vm, until)

    def recent(self, limit: int = 10) -> list[AlertRecord]:
        with self.sessions() as session:
            return list(session.scalars(select(AlertRecord).order_by(AlertRecord.last_seen.desc()).limit(limit)))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
