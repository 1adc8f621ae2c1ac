"""Benchmark: pool-wide ``offload off``, the classic per-key loop versus xenbot's apply path.

Usage:  python tests/benchmarks/bench_offload.py [--vms 1000] [--latency-ms 2] [--concurrency 8]

Starts two ``xenbot sim --fixture scale:N --latency-ms L`` processes (identical pools) and
measures, in one run:

(a) baseline — what ``xe vif-param-set other-config:ethtool-<mode>=off`` loops do: for every
    interface and each of the six modes, ``remove_from_other_config`` + ``add_to_other_config``,
    sequentially, on one connection;
(b) xenbot — request, approve and apply the same pool-wide change on the second pool
    (timed from approval to the recorded outcome: re-plan from live state, bounded parallel
    writes, per-interface read-back, results and audit in the database);
(c) xenbot again on the now-compliant pool (must plan zero writes).

Prints a human summary, then one JSON line:
{"interfaces", "baseline_s", "xenbot_s", "speedup", "xenbot_calls", "lower_bound_s",
 "ratio_to_bound", "rerun_writes", "calls_per_interface", "peak_rss_mb"} where lower_bound_s =
writes needed x latency / concurrency, calls_per_interface = xenbot's XAPI calls during the apply
/ interfaces, and peak_rss_mb = this process's highest resident set while xenbot applied
(sampled every 20 ms from /proc/self/statm; the baseline's memory is freed before).
Not part of the test run (pytest does not collect tests/benchmarks).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import XenAPI
from pydantic import SecretStr
from sqlalchemy import select

from bot.db.models import ChangeRequest
from bot.domain.offload import VIF_MODES
from bot.services.changes import Scope
from bot.settings import PoolSettings, Settings, SlackSettings
from bot.wiring import build

LINE = re.compile(r'at (http://\S+) \(user (\S+), password (\S+)\)')


@contextmanager
def simulator(vms: int, latency_ms: float) -> Iterator[tuple[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sim", "--fixture", f"scale:{vms}", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = LINE.search(first)
        if not match:
            raise SystemExit(f"simulator did not start: {first!r}")
        yield match.group(1), match.group(3)
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def rss_sampler(every: float = 0.02) -> Iterator[list[float]]:
    """The highest resident set size (MB) of this process while the block runs."""
    page = os.sysconf("SC_PAGE_SIZE")
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while True:
            with open("/proc/self/statm") as statm:
                peak[0] = max(peak[0], int(statm.read().split()[1]) * page / 2**20)
            if done.wait(every):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def call_counts(url: str) -> dict[str, int]:
    return dict(xmlrpc.client.ServerProxy(url).sim.get_call_counts())


def reset_counts(url: str) -> None:
    xmlrpc.client.ServerProxy(url).sim.reset_call_counts()


def writes(counts: dict[str, int]) -> int:
    return sum(n for m, n in counts.items() if "_other_config" in m and not m.endswith("get_other_config"))


def baseline(url: str, password: str) -> tuple[float, int]:
    """The shell-script way, on one connection: remove + add per key per interface."""
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", password, "2.0", "bench")
    x = session.xenapi
    vms = x.VM.get_all_records()
    real = {r for r, v in vms.items() if not (v["is_a_template"] or v["is_a_snapshot"] or v["is_control_domain"])}
    vifs = [r for r, v in x.VIF.get_all_records().items() if v["VM"] in real]
    pifs = [r for r, p in x.PIF.get_all_records().items() if p["physical"]]
    started = time.perf_counter()
    for cls, refs in (("VIF", vifs), ("PIF", pifs)):
        api: Any = getattr(x, cls)
        for ref in refs:
            for mode in VIF_MODES:
                api.remove_from_other_config(ref, f"ethtool-{mode}")
                api.add_to_other_config(ref, f"ethtool-{mode}", "off")
    elapsed = time.perf_counter() - started
    session.xenapi.session.logout()
    return elapsed, len(vifs) + len(pifs)


def xenbot_apply(url: str, password: str, concurrency: int, folder: Path) -> dict[str, Any]:
    settings = Settings(
        pools=[PoolSettings(name="bench", url=url, password=SecretStr(password), max_concurrency=concurrency)],
        slack=SlackSettings(approvers=["U0LEAD"]),
    ).model_copy(update={"database_url": f"sqlite:///{folder / 'bench.db'}"})
    services = build(settings)
    try:
        services.changes.request(
            requester="U0OPS", channel=None, action="off", scope=Scope("pool", "bench"), modes_text=None, reason=None
        )
        with services.sessions() as session:
            request = session.scalars(select(ChangeRequest)).one()
            planned_writes = sum(
                1 if c["before"] is None or c["after"] is None else 2
                for i in request.plan["interfaces"]
                for c in i["changes"]
            )
            interfaces = len(request.plan["interfaces"])
        services.changes.approve("U0LEAD", request.id)
        reset_counts(url)
        with rss_sampler() as peak:
            started = time.perf_counter()
            final = services.apply.execute(request.id, "U0LEAD")
            elapsed = time.perf_counter() - started
        counts = call_counts(url)
        reset_counts(url)
        rerun_started = time.perf_counter()
        rerun = services.changes.request(
            requester="U0OPS", channel=None, action="off", scope=Scope("pool", "bench"), modes_text=None, reason=None
        )
        rerun_s = time.perf_counter() - rerun_started
        rerun_writes = writes(call_counts(url))
        return {
            "final": str(final),
            "seconds": elapsed,
            "calls": sum(counts.values()),
            "writes": writes(counts),
            "planned_writes": planned_writes,
            "interfaces": interfaces,
            "rerun_s": rerun_s,
            "rerun_writes": rerun_writes,
            "rerun_says": rerun.text,
            "peak_rss_mb": peak[0],
        }
    finally:
        services.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8, help="the pool's max_concurrency (default 8)")
    args = parser.parse_args()
    with simulator(args.vms, args.latency_ms) as (url_a, password_a):
        baseline_s, interfaces = baseline(url_a, password_a)
    gc.collect()
    print(f"baseline: {interfaces} interfaces x 6 modes, remove+add each, sequential: {baseline_s:.1f} s", flush=True)
    with simulator(args.vms, args.latency_ms) as (url_b, password_b), tempfile.TemporaryDirectory() as folder:
        result = xenbot_apply(url_b, password_b, args.concurrency, Path(folder))
    lower_bound = result["planned_writes"] * args.latency_ms / 1000.0 / args.concurrency
    print(
        f"xenbot:   {result['interfaces']} interfaces, {result['writes']} writes, {result['calls']} XAPI calls "
        f"in {result['seconds']:.2f} s ({result['final']}); lower bound {lower_bound:.2f} s",
        flush=True,
    )
    print(f"rerun:    {result['rerun_writes']} writes in {result['rerun_s']:.2f} s: {result['rerun_says']}", flush=True)
    figures = {
        "interfaces": result["interfaces"],
        "baseline_s": round(baseline_s, 3),
        "xenbot_s": round(result["seconds"], 3),
        "speedup": round(baseline_s / result["seconds"], 1),
        "xenbot_calls": result["calls"],
        "lower_bound_s": round(lower_bound, 3),
        "ratio_to_bound": round(result["seconds"] / lower_bound, 2),
        "rerun_writes": result["rerun_writes"],
        "calls_per_interface": round(result["calls"] / result["interfaces"], 2),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
