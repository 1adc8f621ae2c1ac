"""``xenbot config check``: validate the configuration and show what xenbot will use."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.logs import redact_url
from bot.settings import ConfigError, Settings, load_settings


def register(subparsers: Any) -> None:
    config = subparsers.add_parser("config", help="inspect the configuration")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate the config and print a redacted summary")
    check.add_argument(
        "--for", dest="mode", choices=[*MODES, "serve"], default="serve",
        help="exit 1 unless this mode has what it needs (default: serve, over either transport)",
    )
    check.set_defaults(func=run_check)


# What each way of running xenbot needs beyond a valid file; `serve` refuses to start without it.
MODES: dict[str, str] = {
    "demo": "xenbot demo",
    "console": "xenbot console",
    "socket": "xenbot serve (Socket Mode)",
    "http": "xenbot serve --http",
}


def missing_for(settings: Settings, mode: str) -> list[str]:
    """What ``mode`` (a key of :data:`MODES`) still needs, phrased as the fix; empty when ready."""
    if mode == "demo":
        return []  # its own simulated pool, a throw-away database, the console
    s = settings.slack
    missing = []
    if mode in ("socket", "http") and s.bot_token is None:
        missing.append("slack.bot_token (or SLACK_BOT_TOKEN) is required: the bot's xoxb- token")
    if mode == "http" and s.signing_secret is None:
        missing.append("slack.signing_secret (or SLACK_SIGNING_SECRET) is required in HTTP mode")
    if mode == "socket" and s.app_token is None:
        missing.append("slack.app_token (or SLACK_APP_TOKEN, xapp-…) is required for Socket Mode; or use --http")
    if not settings.pools:
        missing.append("no [[pools]] configured: xenbot has nothing to manage")
    return missing


def run_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print("xenbot: the configuration has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    problems = settings.long_poll_problems()
    if problems:
        print("xenbot: the configuration has problems:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(summarise(settings))
    print("ready for:")
    ready: dict[str, bool] = {}
    for mode, label in MODES.items():
        missing = missing_for(settings, mode)
        ready[mode] = not missing
        print(f"  {label + ':':<29} {'yes' if not missing else 'no, missing:'}")
        for item in missing:
            print(f"    - {item}")
    ok = ready["socket"] or ready["http"] if args.mode == "serve" else ready[args.mode]
    if not ok:
        wanted = "xenbot serve" if args.mode == "serve" else MODES[args.mode]
        print(f"xenbot: not ready for {wanted}: see what is missing above", file=sys.stderr)
        return 1
    return 0


def _secret(value: object) -> str:
    return "set (hidden)" if value is not None else "not set"


def summarise(settings: Settings) -> str:
    """A summary safe to paste into a ticket: secrets show only whether they are set."""
    key_file = settings.audit.key_file
    lines = [
        f"config file:        {settings.config_path or '(none: defaults and environment)'}",
        f"database_url:       {_redact_url(settings.database_url)}",
        f"pools:              {len(settings.pools) or 'none configured'}",
    ]
    for pool in settings.pools:
        password = "password_file " + str(pool.password_file) if pool.password_file else _secret(pool.password)
        tls = "verify" if pool.verify_tls else "NOT VERIFIED"
        if pool.url.startswith("http://"):
            tls = "none (http://)"
        lines.append(
            f"  - {pool.name}: {redact_url(pool.url)} user={pool.username} password={password} "
            f"tls={tls}{' ca=' + str(pool.ca_file) if pool.ca_file else ''} "
            f"max_concurrency={pool.max_concurrency}"
        )
    s = settings.slack
    transport = "socket mode" if s.app_token else ("http" if s.signing_secret else "not configured")
    lines += [
        f"slack transport:    {transport}",
        f"  bot_token:        {_secret(s.bot_token)}",
        f"  app_token:        {_secret(s.app_token)}",
        f"  signing_secret:   {_secret(s.signing_secret)}",
        f"  api_url:          {redact_url(s.api_url) if s.api_url else 'https://slack.com/api/ (default)'}",
        f"  command:          {s.command}",
        f"  operators:        {', '.join(s.operators) or 'everyone in allowed channels'}",
        f"  allowed_channels: {', '.join(s.allowed_channels) or 'any'}",
        f"  approvers:        {', '.join(s.approvers) or 'NOBODY (changes cannot be approved)'}",
        f"  approvals:        {s.required_approvals} distinct approver(s), "
        f"self-approval {'allowed' if s.allow_self_approval else 'refused'}, "
        f"expire after {s.approval_ttl_minutes} min, channel {s.approvals_channel or '(where asked)'}",
        f"  alert_channels:   {', '.join(s.alert_channels) or 'none'}",
        f"audit key:          {'key_file ' + str(key_file) if key_file else 'none (unkeyed hash chain)'}",
        f"audit anchors:      every {settings.audit.anchor_minutes:g} min to the log"
        f"{' and ' + settings.audit.channel if settings.audit.channel else ''}",
    ]
    return "\n".join(lines)


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
