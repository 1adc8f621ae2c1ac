"""Pytest fixtures for the Slack harness.

Why a plain module and not ``tests/slack/conftest.py``: the project's root conftest
imports these (``pytest_plugins = ["tests.slack.fixtures"]``) so that tests anywhere in
the tree (handlers, end-to-end flows) can use the fake Slack, not only tests under
``tests/slack``.  A test module may also import them directly.

Each fixture gives a fresh, started server per test and stops it afterwards, so tests
never share recorded calls or injected faults.  The constants are the credentials the
fakes and the app under test should agree on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from tests.slack.fake_slack import FakeSlack
from tests.slack.fake_socket_mode import FakeSocketMode

__all__ = [
    "APP_TOKEN",
    "BOT_TOKEN",
    "SIGNING_SECRET",
    "fake_slack",
    "fake_socket_mode",
    "slack_signing_secret",
    "slack_web_client",
]

BOT_TOKEN = "xoxb-1-xenbot-test"
APP_TOKEN = "xapp-1-A0XENBOT-test"
SIGNING_SECRET = "xenbot-test-signing-secret"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A started :class:`FakeSlack`; point clients at ``fake_slack.base_url``."""
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def fake_socket_mode(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    """A started :class:`FakeSocketMode` attached to ``fake_slack``, so that
    ``apps.connections.open`` (with an ``xapp-`` token) returns its ``ws://`` URL.

    Close the app's Socket Mode handler before this fixture is torn down (for instance
    with :func:`tests.slack.fake_socket_mode.close_socket_mode_client`), otherwise the
    client tries to reconnect while the fakes are going away.
    """
    with FakeSocketMode(app_id=fake_slack.app_id) as server:
        fake_slack.attach_socket_mode(server)
        yield server
        fake_slack.attach_socket_mode(None)


@pytest.fixture
def slack_web_client(fake_slack: FakeSlack) -> WebClient:
    """A real ``slack_sdk.WebClient`` with the bot token, talking to ``fake_slack``."""
    return WebClient(token=BOT_TOKEN, base_url=fake_slack.base_url)


@pytest.fixture
def slack_signing_secret() -> str:
    """The signing secret to configure the app with and sign test requests with."""
    return SIGNING_SECRET
