"""Slack saying no, or not answering, when ``xenbot serve`` starts: one clear line, no traceback."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bot.settings import Settings
from handlers.client import SlackNotReady, check_token, web_client
from tests.slack.fixtures import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET


def _config(tmp_path, sim, api_url: str, **slack: str) -> str:
    config = tmp_path / "xenbot.toml"
    extra = "".join(f'{key} = "{value}"\n' for key, value in slack.items())
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "x.db"}"\nlog_level = "WARNING"\napply_processes = 0\n'
        f'[[pools]]\nname = "demo"\nurl = "{sim.url}"\npassword = "{sim.password}"\n'
        f'[slack]\nbot_token = "{BOT_TOKEN}"\napi_url = "{api_url}"\n{extra}'
        "[policies]\nwatch = false\n"
    )
    return str(config)


def _serve(config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "--config", config, "serve", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_refused_bot_token_stops_serve_with_one_line_and_no_retry(sim, fake_slack, tmp_path):
    fake_slack.revoke_token(BOT_TOKEN)
    done = _serve(_config(tmp_path, sim, fake_slack.base_url, signing_secret=SIGNING_SECRET),
                  "--http", "--port", "0")
    assert done.returncode == 2
    assert "xenbot: Slack refused the bot token (token_revoked)" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(fake_slack.calls("auth.test")) == 1


def test_socket_mode_turned_off_in_the_app_is_said_plainly(sim, fake_slack, tmp_path):
    fake_slack.error_next("apps.connections.open", "socket_mode_not_enabled")
    done = _serve(_config(tmp_path, sim, fake_slack.base_url, app_token=APP_TOKEN), "--metrics-port", "0")
    assert done.returncode == 2
    assert "Slack refused a Socket Mode connection (socket_mode_not_enabled)" in done.stderr
    assert "--http" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_slack_is_tried_again_then_reported(fake_slack):
    settings = Settings.model_validate({"slack": {"bot_token": BOT_TOKEN, "api_url": "http://127.0.0.1:9/api/"}})
    started = time.monotonic()
    with pytest.raises(SlackNotReady, match=r"could not reach Slack at http://127.0.0.1:9/api/") as refused:
        check_token(web_client(settings), delays=(0.05, 0.05))
    assert refused.value.retryable
    assert time.monotonic() - started >= 0.1  # both waits happened: three attempts

    fake_slack.fail_next("auth.test", status=200, error="invalid_auth")
    ours = Settings.model_validate({"slack": {"bot_token": BOT_TOKEN, "api_url": fake_slack.base_url}})
    with pytest.raises(SlackNotReady, match=r"refused the bot token \(invalid_auth\)") as refused:
        check_token(web_client(ours), delays=(0.05,))
    assert not refused.value.retryable
    check_token(web_client(ours), delays=())  # and a token Slack accepts passes


def test_serve_tries_an_unreachable_slack_with_one_request_and_one_line_per_try(caplog):
    import logging
    import socket

    from handlers.cli import check_slack
    from handlers.client import START_RETRY_DELAYS

    assert 28 <= sum(START_RETRY_DELAYS) <= 32  # deploy/README.md: "about 30 s"
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    settings = Settings.model_validate({"slack": {"bot_token": BOT_TOKEN, "api_url": f"http://127.0.0.1:{port}/api/"}})
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(SlackNotReady, match="could not reach Slack") as refused:
        check_slack(settings, delays=(0.05, 0.05, 0.05))
    elapsed = time.monotonic() - started
    assert refused.value.retryable
    # slack_sdk's own retries (back-off of 0.5 s and more per try) and its ERROR lines are gone.
    assert elapsed < 1.0, elapsed
    assert [r.name for r in caplog.records if r.name.startswith("slack_sdk")] == []
    tries = [r for r in caplog.records if r.name == "handlers.client"]
    assert len(tries) == 3 and all(r.levelname == "WARNING" for r in tries)  # the 4th try is the raised line
    assert logging.getLogger("slack_sdk").level == logging.NOTSET  # the serving client logs as before
