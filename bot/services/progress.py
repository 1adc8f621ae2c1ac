"""Progress on an apply's card, sent from a thread of its own, so Slack can never stall an apply.

Progress used to be a ``chat.update`` on the thread that stores an apply's results, after
every batch: 154 updates for a 5,000-VM pool (3-4 a second, where Slack allows
``chat.update`` about 50 a minute), and slack_sdk sleeps out a 429's ``Retry-After`` on the
calling thread, so one 35 s stall left 745 of 3,030 interfaces unwritten. Now the collector
only *offers* the latest progress of a card (``offer`` never waits on Slack), and this sender:

* keeps only the latest offer per card (older ones are dropped: progress is a state, not a log);
* sends at most one update per card every ``card_interval`` (3 s) and at most ``per_minute``
  per channel;
* on a 429 (:class:`RateLimited`, raised by the transport, which must not retry it itself)
  pauses that channel for ``Retry-After`` and keeps the card's latest offer for afterwards;
* lets the final state win: ``finish`` drops what is pending for a card and waits for an update
  of it already on the wire, so the final card (posted after ``finish``) is the last word.

One sender per messenger (= per Slack client and workspace), made on first use.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from bot.render.blocks import Reply

log = logging.getLogger(__name__)

CARD_INTERVAL = 3.0
PER_MINUTE = 20
IDLE_SECONDS = 10.0

Card = tuple[str, str]  # (channel, ts)
Send = Callable[[str, str, Reply], None]


class RateLimited(Exception):
    """Slack answered 429: nothing more to this channel for ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:g} s")
        self.retry_after = retry_after


class ProgressSender:
    def __init__(
        self,
        send: Send,
        *,
        card_interval: float = CARD_INTERVAL,
        per_minute: int = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self.card_interval = card_interval
        self.per_minute = per_minute
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[Card, Reply] = {}
        self._last: dict[Card, float] = {}
        self._recent: dict[str, deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._in_flight: Card | None = None
        self._thread: threading.Thread | None = None
        self.sent = self.dropped = self.limited = 0  # for tests and benchmarks

    def offer(self, channel: str, ts: str, reply: Reply) -> None:
        """The card's latest progress; returns at once (the previous offer, if unsent, is dropped)."""
        with self._cond:
            if self._pending.pop((channel, ts), None) is not None:
                self.dropped += 1
            self._pending[(channel, ts)] = reply
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress-sender", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def finish(self, channel: str, ts: str, timeout: float = 30.0) -> None:
        """No more progress for this card: drop what is pending, wait out an update on the wire."""
        card = (channel, ts)
        deadline = self._clock() + timeout
        with self._cond:
            if self._pending.pop(card, None) is not None:
                self.dropped += 1
            self._last.pop(card, None)
            while self._in_flight == card and self._clock() < deadline:
                self._cond.wait(0.1)

    def _run(self) -> None:
        while True:
            with self._cond:
                card, wait = self._next()
                if card is None:
                    if wait is None and not self._cond.wait(IDLE_SECONDS) and not self._pending:
                        self._thread = None  # idle: the next offer starts a new thread
                        return
                    if wait is not None:
                        self._cond.wait(wait)
                    continue
                reply = self._pending.pop(card)
                self._in_flight = card
                self._last[card] = self._clock()
                self._recent.setdefault(card[0], deque()).append(self._clock())
            try:
                self._send(card[0], card[1], reply)
                self.sent += 1
            except RateLimited as exc:
                with self._cond:
                    self.limited += 1
                    self._paused_until[card[0]] = self._clock() + exc.retry_after
                    self._pending.setdefault(card, reply)  # a newer offer wins over this one
            except Exception:  # progress is best effort; the final card is drawn anyway
                log.warning("could not update the progress of %s in %s", card[1], card[0], exc_info=True)
                self.dropped += 1
            finally:
                with self._cond:
                    self._in_flight = None
                    self._cond.notify_all()

    def _next(self) -> tuple[Card | None, float | None]:
        """The card due first, or None and how long to wait (None: until an offer)."""
        now = self._clock()
        soonest: float | None = None
        for card in self._pending:
            channel = card[0]
            recent = self._recent.get(channel)
            while recent and recent[0] <= now - 60.0:
                recent.popleft()
            due = max(
                self._last.get(card, -1e9) + self.card_interval,
                self._paused_until.get(channel, 0.0),
                recent[0] + 60.0 if recent and len(recent) >= self.per_minute else 0.0,
            )
            if due <= now:
                return card, None
            soonest = due if soonest is None else min(soonest, due)
        return None, None if soonest is None else max(soonest - now, 0.01)


_senders: weakref.WeakKeyDictionary[Any, ProgressSender] = weakref.WeakKeyDictionary()
_senders_lock = threading.Lock()


def sender_for(messenger: Any) -> ProgressSender:
    """The messenger's progress sender. A messenger with ``update_progress`` (Slack's) sends
    through it: it must raise :class:`RateLimited` on a 429 rather than sleep it out."""
    with _senders_lock:
        sender = _senders.get(messenger)
        if sender is None:
            sender = ProgressSender(getattr(messenger, "update_progress", messenger.update))
            _senders[messenger] = sender
        return sender
