"""Benchmark: ack latency of `xenbot serve --http` under concurrent signed slash commands,
while a pool-wide offload change is being applied.

Usage:  python tests/benchmarks/bench_ack.py [--requests 500] [--concurrency 50] [--vms 500]
                                             [--keepalive] [--replicas 2 --database-url postgresql://...]

Everything runs on loopback: a `xenbot sim --fixture scale:N` process, a fake Slack Web API
(tests/slack/fake_slack.py), and `xenbot serve --http` as separate processes — with
`--replicas N`, N of them on one PostgreSQL database behind a round-robin TCP load balancer
(tests/tcp_proxy.py). The script requests `offload off pool=bench`, approves it with a signed
click, and while it applies sends a bounded number of signed `/xen vifs` commands,
`--concurrency` at a time, measuring the time until each HTTP ack. Every command is also
answered (its work runs in the bot while the others are acked). `--keepalive` reuses one
connection per client thread, as a load balancer's backend pool does; without it every
command opens a new connection, as Slack's own requests may.

Prints p50/p99, errors and the CPU seconds each process used; the last line is JSON.
Not part of the test run (pytest does not collect tests/benchmarks).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere: the fakes live in tests/

from tests.slack.fake_slack import FakeSlack
from tests.slack.fixtures import BOT_TOKEN, SIGNING_SECRET
from tests.slack.signing import FORM_CONTENT_TYPE, block_actions, post_signed, sign, slash_command
from tests.tcp_proxy import TcpProxy

SIM_LINE = re.compile(r"at (http://\S+) \(user (\S+), password (\S+)\)")
SERVE_LINE = re.compile(r"at http://[^:]+:(\d+)/slack/events")
TICKS = os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--keepalive", action="store_true", help="one persistent connection per client thread")
    parser.add_argument("--replicas", type=int, default=1, help="serve processes behind a load balancer")
    parser.add_argument("--database-url", help="PostgreSQL server for --replicas > 1 (a fresh database is made)")
    args = parser.parse_args()
    if args.replicas > 1 and not args.database_url:
        parser.error("--replicas > 1 needs --database-url postgresql://... (replicas share one database)")
    folder = Path(tempfile.mkdtemp(prefix="xenbot-bench-"))
    with ExitStack() as stack:
        sim_url, sim_password, sim = stack.enter_context(_simulator(args.vms))
        fake = stack.enter_context(FakeSlack())
        database = stack.enter_context(_database(args.database_url, folder))
        config = folder / "xenbot.toml"
        config.write_text(
            f'database_url = "{database}"\nlog_level = "WARNING"\n'
            f'[[pools]]\nname = "bench"\nurl = "{sim_url}"\npassword = "{sim_password}"\n'
            f'[slack]\nbot_token = "{BOT_TOKEN}"\nsigning_secret = "{SIGNING_SECRET}"\napi_url = "{fake.base_url}"\n'
            f'approvers = ["U0LEAD"]\n[policies]\nwatch = false\n'
        )
        serves = [stack.enter_context(_serve(config)) for _ in range(args.replicas)]
        if args.replicas > 1:
            balancer = stack.enter_context(TcpProxy(*[("127.0.0.1", port) for port, _ in serves]))
            url = f"http://127.0.0.1:{balancer.port}/slack/events"
        else:
            url = f"http://127.0.0.1:{serves[0][0]}/slack/events"

        post_signed(url, slash_command("offload off pool=bench", user_id="U0OPS",
                                       response_url=fake.response_url()), SIGNING_SECRET)
        fake.wait_for("chat.postMessage", timeout=60)
        post_signed(url, block_actions("xenbot_approve_change", "1", user_id="U0LEAD",
                                       response_url=fake.response_url()), SIGNING_SECRET)
        # Wait until the apply is under way (in an apply process, which takes a moment to start).
        fake.wait_for("chat.update", predicate=lambda c: "applying" in str(c.args.get("text", "")), timeout=60)
        before = {"sim": _cpu(sim.pid), **{f"serve{i}": _cpu(p.pid, False) for i, (_, p) in enumerate(serves)},
                  **{f"serve{i}_applies": _cpu(p.pid) - _cpu(p.pid, False) for i, (_, p) in enumerate(serves)}}
        bench_before = time.process_time()

        send = _KeepAlive(url) if args.keepalive else _fresh(url)

        from bot.xen.sim.fixtures import scale_fixture

        vm = scale_fixture(args.vms)["vms"][0]["name"]  # a VM that exists: the answer is a real listing

        def one(_: int) -> tuple[float, int]:
            body = slash_command(f"vifs {vm}", response_url=fake.response_url())
            started = time.perf_counter()
            try:
                status = send(body)
            except OSError:
                status = 0
            return time.perf_counter() - started, status

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - began
        cpu = {name: round(_cpu_of(name, sim, serves) - used, 1) for name, used in before.items()}
        cpu["bench+fake_slack+balancer"] = round(time.process_time() - bench_before, 1)
        applying = any("applying" in str(c.args.get("text", "")) for c in fake.calls("chat.update"))

    latencies = sorted(r[0] * 1000 for r in results)
    errors = sum(1 for r in results if r[1] != 200)
    if errors:
        print("statuses:", dict(Counter(r[1] for r in results)))
    p50 = statistics.median(latencies)
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(f"{len(results)} signed commands, {args.concurrency} at a time, {args.replicas} replica(s), "
          f"{'keep-alive' if args.keepalive else 'a new connection each'}, in {wall:.1f} s "
          f"({len(results) / wall:.0f}/s); pool-wide apply {'was running' if applying else 'was not running'}")
    print(f"ack latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms, errors {errors}")
    print(f"CPU seconds used meanwhile: {cpu} (on {os.cpu_count()} cores)")
    print(json.dumps({"requests": len(results), "concurrency": args.concurrency, "replicas": args.replicas,
                      "keepalive": args.keepalive, "per_second": round(len(results) / wall),
                      "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "errors": errors,
                      "apply_running": applying, "cpu_seconds": cpu}))
    return 0


def _cpu_of(name: str, sim: subprocess.Popen[str], serves: list[tuple[int, subprocess.Popen[str]]]) -> float:
    if name == "sim":
        return _cpu(sim.pid)
    pid = serves[int(name.removeprefix("serve").removesuffix("_applies"))][1].pid
    return _cpu(pid) - _cpu(pid, False) if name.endswith("_applies") else _cpu(pid, False)


def _cpu(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a running process and, by default, its children (apply processes)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # it exited meanwhile
        if stat.parent.name == str(pid) or (children and int(fields[1]) == pid):  # itself, or a child
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


@contextmanager
def _simulator(vms: int) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    sim = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sim", "--fixture", f"scale:{vms}", "--latency-ms", "2"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert sim.stdout is not None
        match = SIM_LINE.search(sim.stdout.readline())
        assert match, "simulator did not start"
        yield match.group(1), match.group(3), sim
    finally:
        sim.terminate()
        sim.wait(10)


@contextmanager
def _database(server: str | None, folder: Path) -> Iterator[str]:
    if not server:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(server).set(drivername="postgresql+psycopg")
    name = f"xenbot_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def _serve(config: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    serve = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "serve", "--http", "--host", "127.0.0.1",
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=open(config.parent / "serve.log", "a"), text=True,  # noqa: SIM115
    )
    try:
        assert serve.stdout is not None
        port = SERVE_LINE.search(serve.stdout.readline())
        assert port, "serve did not start"
        yield int(port.group(1)), serve
    finally:
        serve.terminate()
        serve.wait(60)


def _fresh(url: str):  # type: ignore[no-untyped-def]
    def send(body: bytes) -> int:
        status, _headers, _body = post_signed(url, body, SIGNING_SECRET, timeout=10)
        return status

    return send


class _KeepAlive:
    """One HTTP/1.1 connection per client thread, reopened if the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.local = threading.local()

    def __call__(self, body: bytes) -> int:
        headers = {"Content-Type": FORM_CONTENT_TYPE, **sign(body, SIGNING_SECRET)}
        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                connection.request("POST", self.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


if __name__ == "__main__":
    sys.exit(main())
