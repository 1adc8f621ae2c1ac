"""Background duties of a running bot: expire overdue requests, finish interrupted changes,
post approval cards and outcomes that Slack did not take.

Runs once at start (a crash mid-apply is finished as soon as the bot is back)
and then every ``interval`` seconds, so a replica that died is taken over by
another once its heartbeat lease runs out.

It also anchors the audit log outside the database: every ``anchor_minutes`` (when the
head moved) and at shutdown, the head of the chain (hash and row count) is written to the
log and posted to the audit channel, so deleted newest rows or a rewritten history are
caught by ``xenbot audit verify --anchor HASH:COUNT`` (bot/db/audit.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from bot.db import audit, deliveries
from bot.render import policies as render
from bot.render.blocks import Reply
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
        anchor_channel: str | None = None,
        anchor_interval: float | None = None,
    ) -> None:
        self.changes = changes
        self.apply = apply
        self.interval = interval
        self.policies = policies
        self.compliance_channel = compliance_channel
        self.compliance_hour_utc = compliance_hour_utc
        self.anchor_channel = anchor_channel
        self.anchor_interval = anchor_interval
        self._anchored: audit.Anchor | None = None
        self._anchored_at = 0.0
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
        if self.anchor_interval is not None and time.monotonic() - self._anchored_at >= self.anchor_interval:
            self.anchor()

    def anchor(self) -> audit.Anchor | None:
        """Write the audit chain's head to the log and the audit channel, if it moved since last time.

        Both are outside the database: whoever rewrites the log cannot rewrite what was posted."""
        self._anchored_at = time.monotonic()
        try:
            with self.changes.sessions() as session:
                head = audit.head(session)
        except Exception:
            log.exception("audit anchor: could not read the head of the audit log")
            return None
        if head is None or head == self._anchored:
            return None
        log.info("audit anchor: head %s (check with: xenbot audit verify --anchor %s)", head, head,
                 extra={"audit_anchor": str(head)})
        if self.anchor_channel:
            text = f"xenbot audit anchor: `{head}`\nCheck with `xenbot audit verify --anchor {head}`"
            try:
                self.changes.messenger.post(self.anchor_channel, Reply(text=text, ephemeral=False))
            except Exception as exc:  # noqa: BLE001 - the log line above holds the anchor anyway
                log.warning("audit anchor: not posted to %s: %s", self.anchor_channel, exc)
        self._anchored = head
        return head

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
        """Stop the loop, then anchor the audit log one last time (what this run wrote)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.anchor_interval is not None:
            self.anchor()

    def _loop(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self.interval):
                return
