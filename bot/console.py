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
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import SecretStr

from bot.domain.access import CONSOLE_CHANNEL
from bot.render.blocks import Reply
from bot.render.text import Choice, to_text
from bot.settings import PoolSettings, Settings, SlackSettings, load_for_command

if TYPE_CHECKING:  # imported when used: `xenbot serve` must set up metrics before bot.router loads them
    from bot.router import CommandRouter

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


class ConsoleMessenger:
    """Messages the services post (approval cards, progress, summaries), printed in the terminal.

    Their buttons join the console's numbered choices, so an approver at the
    console can press Approve just as in Slack.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.console: Console | None = None
        self._ts = 0
        self._lock = threading.Lock()

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str | None:
        with self._lock:
            self._ts += 1
            ts = f"{self._ts}.000000"
        where = f"[#{channel}{' thread ' + thread_ts if thread_ts else ''}]"
        self._print(where, reply)
        return ts

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        self._print(f"[#{channel} message {ts} updated]", reply)

    def _print(self, where: str, reply: Reply) -> None:
        console = self.console
        first = (max(console.choices, default=0) + 1) if console else 1
        text, choices = to_text(reply, first_choice=first)
        if console:
            console.choices.update({c.number: c for c in choices})
        with self._lock:
            self.out.write(f"{where}\n{text}\n\n")
            self.out.flush()


class Console:
    """Reads commands, prints replies, remembers the last replies' buttons."""

    def __init__(
        self,
        router: CommandRouter,
        user_id: str,
        out: TextIO,
        command: str = "/xen",
        messenger: ConsoleMessenger | None = None,
    ) -> None:
        self.router = router
        from bot.router import Actor

        self.actor = Actor(user_id=user_id, channel_id=CONSOLE_CHANNEL, source="console")
        self.out = out
        self.command = command
        self.choices: dict[int, Choice] = {}
        if messenger is not None:
            messenger.console = self

    def run_line(self, line: str) -> bool:
        """Handle one input line; False means the user asked to leave."""
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        if text in ("quit", "exit", r"\q"):
            return False
        if text.startswith("as "):
            user = text[3:].strip()
            from bot.router import Actor

            self.actor = Actor(user_id=user, channel_id=CONSOLE_CHANNEL, source="console")
            self.out.write(f"now acting as {user}\n\n")
            return True
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
        rendered, choices = to_text(reply, first_choice=max(self.choices, default=0) + 1)
        self.choices.update({c.number: c for c in choices})
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

    settings = load_for_command(args.config)
    if settings is None:
        return 2
    _quiet_logging(settings.log_level)
    messenger = ConsoleMessenger(sys.stdout)
    services = build(settings, messenger=messenger)
    from bot.services.housekeeping import Housekeeper

    Housekeeper(services.changes, services.apply).run_once()
    try:
        console = Console(services.router, args.as_user, sys.stdout, settings.slack.command, messenger)
        return console.loop(sys.stdin)
    finally:
        services.close()


def demo_settings(sim_url: str, folder: Path, password: str) -> Settings:
    """Embedded defaults: one simulated pool, a throwaway SQLite file, everyone may operate.

    U0DEMO (the default console user) and U0LEAD may approve; self-approval stays refused,
    so the demo shows the real flow: request as U0DEMO, then ``as U0LEAD`` and approve.
    """
    slack = SlackSettings(approvers=["U0DEMO", "U0LEAD"])
    settings = Settings(pools=[PoolSettings(name="demo", url=sim_url, password=SecretStr(password))], slack=slack)
    return settings.model_copy(update={"database_url": f"sqlite:///{folder / 'xenbot-demo.db'}"})


def run_demo(args: argparse.Namespace) -> int:
    from bot.wiring import build
    from bot.xen.sim import Simulator

    _quiet_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="xenbot-demo-") as folder, Simulator.start(
        fixture="demo", latency_ms=args.latency_ms
    ) as sim:
        messenger = ConsoleMessenger(sys.stdout)
        services = build(demo_settings(sim.url, Path(folder), sim.password), messenger=messenger)
        try:
            print(f"xenbot demo: simulated pool at {sim.url}, database in {folder}. Try: vms, vifs win7-kiosk, "
                  "pifs, offload status pool=demo", file=sys.stderr)
            return Console(services.router, args.as_user, sys.stdout, messenger=messenger).loop(sys.stdin)
        finally:
            services.close()


def _quiet_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
