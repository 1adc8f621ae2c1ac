"""Two real `xenbot serve --http` processes on one database: approvals and alerts hold across replicas."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from bot.db.models import ChangeRequest, ChangeResult
from bot.render.ids import Action
from tests.handlers.test_alert_flow import corpus
from tests.slack.fixtures import BOT_TOKEN, SIGNING_SECRET
from tests.slack.signing import block_actions, event_callback, post_signed, slash_command

PORT = re.compile(r":(\d+)/slack/events")


def start_replica(config: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", config, "serve", "--http", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = PORT.search(line)
    assert match, f"replica did not start: {line!r}"
    return process, f"http://127.0.0.1:{match.group(1)}/slack/events"


def _metric(endpoint: str, sample: str) -> float:
    """One sample from a replica's /metrics (0 when absent)."""
    with urllib.request.urlopen(endpoint.replace("/slack/events", "/metrics"), timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_replicas_apply_once_and_answer_an_alert_once(sim, fake_slack, db_url, tmp_path):
    config = tmp_path / "xenbot.toml"
    url = db_url.replace("postgresql://", "postgresql+psycopg://") if db_url.startswith("postgresql://") else db_url
    config.write_text(
        f'database_url = "{url}"\nlog_level = "WARNING"\n'
        f'[[pools]]\nname = "demo"\nurl = "{sim.url}"\npassword = "{sim.password}"\n'
        f'[slack]\nbot_token = "{BOT_TOKEN}"\nsigning_secret = "{SIGNING_SECRET}"\napi_url = "{fake_slack.base_url}"\n'
        'approvers = ["U0LEAD"]\napprovals_channel = "C0APPROVE"\nalert_channels = ["C0ALERTS"]\n'
        "[policies]\nwatch = false\n"
    )
    with ExitStack() as stack:
        replicas, pids = [], set()
        for _ in range(2):
            process, endpoint = start_replica(str(config))
            stack.callback(process.wait, 30)
            stack.callback(process.terminate)
            replicas.append(endpoint)
            pids.add(process.pid)
        a, b = replicas
        post_signed(a, slash_command("offload off pool=demo modes=tx", user_id="U0OPS",
                                     response_url=fake_slack.response_url()), SIGNING_SECRET)
        fake_slack.wait_for("chat.postMessage", timeout=20, predicate=lambda c: c.args.get("channel") == "C0APPROVE")
        sim.reset_call_counts()
        # The approver double-clicks, and the load balancer sends each click to a different replica.
        clicks = [
            threading.Thread(target=post_signed, args=(endpoint, block_actions(
                Action.APPROVE, "1", user_id="U0LEAD", channel_id="C0APPROVE",
                response_url=fake_slack.response_url()), SIGNING_SECRET))
            for endpoint in (a, b)
        ]
        for click in clicks:
            click.start()
        for click in clicks:
            click.join(10)
        engine = create_engine(url)
        deadline = time.monotonic() + 60
        while True:
            with Session(engine) as session:
                request = session.get(ChangeRequest, 1)
                if request is not None and request.state == "applied":
                    results = session.scalars(select(ChangeResult)).all()
                    writes = sum(len(i["changes"]) for i in request.plan["interfaces"])
                    break
            assert time.monotonic() < deadline, "change was not applied"
            time.sleep(0.2)
        counts = sim.call_counts()
        assert counts.get("VIF.add_to_other_config", 0) + counts.get("PIF.add_to_other_config", 0) == writes
        assert len(results) == len({r.interface_uuid for r in results})
        # It ran in an apply process (not in a serving process), which posted the summary itself.
        assert request.executor is not None and int(request.executor.split(":")[1]) not in pids
        fake_slack.wait_for("chat.postMessage", timeout=20, predicate=lambda c: c.args.get("thread_ts") is not None
                            and "Change #1 applied" in str(c.args.get("text")))
        # The apply process's counts reach /metrics (prometheus-client multiprocess mode).
        applied = sum(_metric(endpoint, 'xenbot_interfaces_changed_total{pool="demo",status="applied"}')
                      for endpoint in (a, b))
        assert applied == len(results)
        writes_seen = sum(_metric(endpoint, 'xenbot_xapi_calls_total{error="",method="VIF.add_to_other_config",'
                                            'pool="demo"}') for endpoint in (a, b))
        assert writes_seen == counts.get("VIF.add_to_other_config", 0)
        # ...and so do the serving process's own CPU and memory, which that mode does not export.
        assert _metric(a, "process_resident_memory_bytes") > 0
        assert _metric(a, "process_cpu_seconds_total") > 0
        # The same alert event delivered to both replicas: one diagnosis.
        event = corpus("zabbix_problem")
        for endpoint in (a, b):
            post_signed(endpoint, event_callback(event, event_id="EvReplica"), SIGNING_SECRET)
        fake_slack.wait_for("chat.postMessage", timeout=20, predicate=lambda c: c.args.get("thread_ts") == event["ts"])
        time.sleep(1.0)
        assert len([c for c in fake_slack.calls("chat.postMessage") if c.args.get("thread_ts") == event["ts"]]) == 1
        engine.dispose()
