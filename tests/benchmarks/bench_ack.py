"""Benchmark: ack latency of `xenbot serve --http` under concurrent signed slash commands,
while a pool-wide offload change is being applied.

Usage:  python tests/benchmarks/bench_ack.py [--requests 500] [--concurrency 50] [--vms 500]
                                             [--keepalive] [--replicas 2 --database-url postgresql://...
                                             [--balancer haproxy|python]]

Everything runs on loopback: a `xenbot sim --fixture scale:N` process, a fake Slack Web API
(tests/slack/fake_slack.py), and `xenbot serve --http` as separate processes — with
`--replicas N`, N of them on one PostgreSQL database behind a round-robin load balancer:
HAProxy in HTTP mode when it is installed (Debian: apt-get install haproxy), else the tests'
Python TCP proxy (tests/tcp_proxy.py), whose own GIL then shows in the figures. The script
requests `offload off pool=bench`, approves it with a signed click, and while it applies sends
a bounded number of signed `/xen vifs` commands, `--concurrency` at a time, measuring the time
until each HTTP ack. The commands are sent from
a child process on one asyncio loop, each signed just before it goes out, so the client's own
work does not share a GIL with the fake Slack server. Every command's answer is then awaited
at its response_url (up to `--answer-timeout` seconds). `--keepalive` reuses one connection
per client, as a load balancer's backend pool does; without it every command opens a new
connection, as Slack's own requests may.

Prints ack p50/p99 and errors, the server's own mean time per ack (from /metrics), answer
latency, and the CPU seconds each process used; the last line is JSON.
Not part of the test run (pytest does not collect tests/benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere: the fakes live in tests/

from tests.slack.fake_slack import RESPONSE_URL_METHOD, FakeSlack
from tests.slack.fixtures import BOT_TOKEN, SIGNING_SECRET
from tests.slack.signing import FORM_CONTENT_TYPE, block_actions, post_signed, sign, slash_command
from tests.tcp_proxy import TcpProxy

SIM_LINE = re.compile(r"at (http://\S+) \(user (\S+), password (\S+)\)")
SERVE_LINE = re.compile(r"at http://[^:]+:(\d+)/slack/events")
TICKS = os.sysconf("SC_CLK_TCK")
HAPROXY = shutil.which("haproxy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--answer-timeout", type=float, default=120, help="seconds to wait for every answer")
    parser.add_argument("--keepalive", action="store_true", help="one persistent connection per client thread")
    parser.add_argument("--replicas", type=int, default=1, help="serve processes behind a load balancer")
    parser.add_argument("--database-url", help="PostgreSQL server for --replicas > 1 (a fresh database is made)")
    parser.add_argument("--balancer", choices=["haproxy", "python"], default="haproxy" if HAPROXY else "python",
                        help="in front of --replicas: HAProxy (the default when installed) or the tests' TCP proxy")
    args = parser.parse_args()
    if args.balancer == "haproxy" and not HAPROXY:
        parser.error("--balancer haproxy: haproxy is not on PATH (Debian: apt-get install haproxy)")
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
        _wait_until_started([process.pid for _, process in serves])
        haproxy_pid = None
        if args.replicas > 1:
            ports = [port for port, _ in serves]
            if args.balancer == "haproxy":
                balancer_port, haproxy_pid = stack.enter_context(_haproxy(ports, folder))
            else:
                balancer_port = stack.enter_context(TcpProxy(*[("127.0.0.1", port) for port in ports])).port
            url = f"http://127.0.0.1:{balancer_port}/slack/events"
        else:
            url = f"http://127.0.0.1:{serves[0][0]}/slack/events"

        post_signed(url, slash_command("offload off pool=bench", user_id="U0OPS",
                                       response_url=fake.response_url()), SIGNING_SECRET)
        fake.wait_for("chat.postMessage", timeout=60)
        post_signed(url, block_actions("xenbot_approve_change", "1", user_id="U0LEAD",
                                       response_url=fake.response_url()), SIGNING_SECRET)
        # The approval's answer says the apply has started (in an apply process); whether it was
        # still running while the commands were sent is checked against the card's final update.
        fake.wait_for("response_url", predicate=lambda c: "applying it now" in str(c.body), timeout=60)
        before = {"sim": _cpu(sim.pid), **{f"serve{i}": _cpu(p.pid, False) for i, (_, p) in enumerate(serves)},
                  **{f"serve{i}_applies": _cpu(p.pid) - _cpu(p.pid, False) for i, (_, p) in enumerate(serves)}}
        bench_before = time.process_time()
        haproxy_before = _cpu(haproxy_pid) if haproxy_pid else 0.0

        from bot.xen.sim.fixtures import scale_fixture

        vm = scale_fixture(args.vms)["vms"][0]["name"]  # a VM that exists: the answer is a real listing
        bodies = [slash_command(f"vifs {vm}", response_url=fake.response_url()) for _ in range(args.requests)]
        acks_before = _ack_histogram(url)
        results, wall, client_cpu = _drive_from_child(url, bodies, args.concurrency, args.keepalive)
        cpu = {name: round(_cpu_of(name, sim, serves) - used, 1) for name, used in before.items()}
        cpu["load_client"] = round(client_cpu, 1)
        if haproxy_pid:
            cpu["haproxy"] = round(_cpu(haproxy_pid) - haproxy_before, 1)
        in_process = "fake_slack" if haproxy_pid or args.replicas == 1 else "fake_slack+balancer"
        cpu[in_process] = round(time.process_time() - bench_before, 1)
        acks_after = _ack_histogram(url)
        answers = _answer_times(fake, bodies, [started for started, _, _ in results], timeout=args.answer_timeout)
        finished = [c.time for c in fake.calls("chat.update") if _final(str(c.args.get("text", "")))]
        applying = not finished or min(finished) > min(started for started, _, _ in results)

    latencies = sorted((ended - started) * 1000 for started, ended, _ in results)
    errors = sum(1 for _, _, status in results if status != 200)
    if errors:
        print("statuses:", dict(Counter(status for _, _, status in results)))
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    server_ms = _mean_ms(acks_before, acks_after)
    answer_ms = sorted(answers)
    balanced = f" behind {args.balancer}" if args.replicas > 1 else ""
    print(f"{len(results)} signed commands, {args.concurrency} at a time, {args.replicas} replica(s){balanced}, "
          f"{'keep-alive' if args.keepalive else 'a new connection each'}, in {wall:.1f} s "
          f"({len(results) / wall:.0f}/s); pool-wide apply {'was running' if applying else 'was not running'}")
    print(f"ack latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms, errors {errors}")
    print(f"server-side mean time per ack {server_ms:.1f} ms (xenbot_ack_seconds)")
    print(f"answered {len(answer_ms)} of {len(results)} via response_url; time from send to answer "
          f"p50 {_percentile(answer_ms, 50):.0f} ms, p99 {_percentile(answer_ms, 99):.0f} ms")
    print(f"CPU seconds used meanwhile: {cpu} (on {os.cpu_count()} cores)")
    print(json.dumps({"requests": len(results), "concurrency": args.concurrency, "replicas": args.replicas,
                      "balancer": args.balancer if args.replicas > 1 else None,
                      "keepalive": args.keepalive, "per_second": round(len(results) / wall),
                      "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "errors": errors,
                      "server_mean_ms": _rounded(server_ms, 1), "answered": len(answer_ms),
                      "answer_p50_ms": _rounded(_percentile(answer_ms, 50)),
                      "answer_p99_ms": _rounded(_percentile(answer_ms, 99)),
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


def _wait_until_started(pids: list[int], quiet_share: float = 0.05, timeout: float = 60.0) -> None:
    """Wait until the apply processes are done starting too (imports, services): seconds of CPU
    after serve prints its address. The benchmark measures a running bot during an apply, not a
    bot still starting up."""
    deadline = time.monotonic() + timeout
    used = sum(_cpu(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(_cpu(pid) for pid in pids)
        if now - used < quiet_share * 0.5 * len(pids):
            return
        used = now
    print(f"warning: serve was still busy starting after {timeout:.0f} s; measuring anyway")


@contextmanager
def _haproxy(ports: list[int], folder: Path) -> Iterator[tuple[int, int]]:
    """HAProxy in HTTP mode, round-robin over the replicas, reusing its connections to them, as
    a production balancer would; yields its port and pid. Unlike TcpProxy it is not Python in
    this process: the figures are the replicas', not the balancer's."""
    with socket.socket() as probe:  # a free port; HAProxy binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = folder / "haproxy.cfg"
    servers = "\n".join(f"  server xenbot{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    config.write_text(
        "global\n  maxconn 4096\n  nbthread 1\n"
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
        f"frontend slack\n  bind 127.0.0.1:{port}\n  default_backend xenbot\n"
        f"backend xenbot\n  balance roundrobin\n  http-reuse always\n{servers}\n"
    )
    assert HAPROXY is not None
    process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stderr=open(folder / "haproxy.log", "a"))  # noqa: SIM115
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.05)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)


def _percentile(values: list[float], percent: int) -> float:
    if not values:
        return float("nan")
    return values[max(0, -(-len(values) * percent // 100) - 1)]


def _final(card_text: str) -> bool:
    """A change card's text once the apply is over (bot/render/changes.py)."""
    return card_text.endswith(("— applied", "— partially failed", "— failed"))


def _rounded(value: float, digits: int = 0) -> float | None:
    return None if value != value else round(value, digits)  # NaN (nothing measured) becomes null


def _ack_histogram(url: str) -> tuple[float, float]:
    """(sum, count) of the serving replicas' ``xenbot_ack_seconds``, read from ``/metrics``."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    samples = re.findall(r"^(xenbot_ack_seconds_(?:sum|count)) (\S+)$", text, re.M)
    values = {name: float(value) for name, value in samples}
    return values.get("xenbot_ack_seconds_sum", 0.0), values.get("xenbot_ack_seconds_count", 0.0)


def _mean_ms(before: tuple[float, float], after: tuple[float, float]) -> float:
    count = after[1] - before[1]
    return (after[0] - before[0]) / count * 1000 if count else float("nan")


def _answer_times(fake: FakeSlack, bodies: list[bytes], sent: list[float], timeout: float) -> list[float]:
    """Milliseconds from sending each command to its answer arriving at its response_url."""
    paths = [urlsplit(parse_qs(body.decode())["response_url"][0]).path for body in bodies]
    deadline = time.monotonic() + timeout
    while True:
        arrived = {call.path: call.time for call in fake.calls(RESPONSE_URL_METHOD)}
        if all(path in arrived for path in paths) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return [(arrived[path] - started) * 1000 for path, started in zip(paths, sent, strict=True) if path in arrived]


def _drive_from_child(
    url: str, bodies: list[bytes], concurrency: int, keepalive: bool
) -> tuple[list[tuple[float, float, int]], float, float]:
    """Send the commands from a process of its own, so the load generator's work does not share
    a GIL with the fake Slack server that receives the answers; returns its timings and CPU."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_drive, (url, bodies, concurrency, keepalive))


def _drive(
    url: str, bodies: list[bytes], concurrency: int, keepalive: bool
) -> tuple[list[tuple[float, float, int]], float, float]:
    """``concurrency`` connections on one event loop, each sending its next command as soon
    as the previous one is acked: cheap enough that the figures are the server's, not ours.
    Each body is signed just before it is sent, as Slack does."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    results: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * len(bodies)
    todo = iter(enumerate(bodies))

    def request(body: bytes) -> bytes:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {FORM_CONTENT_TYPE}",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in sign(body, SIGNING_SECRET).items())]
        if not keepalive:
            head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def status_of(reader: asyncio.StreamReader) -> int:
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        return status

    async def client() -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for index, body in todo:
            started, status = time.time(), 0
            for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
                try:
                    if streams is None:
                        streams = await asyncio.open_connection(host, port)
                    streams[1].write(request(body))
                    status = await asyncio.wait_for(status_of(streams[0]), timeout=10)
                    break
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    if streams is not None:
                        streams[1].close()
                    streams = None
                    if not keepalive or attempt == 2:
                        break
            results[index] = (started, time.time(), status)
            if not keepalive and streams is not None:
                streams[1].close()
                streams = None

    async def run() -> None:
        await asyncio.gather(*(client() for _ in range(concurrency)))

    # The measuring process must not pause on its own: a garbage collection here would stretch
    # every ack in flight. What it allocates for one bounded run is small, so collection waits.
    gc.collect()
    gc.disable()
    try:
        cpu_before, began = time.process_time(), time.perf_counter()
        asyncio.run(run())
        return results, time.perf_counter() - began, time.process_time() - cpu_before
    finally:
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
