"""Alerts in: Slack messages in alert channels and Alertmanager/Grafana JSON webhooks, to one answer each.

Every notification a monitoring tool sends about one alert (firing, reminder,
acknowledgement, resolution, an edit of the original post) has exactly one
right answer, decided by :meth:`AlertIntake.kind_of` from what xenbot already
knows about that alert (by identity, per channel):

========================  =====================================================
``new``                   a diagnosis in the alert's thread
``repeat``                one line in the first diagnosis's thread
``resolved``              one line in that thread
``unseen``                a resolution for an alert never seen firing: one line
                          ("resolved; not diagnosed") or nothing
                          (``alerts.unseen_resolved = "silent"``)
``update``                an acknowledgement or comment: nothing
``edit``                  an edit that changes nothing xenbot tracks: nothing
========================  =====================================================

A firing after ``alerts.refire_after_hours`` of silence is ``new`` again
(Alertmanager's ``send_resolved`` defaults to false, so its resolutions are
often never posted). Deduplication by delivery id (a primary key) makes Slack's
retries, a webhook's retries and a second replica insert nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db.models import AlertDelivery, AlertRecord
from bot.domain.alerts import Alert, parse_alert
from bot.domain.alerts.common import make_identity
from bot.domain.alerts.intake import Audience, Installation, IntakePolicy, inner_message, refusal
from bot.domain.alerts.webhook import WebhookGroup
from bot.render import alerts as render
from bot.render.blocks import Reply

if TYPE_CHECKING:
    from bot.services.alerts import AlertService

log = logging.getLogger(__name__)

MAX_GROUP_DIAGNOSES: Final = 5  # in one Slack reply; further members of a group get one line each
_QUIET: Final = frozenset({"edit", "update"})


class AlertIntake:
    def __init__(self, service: AlertService) -> None:
        self.service = service
        options = service.options
        self.policy = IntakePolicy(
            sources=tuple(options.sources),
            accept_people=options.accept_people,
            allowed_teams=tuple(options.allowed_teams),
            allow_shared_channels=options.allow_shared_channels,
        )
        self.refire_after = timedelta(hours=options.refire_after_hours)

    # -- Slack messages -------------------------------------------------------------------

    def handle_message(
        self, event: Mapping[str, Any], event_id: str | None, envelope: Mapping[str, Any], us: Installation
    ) -> str:
        channel = str(event.get("channel") or "")
        if channel not in self.service.alert_channels:
            return "ignored"
        why = refusal(envelope, event, us, self.policy)
        if why is not None:
            log.info("alert channel %s: message not taken as an alert: %s", channel, why)
            return "ignored"
        edited = event.get("subtype") == "message_changed"
        alert = parse_alert(event)
        if edited and alert is not None:
            previous = event.get("previous_message")
            before = parse_alert(previous) if isinstance(previous, Mapping) else None
            if before is not None and _state(before) == _state(alert):
                return "unchanged"  # reply counts, unfurls, a reaction: not news about the alert
        follow_up_only = False
        if alert is None:
            # A tool's notice that names no discards (PRTG "Up", an empty [RESOLVED]) may still
            # close or update an alert we know; it never opens one.
            alert = parse_alert(event, any_topic=True)
            if alert is None or (alert.firing and not alert.update and not alert.members):
                return "ignored"
            follow_up_only = True
        message = inner_message(event)
        ts = str(message.get("ts") or event.get("ts") or "")
        root = str(message.get("thread_ts") or ts)
        seen_by = self.service.audience(channel, bool(envelope.get("is_ext_shared_channel")))
        key = event_id or f"{channel}:{ts}:{event.get('subtype', '')}:{alert.status}"
        if alert.members:
            return self._group(channel, root, alert.members, key, edited, follow_up_only, seen_by)
        if not alert.target:
            return self._unnamed_group(channel, root, alert, key)
        kind, reply, thread = self._one(channel, root, alert, key, edited, follow_up_only, seen_by)
        if reply is not None:
            self.service.messenger.post(channel, reply, thread_ts=thread)
        return kind

    def may_be_alert(self, event: Mapping[str, Any], envelope: Mapping[str, Any], us: Installation) -> bool:
        """Whether the intake rules let this message be an alert at all (for a flood's summary)."""
        return refusal(envelope, event, us, self.policy) is None

    def _one(
        self,
        channel: str,
        root: str,
        alert: Alert,
        key: str,
        edited: bool,
        follow_up_only: bool,
        seen_by: Audience,
    ) -> tuple[str, Reply | None, str]:
        """The kind of this notification, the reply (if any) and the thread it goes to; stores what it learnt."""
        now = self.service.clock()
        with self.service.sessions.begin() as session:
            existing = _record(session, channel, alert.identity)
            if follow_up_only and existing is None:
                return "ignored", None, root
            kind = self.kind_of(existing, alert, edited, now)
            if not _deliver(session, key, existing, kind, now):
                return "duplicate", None, root
            thread, vm_name = root, alert.target
            if existing is not None and kind in ("repeat", "resolved", *_QUIET):
                if kind != "update":
                    existing.status = alert.status
                existing.last_seen = now
                existing.repeats += 1 if kind == "repeat" else 0
                thread, vm_name = existing.thread_ts, existing.vm_name or existing.target
        if kind in _QUIET:
            return kind, None, thread
        if kind in ("repeat", "resolved"):
            return kind, render.follow_up(kind, alert, vm_name), thread
        if kind == "unseen":
            quiet = self.service.options.unseen_resolved == "silent"
            return kind, None if quiet else render.unseen_resolved(alert), root
        kind, reply = self.service.diagnose_alert(channel, root, alert, now, existing is not None, seen_by)
        return kind, reply, root

    def kind_of(self, existing: AlertRecord | None, alert: Alert, edited: bool, now: datetime) -> str:
        if alert.update:
            return "update"
        if existing is None:
            return "new" if alert.firing else "unseen"
        if not alert.firing:
            return "resolved" if existing.status != "resolved" else "edit"
        if existing.status == "resolved":
            return "new"  # fired again after it resolved: a fresh look is worth it
        if now - existing.last_seen > self.refire_after:
            return "new"  # silence for a day: most likely resolved without a resolution being sent
        return "edit" if edited else "repeat"

    def _group(
        self,
        channel: str,
        root: str,
        members: Sequence[Alert],
        key: str,
        edited: bool,
        follow_up_only: bool,
        seen_by: Audience,
    ) -> str:
        """A grouped notification: each alerted VM answered once, all of it in one reply."""
        parts: list[Reply] = []
        kinds: list[str] = []
        for index, member in enumerate(members):
            answered = sum(1 for k in kinds if k in ("new", "host", "muted"))
            full: Audience = seen_by if answered < MAX_GROUP_DIAGNOSES else "summary"
            kind, reply, _thread = self._one(
                channel, root, member, f"{key[:56]}#{index}", edited, follow_up_only, full
            )
            kinds.append(kind)
            if reply is not None:
                parts.append(reply)
        if parts:
            self.service.messenger.post(channel, render.combined(parts), thread_ts=root)
        return ",".join(kinds)

    def _unnamed_group(self, channel: str, root: str, alert: Alert, key: str) -> str:
        """A group whose message names no alert (Alertmanager's default template): say so, once."""
        now = self.service.clock()
        with self.service.sessions.begin() as session:
            existing = _record(session, channel, alert.identity)
            kind = "repeat" if existing is not None and existing.status == alert.status else "unnamed"
            if not _deliver(session, key, existing, kind, now):
                return "duplicate"
            if existing is not None:
                existing.status, existing.last_seen = alert.status, now
        if kind == "unnamed" and alert.firing:
            self.service.store_unnamed(channel, root, alert, now)
            self.service.messenger.post(channel, render.unnamed_group(alert), thread_ts=root)
        return kind

    # -- JSON webhooks --------------------------------------------------------------------

    def handle_webhook(self, group: WebhookGroup, delivery: str) -> str:
        """One Alertmanager/Grafana notification: a message per group, a thread reply per alerted VM."""
        channel = self.service.options.webhook_channel or next(iter(self.service.alert_channels), "")
        if not channel:
            raise LookupError("no channel for webhook alerts: set alerts.webhook_channel")
        now = self.service.clock()
        group_identity = make_identity(group.source, "group", None, group.group_key)[:255]
        with self.service.sessions.begin() as session:
            head = _record(session, channel, group_identity)
            if not _deliver(session, f"wh:{delivery}"[:64], head, "webhook", now):
                return "duplicate"
            thread = head.thread_ts if head is not None and head.status == "firing" else None
        seen_by = self.service.audience(channel)
        pending: list[Alert] = []
        kinds: list[str] = []
        for alert in group.alerts:
            with self.service.sessions() as session:
                known = _record(session, channel, alert.identity)
            kind = self.kind_of(known, alert, False, now)
            if kind in ("repeat", "edit", "update") or (kind == "unseen" and thread is None):
                kinds.append(self._quiet_webhook(channel, alert, f"wh:{delivery[:40]}:{len(kinds)}", now, kind))
                continue
            pending.append(alert)
        if pending and thread is None:
            if not any(a.firing for a in pending):
                return ",".join(kinds) or "ignored"
            thread = self.service.messenger.post(channel, render.webhook_group(group)) or ""
            self.service.store_group(channel, group_identity, thread, group, now)
        for index, alert in enumerate(pending):
            kind, reply, _ = self._one(
                channel, thread or "", alert, f"wh:{delivery[:40]}:p{index}", False, False, seen_by
            )
            kinds.append(kind)
            if reply is not None:
                self.service.messenger.post(channel, reply, thread_ts=thread)
        if group.status == "resolved":
            self.service.close_group(channel, group_identity, now)
        return ",".join(kinds) or "ignored"

    def _quiet_webhook(self, channel: str, alert: Alert, key: str, now: datetime, kind: str) -> str:
        """A repeat (Alertmanager's repeat_interval) is only remembered: the thread has its answer already."""
        with self.service.sessions.begin() as session:
            existing = _record(session, channel, alert.identity)
            if not _deliver(session, key, existing, kind, now):
                return "duplicate"
            if existing is not None:
                existing.last_seen = now
                existing.repeats += 1 if kind == "repeat" else 0
        return kind


def _state(alert: Alert) -> tuple[object, ...]:
    """What an edit must change to be news: the status, and which alerts of a group are in which status."""
    return alert.status, alert.update, tuple(sorted((m.identity, m.status) for m in alert.members))


def _record(session: Session, channel: str, identity: str) -> AlertRecord | None:
    return session.scalar(select(AlertRecord).where(AlertRecord.channel == channel, AlertRecord.identity == identity))


def _deliver(session: Session, key: str, existing: AlertRecord | None, kind: str, now: datetime) -> bool:
    """Record this delivery once; ``False`` when it was already handled (a retry, another replica)."""
    try:
        with session.begin_nested():
            session.add(
                AlertDelivery(event_id=key[:64], alert_id=existing.id if existing else None, kind=kind[:16], at=now)
            )
    except IntegrityError:
        return False
    return True
