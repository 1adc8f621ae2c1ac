"""Background duties of a running bot: expire overdue requests, finish interrupted changes,
post approval cards and outcomes that Slack did not take.

Runs once at start (a crash mid-apply is finished as soon as the bot is back)
and then every ``interval`` seconds, so a replica that died is taken over by
another once its heartbeat lease runs out.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from bot.db import audit, deliveries
from bot.render import policies as render
from bot.services.apply import ApplyService
from bot.services.changes import ChangeService
from bot.services.policies import PolicyService

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(
        self,
        changes: ChangeService,
        apply: ApplyService,
        interval: float = 30.0,
        *,
        policies: PolicyService | None = None,
        compliance_channel: str | None = None,
        compliance_hour_utc: int | None = None,
    ) -> None:
        self.changes = changes
        self.apply = apply
        self.interval = interval
        self.policies = policies
        self.compliance_channel = compliance_channel
        self.compliance_hour_utc = compliance_hour_utc
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            expired = self.changes.expire_overdue()
            resumed = self.apply.recover()
            reposted = self.changes.repost_missing_cards()
            reported = self.apply.report_unreported()
            deliveries.forget(self.changes.sessions, self.changes.clock())
            if expired or resumed or reposted or reported:
                log.info("housekeeping: %d request(s) expired, resumed %s, posted late: cards %s, outcomes %s",
                         expired, resumed, reposted, reported)
            self.daily_compliance()
        except Exception:
            log.exception("housekeeping failed")

    def daily_compliance(self) -> bool:
        """Post the compliance summary once a day at the configured hour (off unless configured)."""
        if self.policies is None or not self.compliance_channel or self.compliance_hour_utc is None:
            return False
        now = self.changes.clock()
        if now.hour != self.compliance_hour_utc:
            return False
        today = now.date().isoformat()
        with self.changes.sessions.begin() as session:
            sent = [e for e in audit.recent(session, 20, "policy.compliance_summary") if e.target == today]
            if sent:
                return False
            # Recorded first, in the same transaction that checked: two replicas cannot both post.
            audit.record(session, actor="system", action="policy.compliance_summary", target=today,
                         details={"channel": self.compliance_channel})
        report = self.policies.compliance_report()
        self.changes.messenger.post(
            self.compliance_channel, replace(render.compliance_report(report, f"Daily compliance {today}"),
                                             ephemeral=False)
        )
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="xenbot-housekeeping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self.interval):
                return
