"""What one person's Home tab shows, read from the same services as ``/xen``.

Who sees what (the rule ``/xen`` applies, decided once here):

* pools, your requests, policies and alerts: operators only (``AccessPolicy.may_operate``).
  The Home tab is private to its owner and belongs to no channel, so the channel list does
  not apply; the operator list does, so a person who could not run ``/xen pools`` sees a
  sentence saying why instead.
* "Waiting for your approval": each pending request this person may approve
  (``may_approve``: an approver, not the requester unless self-approval is on, and not
  already approved by them). Approvers need not be operators, as for the approval card.

Each part is read on its own: a pool that does not answer leaves the rest of the tab intact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from bot.db.models import AlertRecord, ChangeRequest, Policy
from bot.domain.access import AccessPolicy, MembersOf
from bot.domain.approvals import State
from bot.domain.changes import Plan
from bot.domain.policy import Compliance
from bot.services.alerts import AlertService
from bot.services.changes import ChangeService
from bot.services.inspection import InspectionService, PoolStatus
from bot.services.policies import PolicyService

log = logging.getLogger(__name__)

MAX_WAITING = 10
MAX_MINE = 5
MAX_POLICIES = 10
MAX_ALERTS = 5
SHARED_SECONDS = 2.0


@dataclass(frozen=True)
class Waiting:
    request: ChangeRequest
    plan: Plan


@dataclass
class HomeData:
    user: str
    operator: bool
    refusal: str = ""
    pools: list[PoolStatus] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    mine: list[ChangeRequest] = field(default_factory=list)
    policies: list[tuple[Policy, Compliance]] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # parts that could not be read, and why
    notice: str | None = None


Shared = tuple[list[PoolStatus], list[tuple[Policy, Compliance]], list[AlertRecord], list[str]]


@dataclass
class HomeService:
    inspection: InspectionService
    changes: ChangeService
    policies: PolicyService
    alerts: AlertService
    access: AccessPolicy
    members_of: MembersOf
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _shared: tuple[float, Shared] | None = field(default=None, repr=False)

    def may_operate(self, user: str) -> tuple[bool, str]:
        """``/xen``'s operator rule without a channel (see the module docstring)."""
        channel = self.access.allowed_channels[0] if self.access.allowed_channels else None
        decision = self.access.may_operate(user, channel, self.members_of)
        return decision.allowed, decision.reason

    def data(self, user: str, notice: str | None = None) -> HomeData:
        operator, reason = self.may_operate(user)
        home = HomeData(user, operator, reason, notice=notice)
        self._part(home, "approvals", lambda: setattr(home, "waiting", self.waiting_for(user)))
        if not operator:
            return home
        self._part(home, "your requests", lambda: setattr(home, "mine", self.mine(user)))
        pools, policies, alerts, problems = self.shared()
        home.pools, home.policies, home.alerts = pools, policies, alerts
        home.problems += problems
        return home

    def shared(self) -> Shared:
        """What every operator's tab shows alike, read once per ``SHARED_SECONDS`` however many
        tabs are refreshed: compliance reads each policy's pool live, which is not to be done
        once per viewer."""
        with self._lock:
            if self._shared is not None and time.monotonic() - self._shared[0] < SHARED_SECONDS:
                return self._shared[1]
            scratch = HomeData("", True)
            self._part(scratch, "pools", lambda: setattr(scratch, "pools", self.inspection.pools()))
            self._part(scratch, "policies", lambda: setattr(scratch, "policies", self.policies.compliance_report()[
                :MAX_POLICIES]))
            self._part(scratch, "alerts", lambda: setattr(scratch, "alerts", self.alerts.recent(MAX_ALERTS)))
            found: Shared = (scratch.pools, scratch.policies, scratch.alerts, scratch.problems)
            self._shared = (time.monotonic(), found)
            return found

    def waiting_for(self, user: str) -> list[Waiting]:
        with self.changes.sessions() as session:
            pending = session.scalars(
                select(ChangeRequest).where(ChangeRequest.state == State.PENDING).order_by(ChangeRequest.id.desc())
                .limit(100)
            ).all()
            found = []
            for request in pending:
                if not self.access.may_approve(user, request.requester, self.members_of).allowed:
                    continue
                if user in self.changes.approvers_of(request.id, session):
                    continue
                found.append(Waiting(request, Plan.from_json(request.plan)))
                if len(found) >= MAX_WAITING:
                    break
            return found

    def mine(self, user: str) -> list[ChangeRequest]:
        with self.changes.sessions() as session:
            return list(session.scalars(
                select(ChangeRequest).where(ChangeRequest.requester == user).order_by(ChangeRequest.id.desc())
                .limit(MAX_MINE)
            ))

    @staticmethod
    def _part(home: HomeData, name: str, read: Callable[[], Any]) -> None:
        try:
            read()
        except Exception as exc:  # noqa: BLE001 - one part failing must not blank the tab; it says which and why
            log.warning("Home tab of %s: could not read %s: %s", home.user, name, exc)
            home.problems.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
