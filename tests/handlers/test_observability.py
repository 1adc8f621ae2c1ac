"""Health, readiness, metrics and logs of a running bot."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request

from bot import logs
from bot.cli import main


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_readyz_and_metrics(sim, bot):
    base = bot.url.removesuffix("/slack/events")
    assert get(base + "/healthz") == (200, '{"status":"ok"}')
    status, body = get(base + "/readyz")
    report = json.loads(body)
    assert status == 200 and report["database"]["ok"] and report["pools"]["demo"]["master"] == sim.url
    _, url = bot.command("vifs win7-kiosk")
    bot.reply_text(url)
    _, metrics = get(base + "/metrics")
    assert 'xenbot_commands_total{command="vifs",outcome="ok"}' in metrics
    assert 'xenbot_xapi_calls_total{error="",method="VIF.get_all_records",pool="demo"}' in metrics
    assert "xenbot_ack_seconds_bucket" in metrics
    sim.faults.drop("*", share=1.0)
    status, body = get(base + "/readyz")
    assert status == 503 and json.loads(body)["pools"]["demo"]["ok"] is False


def test_status_command(sim, tmp_path, capsys):
    config = tmp_path / "xenbot.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "x.db"}"\n'
        f'[[pools]]\nname = "demo"\nurl = "{sim.url}"\npassword = "{sim.password}"\n'
    )
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "pool demo: ok" in out and "ready" in out
    sim.faults.drop("*", share=1.0)
    assert main(["--config", str(config), "status", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["pools"]["demo"]["ok"] is False


def test_json_logs_carry_the_reference_and_hide_tokens():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs._ReferenceFilter())
    logger = logging.getLogger("xenbot.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs.reference("abcd1234"):
            logger.info("calling Slack with xoxb-1234-secret-token")
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["reference"] == "abcd1234"
    assert "secret-token" not in entry["message"] and "redacted" in entry["message"]
