"""``xenbot serve``: run the Slack app over Socket Mode (default) or HTTP."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from bot.settings import Settings, load_for_command

if TYPE_CHECKING:
    from bot.wiring import Services
    from handlers.client import SlackNotReady

log = logging.getLogger(__name__)

SWITCH_INTERVAL_SECONDS = 0.001
WARM_UP_SECONDS = 20.0  # the longest start-up waits for the pools' first reads (Gateways.warm_up)
START_TRY_TIMEOUT_SECONDS = 5  # per start-up try to reach Slack (check_slack)


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the Slack app (Socket Mode, or --http)")
    serve.add_argument("--http", action="store_true", help="serve POST /slack/events instead of Socket Mode")
    serve.add_argument("--host", default="0.0.0.0", help="HTTP listen address (default 0.0.0.0)")  # noqa: S104
    serve.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000, 0 picks one)")
    serve.add_argument(
        "--metrics-port", type=int, default=9102, help="Prometheus /metrics port in Socket Mode (0: off; default 9102)"
    )
    serve.set_defaults(func=run_serve)


def _requirements(settings: Settings, http: bool) -> list[str]:
    from bot.config_cli import missing_for

    return missing_for(settings, "http" if http else "socket")


def run_serve(args: argparse.Namespace) -> int:
    settings = load_for_command(args.config)
    if settings is None:
        return 2
    problems = _requirements(settings, args.http)
    if problems:
        for problem in problems:
            print(f"config: {problem}", file=sys.stderr)
        return 2
    metrics_folder = None
    if settings.apply_processes:
        from bot.services.apply_process import share_metrics

        metrics_folder = share_metrics()  # before anything imports prometheus_client
    try:
        return _serve(args, settings)
    finally:
        if metrics_folder is not None:
            shutil.rmtree(metrics_folder, ignore_errors=True)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot import logs

    logs.configure(settings.log_level)
    # Listen first: a port in use is one line and exit 2, before Slack, the pools or the apply
    # processes are started (each of which would otherwise fail on its own, with tracebacks).
    try:
        listener = _listen(args)
    except OSError as exc:
        return _cannot_listen(args, exc)
    try:
        return _serve_listening(args, settings, listener)
    finally:
        if listener is not None:
            listener.close()


def _listen(args: argparse.Namespace) -> socket.socket | None:
    """Bind the HTTP port (HTTP mode) or the metrics port (Socket Mode); both listen once serving."""
    if args.http:
        from handlers.http_server import bind

        return bind(args.host, args.port)
    if args.metrics_port:
        from handlers.http_server import bind

        # Served once the services exist (handlers/alert_webhooks.py): /metrics, /healthz,
        # /readyz and the alert webhooks.
        return bind(args.host, args.metrics_port)
    return None


def _serve_listening(args: argparse.Namespace, settings: Settings, listener: socket.socket | None) -> int:
    from bot.db import audit
    from bot.wiring import build
    from handlers.app import build_app
    from handlers.client import SlackNotReady, web_client
    from handlers.directory import GroupDirectory
    from handlers.messenger import SlackMessenger

    client = web_client(settings)
    try:
        check_slack(settings)
    except SlackNotReady as exc:
        return _refused(exc)
    directory = GroupDirectory(client)
    services = build(settings, members_of=directory.members_of, messenger=SlackMessenger(client))
    with services.sessions() as session:
        key_problem = audit.check_key(session, settings.audit.key())
    if key_problem is not None:
        services.close()
        print(f"xenbot: {key_problem}", file=sys.stderr)
        return 2
    from handlers.work import WorkPool

    # Acks come from one event-loop thread (handlers/http_server.py) competing for the GIL with
    # the work threads; a shorter switch interval than the default 5 ms gets it back sooner
    # (bench_ack.py: p99 under load about 185 -> 145 ms), at a little throughput for the work.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    work = WorkPool.from_settings(settings.serving)
    app = build_app(services, client, work=work)
    apply_processes = None
    if settings.apply_processes:
        from bot.services.apply_process import ApplyProcesses
        from handlers.messenger import slack_messenger

        apply_processes = ApplyProcesses(settings, slack_messenger, settings.apply_processes)
        services.apply.runner = apply_processes.submit
        services.apply.recovery_runner = apply_processes.recover
    _stop_on_sigterm()
    status = 0
    from bot.services.housekeeping import Housekeeper

    housekeeper = Housekeeper(
        services.changes,
        services.apply,
        policies=services.policies,
        compliance_channel=settings.policies.compliance_channel,
        compliance_hour_utc=settings.policies.compliance_hour_utc,
        anchor_channel=settings.audit.channel,
        anchor_interval=settings.audit.anchor_minutes * 60,
    )
    housekeeper.start()
    from bot.wiring import watchers

    pool_watchers = watchers(services)
    if settings.policies.watch:
        pool_watchers.start()
    try:
        if args.http:
            from bot.health import readiness
            from handlers.http_server import HttpServer

            _finish_starting(services)  # bound but not listening yet: nothing queues meanwhile
            assert settings.slack.signing_secret is not None  # _requirements
            from handlers import alert_webhooks

            try:
                server = HttpServer(app, args.host, args.port, ready=lambda: readiness(services), sock=listener,
                                    signing_secret=settings.slack.signing_secret.get_secret_value(),
                                    limits=settings.serving, routes=alert_webhooks.routes(services))
            except OSError as exc:
                raise _ListenFailed(exc) from None
            port = server.server_address[1]
            print(f"xenbot: serving Slack over HTTP at http://{args.host}:{port}/slack/events", flush=True)
            try:
                server.serve_forever()
            finally:
                server.server_close()
        else:
            from handlers.socket_mode import start_socket_mode

            assert settings.slack.app_token is not None
            if listener is not None:
                from bot.health import readiness
                from handlers.alert_webhooks import serve_metrics_port

                serve_metrics_port(services, listener, lambda: readiness(services))
            _finish_starting(services)
            print("xenbot: connecting to Slack over Socket Mode", flush=True)
            start_socket_mode(app, settings.slack.app_token.get_secret_value(), client)
    except KeyboardInterrupt:
        pass
    except _ListenFailed as failed:  # another process took the port while we were starting
        status = _cannot_listen(args, failed.cause)
    except SlackNotReady as exc:
        status = _refused(exc)
    finally:
        work.shutdown()
        housekeeper.stop()
        pool_watchers.stop()
        if apply_processes is not None:
            apply_processes.close()
        services.close()
    return status


class _ListenFailed(Exception):
    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _cannot_listen(args: argparse.Namespace, exc: OSError) -> int:
    what = "HTTP" if args.http else "metrics"
    port = args.port if args.http else args.metrics_port
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    print(f"xenbot: cannot listen for {what} on {args.host}:{port}: {reason}", file=sys.stderr)
    return 2


def check_slack(settings: Settings, delays: Sequence[float] | None = None) -> None:
    """``check_token`` at start-up: one request and one log line per try, over the documented time.

    The serving client retries a failed connection itself (slack_sdk's retry handlers, with
    their own back-off) and slack_sdk logs each failure at ERROR: with Slack unreachable that
    made 42 lines over 47 s. This probe makes one request per try and keeps slack_sdk quiet;
    check_token paces the tries (START_RETRY_DELAYS, about 30 s) and logs one line for each."""
    from handlers.client import START_RETRY_DELAYS, check_token, web_client

    probe = web_client(settings)
    probe.retry_handlers = []
    probe.timeout = min(probe.timeout, START_TRY_TIMEOUT_SECONDS)  # a black-holed Slack: 6 tries x 5 s at most
    quiet = logging.getLogger("slack_sdk")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        check_token(probe, START_RETRY_DELAYS if delays is None else delays)
    finally:
        quiet.setLevel(level)


def _finish_starting(services: Services) -> None:
    """Read every pool once, then freeze what start-up left on the heap (bot/heap.py): the first
    commands find the pools read, and garbage collections no longer walk the imports."""
    from bot import heap

    for pool, outcome in services.gateways.warm_up(WARM_UP_SECONDS).items():
        if outcome == "read":
            log.info("pool %s: inventory read", pool)
        else:
            log.warning("pool %s: not read at start-up (%s); its first command will read it", pool, outcome)
    heap.settle()


def _refused(exc: SlackNotReady) -> int:
    print(f"xenbot: {exc}", file=sys.stderr)
    return 1 if exc.retryable else 2


def _stop_on_sigterm() -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
