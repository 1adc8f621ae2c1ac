"""The one place that builds engines, gateways, services and the router from settings.

Slack, the console and the tests all start from :func:`build`, so they run the
same objects wired the same way; only the transport around them differs.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot import db
from bot.domain.access import AccessPolicy, MembersOf
from bot.domain.diagnosis import load_rules
from bot.router import CommandRouter
from bot.routes.alerts import AlertRoutes
from bot.routes.changes import ChangeRoutes
from bot.routes.policies import PolicyRoutes
from bot.services.alerts import AlertService
from bot.services.apply import ApplyService
from bot.services.audit import AuditLog
from bot.services.changes import ChangeService
from bot.services.inspection import InspectionService
from bot.services.messenger import Messenger, NullMessenger
from bot.services.policies import PolicyService
from bot.services.watcher import Lease, Watchers
from bot.settings import Settings
from bot.xen.gateway import Gateways

log = logging.getLogger(__name__)


def no_groups(_group_id: str) -> Collection[str]:
    """Membership lookup when Slack is not available (console): only listed user ids count."""
    return ()


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    gateways: Gateways
    access: AccessPolicy
    audit: AuditLog
    inspection: InspectionService
    router: CommandRouter
    changes: ChangeService
    apply: ApplyService
    messenger: Messenger
    policies: PolicyService
    alerts: AlertService

    def close(self) -> None:
        self.gateways.close()
        self.engine.dispose()


def access_policy(settings: Settings) -> AccessPolicy:
    s = settings.slack
    return AccessPolicy(
        operators=tuple(s.operators),
        approvers=tuple(s.approvers),
        allowed_channels=tuple(s.allowed_channels),
        allow_self_approval=s.allow_self_approval,
    )


def build(
    settings: Settings,
    *,
    members_of: MembersOf = no_groups,
    messenger: Messenger | None = None,
    migrate: bool = True,
) -> Services:
    """Everything the bot needs; the schema is brought to head first (several replicas: one migrates)."""
    engine = db.make_engine(settings.database_url)
    if migrate:
        db.upgrade(engine)
    sessions = db.session_factory(engine, audit_key=settings.audit.key())
    gateways = Gateways(settings.pools)
    access = access_policy(settings)
    audit = AuditLog(sessions)
    inspection = InspectionService(gateways)
    router = CommandRouter(
        inspection=inspection,
        access=access,
        members_of=members_of,
        audit=audit,
        command=settings.slack.command,
    )
    messenger = messenger or NullMessenger()
    live = InspectionService(gateways, max_age=0.0)  # plans, re-plans and diagnoses read live state
    changes = ChangeService(
        sessions=sessions,
        inspection=live,
        access=access,
        members_of=members_of,
        slack=settings.slack,
        messenger=messenger,
    )
    inspection.pending_activation = live.pending_activation = changes.pending_activation
    apply = ApplyService(
        changes=changes,
        gateways=gateways,
        sessions=sessions,
        messenger=messenger,
        outage_patience=settings.database_outage_seconds,
    )
    ChangeRoutes(changes, apply).register(router)
    policies = PolicyService(
        sessions=sessions,
        changes=changes,
        apply=apply,
        messenger=messenger,
        report_channel=settings.policies.report_channel or settings.slack.approvals_channel,
    )
    PolicyRoutes(policies, changes).register(router)
    alerts = AlertService(
        sessions=sessions,
        inspection=live,
        changes=changes,
        messenger=messenger,
        alert_channels=tuple(settings.slack.alert_channels),
        rules=load_rules(settings.alerts.rules_files),
        mute_hours=settings.alerts.mute_hours,
        access=access,
        options=settings.alerts,
    )
    AlertRoutes(alerts, changes).register(router)
    return Services(
        settings, engine, sessions, gateways, access, audit, inspection, router, changes, apply, messenger, policies,
        alerts,
    )


def watchers(services: Services) -> Watchers:
    """Event watchers for every pool, sharing this process's identity for the leases."""
    options = services.settings.policies
    lease = Lease(services.sessions, services.apply.me, services.changes.clock)
    return Watchers(
        services.gateways,
        services.policies,
        lease,
        poll_seconds=options.poll_seconds,
        lease_ttl=timedelta(seconds=options.lease_seconds),
    )
