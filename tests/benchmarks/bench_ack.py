"""Benchmark: ack latency of `xenbot serve --http` under concurrent signed slash commands,
while a pool-wide offload change is being applied.

Usage:  python tests/benchmarks/bench_ack.py [--requests 500] [--concurrency 50] [--vms 500]

Everything runs on loopback: a `xenbot sim --fixture scale:N` process, a fake Slack Web API
(tests/slack/fake_slack.py), and `xenbot serve --http` as a separate process. The script
requests `offload off pool=bench`, approves it with a signed click, and while it applies sends
a bounded number of signed `/xen vifs` commands, `--concurrency` at a time, measuring the
time until each HTTP ack. Prints p50/p99 and errors; the last line is JSON.
Not part of the test run (pytest does not collect tests/benchmarks).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere: the fakes live in tests/

from tests.slack.fake_slack import FakeSlack
from tests.slack.fixtures import BOT_TOKEN, SIGNING_SECRET
from tests.slack.signing import block_actions, post_signed, slash_command

SIM_LINE = re.compile(r"at (http://\S+) \(user (\S+), password (\S+)\)")
SERVE_LINE = re.compile(r"at http://[^:]+:(\d+)/slack/events")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--vms", type=int, default=500)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="xenbot-bench-"))
    sim = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sim", "--fixture", f"scale:{args.vms}", "--latency-ms", "2"],
        stdout=subprocess.PIPE, text=True,
    )
    assert sim.stdout is not None
    match = SIM_LINE.search(sim.stdout.readline())
    assert match, "simulator did not start"
    with FakeSlack() as fake:
        config = folder / "xenbot.toml"
        config.write_text(
            f'database_url = "sqlite:///{folder / "bench.db"}"\nlog_level = "WARNING"\n'
            f'[[pools]]\nname = "bench"\nurl = "{match.group(1)}"\npassword = "{match.group(3)}"\n'
            f'[slack]\nbot_token = "{BOT_TOKEN}"\nsigning_secret = "{SIGNING_SECRET}"\napi_url = "{fake.base_url}"\n'
            f'approvers = ["U0LEAD"]\n[policies]\nwatch = false\n'
        )
        serve = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "--config", str(config), "serve", "--http", "--host", "127.0.0.1",
             "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert serve.stdout is not None
            port = SERVE_LINE.search(serve.stdout.readline())
            assert port, "serve did not start"
            url = f"http://127.0.0.1:{port.group(1)}/slack/events"
            post_signed(url, slash_command("offload off pool=bench", user_id="U0OPS",
                                           response_url=fake.response_url()), SIGNING_SECRET)
            fake.wait_for("chat.postMessage", timeout=60)
            post_signed(url, block_actions("xenbot_approve_change", "1", user_id="U0LEAD",
                                           response_url=fake.response_url()), SIGNING_SECRET)
            time.sleep(0.5)  # let the apply start

            def one(_: int) -> tuple[float, int]:
                body = slash_command("vifs vm-0001", response_url=fake.response_url())
                started = time.perf_counter()
                status, _h, _b = post_signed(url, body, SIGNING_SECRET, timeout=10)
                return time.perf_counter() - started, status

            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                results = list(pool.map(one, range(args.requests)))
            wall = time.perf_counter() - began
            applying = any("applying" in str(c.args.get("text", "")) for c in fake.calls("chat.update"))
        finally:
            serve.terminate()
            serve.wait(60)
            sim.terminate()
            sim.wait(10)
    latencies = sorted(r[0] * 1000 for r in results)
    errors = sum(1 for r in results if r[1] != 200)
    if errors:
        from collections import Counter

        print("statuses:", dict(Counter(r[1] for r in results)))
    p50 = statistics.median(latencies)
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(f"{len(results)} signed commands, {args.concurrency} at a time, in {wall:.1f} s; "
          f"pool-wide apply {'was running' if applying else 'had not started or was already done'}")
    print(f"ack latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms, errors {errors}")
    print(json.dumps({"requests": len(results), "concurrency": args.concurrency, "p50_ms": round(p50, 1),
                      "p99_ms": round(p99, 1), "errors": errors, "apply_running": applying}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
