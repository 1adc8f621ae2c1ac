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
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print("xenbot: the configuration has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(summarise(settings))
    return 0


def _secret(value: object) -> str:
    return "set (hidden)" if value is not None else "not set"


def summarise(settings: Settings) -> str:
    """A summary safe to paste into a ticket: secrets show only whether they are set."""
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
    ]
    return "\n".join(lines)


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
