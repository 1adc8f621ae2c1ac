"""The progress sender's own rules (bot/services/progress.py): the latest state per card, at most
one update per card per interval and N a minute per channel, a 429 pauses the channel, and
``finish`` ends a card's progress before its final state is drawn. Slack itself is faked over
HTTP in test_progress_stall.py; here the transport is a plain recording function."""

from __future__ import annotations

import threading
import time

from bot.render.blocks import Reply
from bot.services.progress import ProgressSender, RateLimited


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, float]] = []
        self.limit_next = 0
        self.lock = threading.Lock()

    def __call__(self, channel: str, ts: str, reply: Reply) -> None:
        with self.lock:
            if self.limit_next:
                self.limit_next -= 1
                raise RateLimited(0.3)
            self.sent.append((channel, ts, reply.text, time.monotonic()))


def reply(text: str) -> Reply:
    return Reply(text=text, blocks=[], ephemeral=False)


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_offers_are_coalesced_and_the_latest_is_sent_at_the_cards_pace():
    send = Recorder()
    sender = ProgressSender(send, card_interval=0.5)
    for i in range(200):
        sender.offer("C1", "1.0", reply(f"{i}/200"))
    wait_until(lambda: any(text == "199/200" for _c, _t, text, _at in send.sent))
    assert len(send.sent) <= 2  # the first offer, then the latest one, half a second later
    if len(send.sent) == 2:
        assert send.sent[1][3] - send.sent[0][3] >= 0.45
    assert sender.dropped >= 198


def test_a_channel_gets_at_most_n_updates_a_minute():
    send = Recorder()
    sender = ProgressSender(send, card_interval=0.0, per_minute=3)
    for card in range(6):
        sender.offer("C1", f"{card}.0", reply("x"))
    sender.offer("C2", "9.0", reply("other channel"))
    wait_until(lambda: len(send.sent) >= 4)
    time.sleep(0.3)  # give it the chance to send more than allowed
    assert len([s for s in send.sent if s[0] == "C1"]) == 3
    assert [s[2] for s in send.sent if s[0] == "C2"] == ["other channel"]


def test_a_429_pauses_the_channel_and_the_latest_state_follows():
    send = Recorder()
    send.limit_next = 1
    sender = ProgressSender(send, card_interval=0.0)
    sender.offer("C1", "1.0", reply("1/3"))
    wait_until(lambda: sender.limited == 1)
    limited_at = time.monotonic()
    sender.offer("C1", "1.0", reply("2/3"))
    wait_until(lambda: len(send.sent) == 1)
    assert send.sent[0][2] == "2/3" and send.sent[0][3] - limited_at >= 0.25


def test_finish_drops_what_is_pending_so_the_final_state_wins():
    send = Recorder()
    sender = ProgressSender(send, card_interval=60.0)
    sender.offer("C1", "1.0", reply("1/3"))
    wait_until(lambda: len(send.sent) == 1)
    sender.offer("C1", "1.0", reply("2/3"))  # held back by the card's interval
    sender.finish("C1", "1.0")
    time.sleep(0.2)
    assert [s[2] for s in send.sent] == ["1/3"]
