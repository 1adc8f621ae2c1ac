"""``xenbot console`` and ``xenbot demo``: the Slack experience in a terminal.

For break-glass use when Slack is down, for demos, and for scripts: the same
router and renderers as Slack, with Block Kit printed as text and buttons
offered as numbered choices. When stdin is not a terminal it reads one command
per line and prints each answer, so it can be driven from a pipe.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from pydantic import SecretStr

from bot.domain.access import CONSOLE_CHANNEL
from bot.render.text import Choice, to_text
from bot.router import Actor, CommandRouter
from bot.settings import ConfigError, PoolSettings, Settings, load_settings

CONSOLE_USER = "console"
PROMPT = "xen> "


def register(subparsers: Any) -> None:
    console = subparsers.add_parser("console", help="run /xen commands in a terminal (break-glass, scripts)")
    console.add_argument("--as", dest="as_user", default=CONSOLE_USER, metavar="USER_ID",
                         help="Slack user id to act as (checked against operators/approvers)")
    console.set_defaults(func=run_console)
    demo = subparsers.add_parser("demo", help="simulated pool + SQLite in a temp folder + the console")
    demo.add_argument("--as", dest="as_user", default="U0DEMO", metavar="USER_ID")
    demo.add_argument("--latency-ms", type=float, default=0.0, help="simulated XAPI latency per call")
    demo.set_defaults(func=run_demo)


class Console:
    """Reads commands, prints replies, remembers the last replies' buttons."""

    def __init__(self, router: CommandRouter, user_id: str, out: TextIO, command: str = "/xen") -> None:
        self.router = router
        self.actor = Actor(user_id=user_id, channel_id=CONSOLE_CHANNEL, source="console")
        self.out = out
        self.command = command
        self.choices: dict[int, Choice] = {}

    def run_line(self, line: str) -> bool:
        """Handle one input line; False means the user asked to leave."""
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        if text in ("quit", "exit", r"\q"):
            return False
        if text.isdigit() and int(text) in self.choices:
            choice = self.choices[int(text)]
            self.out.write(f"> {choice.label}\n")
            reply = self.router.handle_action(self.actor, choice.action_id, choice.value)
        else:
            for prefix in (self.command + " ", self.command, "xen "):
                if text.startswith(prefix):
                    text = text[len(prefix):]
                    break
            reply = self.router.handle(self.actor, text)
        rendered, choices = to_text(reply, first_choice=1)
        self.choices = {c.number: c for c in choices}
        visibility = "" if reply.ephemeral else "(posted in channel)\n"
        self.out.write(visibility + rendered + "\n")
        if reply.file:
            self.out.write(reply.file.content)
        self.out.write("\n")
        self.out.flush()
        return True

    def loop(self, stdin: TextIO) -> int:
        interactive = stdin.isatty()
        if interactive:
            self.out.write(f"xenbot console as {self.actor.user_id}. Type 'help', a number to press a button, "
                           "or 'quit'.\n")
        while True:
            if interactive:
                self.out.write(PROMPT)
                self.out.flush()
            line = stdin.readline()
            if not line:
                return 0
            if not self.run_line(line):
                return 0


def run_console(args: argparse.Namespace) -> int:
    from bot.wiring import build

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return 2
    _quiet_logging(settings.log_level)
    services = build(settings)
    try:
        return Console(services.router, args.as_user, sys.stdout, settings.slack.command).loop(sys.stdin)
    finally:
        services.close()


def demo_settings(sim_url: str, folder: Path, password: str) -> Settings:
    """Embedded defaults: one simulated pool, a throwaway SQLite file, everyone may operate."""
    settings = Settings(pools=[PoolSettings(name="demo", url=sim_url, password=SecretStr(password))])
    return settings.model_copy(update={"database_url": f"sqlite:///{folder / 'xenbot-demo.db'}"})


def run_demo(args: argparse.Namespace) -> int:
    from bot.wiring import build
    from bot.xen.sim import Simulator

    _quiet_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="xenbot-demo-") as folder, Simulator.start(
        fixture="demo", latency_ms=args.latency_ms
    ) as sim:
        services = build(demo_settings(sim.url, Path(folder), sim.password))
        try:
            print(f"xenbot demo: simulated pool at {sim.url}, database in {folder}. Try: vms, vifs win7-kiosk, "
                  "pifs, offload status pool=demo", file=sys.stderr)
            return Console(services.router, args.as_user, sys.stdout).loop(sys.stdin)
        finally:
            services.close()


def _quiet_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
