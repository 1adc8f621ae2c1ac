"""``xenbot sim``: serve a simulated pool until interrupted.

Prints exactly one line — the master URL and credentials — so a script can start
it in the background and read where to connect, e.g.::

    xenbot-sim: serving pool "demo" at http://127.0.0.1:43117/ (user root, password xenroot)

then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from bot.xen.sim.api import DEFAULT_PASSWORD, DEFAULT_USER


def register(subparsers: Any) -> None:
    """Add the ``sim`` subcommand to the ``xenbot`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="serve a simulated XenServer/XCP-ng pool (XAPI XML-RPC) for tests and demos",
        description="Serve a simulated XAPI pool. Hosts listen on 127.0.0.1, 127.0.0.2, ... on one port "
        "(or one port per host if that is impossible).",
    )
    parser.add_argument("--fixture", default="demo",
                        help="'demo' (default), 'fragile', 'scale:N', or a path to a YAML/JSON fixture file")
    parser.add_argument("--host", default="127.0.0.1", help="IP of the first host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port shared by all hosts; 0 = pick a free one (default)")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="password of user root (default xenroot)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every XAPI call")
    parser.add_argument("--seed", type=int, default=0, help="seed for generated ids, MACs and fault draws")
    parser.add_argument("--guest-agent-delay-ms", type=float, default=5000.0,
                        help="after VM.start, how long VM.guest_metrics stays NULL until the guest agent "
                        "reports again, as on a real pool (default 5000; -1 = never)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the simulator, print its one line, serve until SIGINT/SIGTERM."""
    from bot.xen.sim.fixtures import FixtureError
    from bot.xen.sim.simulator import Simulator

    try:
        sim = Simulator.start(
            args.fixture,
            host=args.host,
            port=args.port,
            user=DEFAULT_USER,
            password=args.password,
            latency_ms=args.latency_ms,
            seed=args.seed,
            guest_agent_delay_ms=None if args.guest_agent_delay_ms < 0 else args.guest_agent_delay_ms,
        )
    except (FixtureError, OSError) as exc:
        print(f"xenbot-sim: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(
            f'xenbot-sim: serving pool "{sim.name}" at {sim.url} (user {sim.user}, password {sim.password})',
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
