"""Approvals that always reach an end when clicks race, on one database shared by two replicas.

Each replica is a complete service stack (router, services, its own engine and connection pool)
on the same database; real threads click at the same moment through the router, exactly as
two ``xenbot serve`` processes would handle Slack's requests behind a load balancer. On SQLite
``BEGIN IMMEDIATE`` already serialises the transactions; the races bite on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select

from bot.db.models import ChangeApproval, ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.render.blocks import Reply
from bot.render.ids import Action
from bot.router import Actor
from bot.services.changes import Scope
from bot.settings import Settings, SlackSettings
from bot.wiring import Services, build
from tests.conftest_xen import pool_settings
from tests.services.test_apply import RecordingMessenger

APPROVERS = ("U0APPROVE1", "U0APPROVE2")
VM = "centos7-db01"  # one VIF: each round is one key written


@contextmanager
def two_replicas(sim, db_url: str, **slack) -> Iterator[tuple[Services, Services]]:
    settings = Settings(
        pools=[pool_settings(sim)],
        slack=SlackSettings(approvers=list(APPROVERS), approvals_channel="C0APPROVE", **slack),
    ).model_copy(update={"database_url": db_url})
    replicas = [build(settings, messenger=RecordingMessenger()) for _ in range(2)]
    try:
        yield replicas[0], replicas[1]
    finally:
        for replica in replicas:
            replica.close()


def new_request(services: Services, action: str) -> int:
    services.changes.request(
        requester="U123", channel="C123", action=action, scope=Scope("vm", VM), modes_text="tx", reason="race"
    )
    with services.sessions() as session:
        return int(session.scalar(select(func.max(ChangeRequest.id))) or 0)


def click_at_once(clicks: list[tuple[Services, str]], request_id: int) -> list[Reply]:
    """Every (replica, user) click lands at the same moment; the replies, in click order."""
    barrier = threading.Barrier(len(clicks))
    replies: list[Reply | None] = [None] * len(clicks)

    def click(n: int, services: Services, user: str) -> None:
        barrier.wait()
        replies[n] = services.router.handle_action(Actor(user, "C0APPROVE"), Action.APPROVE, str(request_id))

    threads = [threading.Thread(target=click, args=(n, s, u)) for n, (s, u) in enumerate(clicks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(r is not None for r in replies), "a click did not answer"
    return [r for r in replies if r is not None]


def card_texts(*replicas: Services) -> list[str]:
    return [str(reply.blocks) for s in replicas for _c, _ts, reply in s.messenger.updates]  # type: ignore[attr-defined]


def test_two_approvers_clicking_at_once_on_two_replicas_always_approve(sim, db_url):
    """Issue 13 item 9: both counted the other's approval as missing and the request hung pending."""
    with two_replicas(sim, db_url, required_approvals=2) as (a, b):
        for round_ in range(10):
            request_id = new_request(a, "off" if round_ % 2 == 0 else "on")
            replies = click_at_once([(a, APPROVERS[0]), (b, APPROVERS[1])], request_id)
            texts = sorted(r.text for r in replies)
            assert not any(r.error for r in replies), texts
            assert sum("applying it now" in t for t in texts) == 1, texts
            assert sum("needs another approver" in t for t in texts) == 1, texts
            with a.sessions() as session:
                request = session.get(ChangeRequest, request_id)
                approvals = session.scalar(
                    select(func.count()).select_from(ChangeApproval).where(ChangeApproval.request_id == request_id)
                )
            assert (request.state, approvals) == (State.APPLIED, 2), f"round {round_}"
        assert not any("needs 0 more" in text for text in card_texts(a, b))


def test_twenty_clicks_by_one_approver_on_two_replicas_answer_already_approved(sim, db_url):
    """Issue 13 item 10: a double click raced its own insert into a UniqueViolation ("Something
    went wrong"), or was told the request "needs another approver" although it was approved."""
    with two_replicas(sim, db_url) as (a, b):
        for round_ in range(3):
            request_id = new_request(a, "off" if round_ % 2 == 0 else "on")
            sim.reset_call_counts()
            replies = click_at_once([(a if n % 2 else b, APPROVERS[0]) for n in range(20)], request_id)
            texts = [r.text for r in replies]
            assert not any("went wrong" in t or r.error for t, r in zip(texts, replies, strict=True)), texts
            assert sum("applying it now" in t for t in texts) == 1, texts
            assert sum("you have already approved this request" in t for t in texts) == 19, texts
            assert not any("needs another approver" in t for t in texts), texts
            with a.sessions() as session:
                assert session.get(ChangeRequest, request_id).state == State.APPLIED
                results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
            assert len(results) == 1 and sim.call_counts().get("VIF.add_to_other_config") == 1


def test_a_pending_request_left_with_enough_approvals_is_completed_by_the_next_click(sim, db_url):
    """A request that the old race left pending with all its approvals no longer hangs until it
    expires: the next click of one of its approvers moves it on instead of "needs another approver"."""
    with two_replicas(sim, db_url, required_approvals=2) as (a, _b):
        request_id = new_request(a, "off")
        with a.sessions.begin() as session:  # what the race left behind
            for approver in APPROVERS:
                session.add(ChangeApproval(request_id=request_id, approver=approver, at=a.changes.clock()))
        reply = a.router.handle_action(Actor(APPROVERS[0], "C0APPROVE"), Action.APPROVE, str(request_id))
        assert "applying it now" in reply.text and not reply.error
        with a.sessions() as session:
            assert session.get(ChangeRequest, request_id).state == State.APPLIED
