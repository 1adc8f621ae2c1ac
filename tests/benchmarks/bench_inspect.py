"""Benchmark: inspection commands on a large pool that keeps changing, and right after a pool-wide apply.

Usage:  python tests/benchmarks/bench_inspect.py [--vms 5000] [--commands 90] [--churn-ms 200]

Runs on loopback, as separate processes: ``xenbot sim --fixture scale:N --latency-ms 2``, a
fake Slack Web API (tests/slack/fake_slack.py, in this process) and ``xenbot serve --http``
(default settings: watcher on, two apply processes). Then:

1. churn: a thread changes one VIF every ``--churn-ms`` through the stock XenAPI client on its
   own session (``add_to_other_config`` / ``remove_from_other_config`` of a key on VIFs taken
   in turn), as other tools do;
2. meanwhile it sends signed ``/xen vifs VM``, ``/xen pifs`` and ``/xen offload status
   pool=bench`` in turn, one at a time, each timed from the request to its answer arriving
   at its ``response_url``;
3. the churn stops; ``offload off pool=bench`` is requested and approved with signed
   requests, and once the card shows the final state one ``/xen vifs VM`` is timed the same way
   (``first_after_apply_ms``);
4. ``serve_rss_mb``: the serving process's resident set (not its apply processes') at the end.

Prints a summary, then a JSON last line ``{"vms", "p50_ms", "p99_ms", "first_after_apply_ms",
"serve_rss_mb"}`` (plus per-command medians and p99s, and the apply processes' RSS: the first,
about 13 MB, is multiprocessing's resource tracker).
Not part of the test run (pytest does not collect tests/benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere: the fakes live in tests/

import XenAPI

from tests.benchmarks.bench_ack import _final, _percentile, _serve, _simulator, _wait_until_started
from tests.slack.fake_slack import RESPONSE_URL_METHOD, FakeSlack
from tests.slack.fixtures import BOT_TOKEN, SIGNING_SECRET
from tests.slack.signing import block_actions, post_signed, slash_command

CHURN_KEY = "bench-churn"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=5000)
    parser.add_argument("--commands", type=int, default=90, help="commands timed under churn")
    parser.add_argument("--churn-ms", type=float, default=200.0, help="one VIF changed every this often")
    parser.add_argument("--gap-ms", type=float, default=150.0, help="pause between two commands")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="xenbot-bench-"))
    with ExitStack() as stack:
        sim_url, sim_password, _sim = stack.enter_context(_simulator(args.vms))
        fake = stack.enter_context(FakeSlack())
        config = folder / "xenbot.toml"
        config.write_text(
            f'database_url = "sqlite:///{folder / "bench.db"}"\nlog_level = "WARNING"\n'
            f'[[pools]]\nname = "bench"\nurl = "{sim_url}"\npassword = "{sim_password}"\n'
            f'[slack]\nbot_token = "{BOT_TOKEN}"\nsigning_secret = "{SIGNING_SECRET}"\napi_url = "{fake.base_url}"\n'
            f'approvers = ["U0LEAD"]\n'
        )
        started = time.monotonic()
        port, serve = stack.enter_context(_serve(config))
        _wait_until_started([serve.pid], timeout=180)
        print(f"serve started and settled in {time.monotonic() - started:.1f} s", flush=True)
        url = f"http://127.0.0.1:{port}/slack/events"

        from bot.xen.sim.fixtures import scale_fixture

        vm = scale_fixture(args.vms)["vms"][len(scale_fixture(args.vms)["vms"]) // 2]["name"]
        commands = [f"vifs {vm}", "pifs", "offload status pool=bench"]
        timed(fake, url, commands[0])  # the first answer of a process pays imports and caches

        stop = threading.Event()
        churner = threading.Thread(target=churn, args=(sim_url, sim_password, args.churn_ms / 1000, stop))
        churner.start()
        time.sleep(1.0)  # let the churn reach its pace
        per_command: dict[str, list[float]] = {c: [] for c in commands}
        try:
            for i in range(args.commands):
                text = commands[i % len(commands)]
                per_command[text].append(timed(fake, url, text))
                time.sleep(args.gap_ms / 1000)
        finally:
            stop.set()
            churner.join()
        latencies = sorted(ms for values in per_command.values() for ms in values)

        first_after = apply_then_time(fake, url, f"vifs {vm}")
        serve_rss, children_rss = rss_mb(serve.pid), [rss_mb(pid) for pid in children(serve.pid)]

    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    medians = {text: round(statistics.median(values), 1) for text, values in per_command.items()}
    worst = {text: round(_percentile(sorted(values), 99), 1) for text, values in per_command.items()}
    print(f"{len(latencies)} commands under churn (one VIF every {args.churn_ms:.0f} ms) on {args.vms} VMs: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms; medians {medians}; p99 {worst}")
    print(f"first command after a pool-wide apply: {first_after:.1f} ms")
    print(f"RSS: serve {serve_rss:.0f} MB, apply processes {[round(r) for r in children_rss]} MB "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(json.dumps({"vms": args.vms, "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
                      "first_after_apply_ms": round(first_after, 1), "serve_rss_mb": round(serve_rss, 1),
                      "apply_rss_mb": [round(r, 1) for r in children_rss], "medians_ms": medians,
                      "p99_by_command_ms": worst}))
    return 0


def timed(fake: FakeSlack, url: str, text: str, timeout: float = 60.0) -> float:
    """Milliseconds from sending a signed ``/xen text`` to its answer arriving at its response_url."""
    response_url = fake.response_url()
    path = urlsplit(response_url).path
    body = slash_command(text, response_url=response_url)
    sent = time.time()
    status, _headers, _body = post_signed(url, body, SIGNING_SECRET)
    assert status == 200, f"/xen {text}: HTTP {status}"
    deadline = time.monotonic() + timeout
    while True:
        answers = [c for c in fake.calls(RESPONSE_URL_METHOD) if c.path == path]
        if answers:
            return (answers[0].time - sent) * 1000
        assert time.monotonic() < deadline, f"/xen {text}: no answer in {timeout:.0f} s"
        time.sleep(0.002)


def churn(url: str, password: str, every: float, stop: threading.Event) -> None:
    """One VIF changed every ``every`` seconds, as another tool would, until ``stop``."""
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", password, "2.0", "bench-churn")
    x: Any = session.xenapi
    vifs = x.VIF.get_all()
    added: set[str] = set()
    n = 0
    try:
        while not stop.wait(every):
            ref = vifs[(n * 7919) % len(vifs)]
            n += 1
            if ref in added:
                x.VIF.remove_from_other_config(ref, CHURN_KEY)
                added.discard(ref)
            else:
                x.VIF.add_to_other_config(ref, CHURN_KEY, str(n))
                added.add(ref)
    finally:
        session.xenapi.session.logout()


def apply_then_time(fake: FakeSlack, url: str, text: str) -> float:
    """Request and approve ``offload off pool=bench``; once the card is final, time ``text``."""
    post_signed(url, slash_command("offload off pool=bench", user_id="U0OPS",
                                   response_url=fake.response_url()), SIGNING_SECRET)
    card = fake.wait_for("chat.postMessage", predicate=lambda c: "Change #1:" in str(c.args.get("text")),
                         timeout=300)[-1]
    post_signed(url, block_actions("xenbot_approve_change", "1", user_id="U0LEAD",
                                   response_url=fake.response_url()), SIGNING_SECRET)
    ts = card.response["ts"]
    fake.wait_for("chat.update", predicate=lambda c: c.args.get("ts") == ts and _final(str(c.args.get("text", ""))),
                  timeout=600)
    return timed(fake, url, text)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    sys.exit(main())
