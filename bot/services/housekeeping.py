"""Background duties of a running bot: expire overdue requests, finish interrupted changes.

Runs once at start (a crash mid-apply is finished as soon as the bot is back)
and then every ``interval`` seconds, so a replica that died is taken over by
another once its heartbeat lease runs out.
"""

from __future__ import annotations

import logging
import threading

from bot.services.apply import ApplyService
from bot.services.changes import ChangeService

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(self, changes: ChangeService, apply: ApplyService, interval: float = 30.0) -> None:
        self.changes = changes
        self.apply = apply
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            expired = self.changes.expire_overdue()
            resumed = self.apply.recover()
            if expired or resumed:
                log.info("housekeeping: %d request(s) expired, %d resumed: %s", expired, len(resumed), resumed)
        except Exception:
            log.exception("housekeeping failed")

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
