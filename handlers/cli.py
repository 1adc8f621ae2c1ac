"""``xenbot serve``: run the Slack app over Socket Mode (default) or HTTP."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

from bot.settings import Settings, load_for_command

if TYPE_CHECKING:
    from bot.wiring import Services
    from handlers.client import SlackNotReady

log = logging.getLogger(__name__)

SWITCH_INTERVAL_SECONDS = 0.001
WARM_UP_SECONDS = 20.0  # the longest start-up waits for the pools' first reads (Gateways.warm_up)


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
    s = settings.slack
    problems = []
    if s.bot_token is None:
        problems.append("slack.bot_token (or SLACK_BOT_TOKEN) is required: the bot's xoxb- token")
    if http and s.signing_secret is None:
        problems.append("slack.signing_secret (or SLACK_SIGNING_SECRET) is required in HTTP mode")
    if not http and s.app_token is None:
        problems.append("slack.app_token (or SLACK_APP_TOKEN, xapp-…) is required for Socket Mode; or use --http")
    if not settings.pools:
        problems.append("no [[pools]] configured: xenbot has nothing to manage")
    return problems


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
    from handlers.app import build_app
    from handlers.client import SlackNotReady, check_token, web_client
    from handlers.directory import GroupDirectory

    logs.configure(settings.log_level)
    from bot.wiring import build
    from handlers.messenger import SlackMessenger

    client = web_client(settings)
    try:
        check_token(client)
    except SlackNotReady as exc:
        return _refused(exc)
    directory = GroupDirectory(client)
    services = build(settings, members_of=directory.members_of, messenger=SlackMessenger(client))
    from handlers.work import WorkPool

    # Acks come from one event-loop thread (handlers/http_server.py) competing for the GIL with
    # the work threads; a shorter switch interval than the default 5 ms gets it back sooner
    # (bench_ack.py: p99 under load about 185 -> 145 ms), at a little throughput for the work.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    work = WorkPool()
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

            _finish_starting(services)  # before the port is bound: nothing queues meanwhile
            from handlers import alert_webhooks

            server = HttpServer(
                app, args.host, args.port, ready=lambda: readiness(services), routes=alert_webhooks.routes(services)
            )
            port = server.server_address[1]
            print(f"xenbot: serving Slack over HTTP at http://{args.host}:{port}/slack/events", flush=True)
            try:
                server.serve_forever()
            finally:
                server.server_close()
        else:
            from handlers.socket_mode import start_socket_mode

            assert settings.slack.app_token is not None
            if args.metrics_port:
                from bot.health import readiness
                from handlers.alert_webhooks import serve_metrics_port

                # /metrics, /healthz, /readyz and the alert webhooks (POST /alerts/...).
                serve_metrics_port(services, args.host, args.metrics_port, lambda: readiness(services))
            _finish_starting(services)
            print("xenbot: connecting to Slack over Socket Mode", flush=True)
            start_socket_mode(app, settings.slack.app_token.get_secret_value(), client)
    except KeyboardInterrupt:
        pass
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
