"""``xenbot console`` and ``xenbot demo``: the Slack experience in a terminal.

For break-glass use when Slack is down, for demos, and for scripts: the same
router and renderers as Slack, with Block Kit printed as text and buttons
offered as numbered choices. When stdin is not a terminal it reads one command
per line and prints each answer, so it can be driven from a pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import SecretStr

from bot.domain.access import CONSOLE_CHANNEL
from bot.render.blocks import Reply, section
from bot.render.charts import Chart
from bot.render.ids import Action
from bot.render.text import Choice, to_text
from bot.settings import PoolSettings, Settings, SlackSettings, load_for_command

if TYPE_CHECKING:  # imported when used: `xenbot serve` must set up metrics before bot.router loads them
    from bot.router import CommandRouter

CONSOLE_USER = "console"
PROMPT = "xen> "
log = logging.getLogger(__name__)
DEMO_APPROVERS = ("U0DEMO", "U0LEAD")
HISTORY_FILE = Path.home() / ".xenbot_history"

CONSOLE_HELP = """Console
`approve ID` / `reject ID` / `cancel ID`
      the same as pressing Approve / Reject / Cancel on change ID's card (works from any console on the same database)
`as USER`
      act as another Slack user id from now on (e.g. `as U0LEAD` to approve your own request as a colleague)
`NUMBER`
      press the button shown as [NUMBER]
`quit`
      leave (a script's exit status is 1 when any command was refused or failed)"""

# Emoji shortcodes xenbot writes, as words a terminal can show (bot/render/text.py knows a few more).
_EMOJI_WORDS = {
    "large_green_circle": "(high)",
    "large_yellow_circle": "(medium)",
    "white_circle": "(low)",
    "rotating_light": "!!",
    "information_source": "i",
    "shield": "policy:",
    "repeat": "again:",
    "mag": "diagnosis:",
    "mute": "muted:",
}
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")
_CHANNEL = re.compile(r"<#([A-Za-z0-9_-]+)(?:\|([^>]*))?>")
_MENTION = re.compile(r"<@([A-Za-z0-9]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<(https?://[^|>]+)(?:\|([^>]*))?>")


def for_terminal(text: str) -> str:
    """Slack mrkdwn that bot/render/text.py leaves as it is, as a person reads it in a terminal.

    Channels and mentions become ``#name`` / ``@name`` (the label when Slack markup carries one,
    else the id: a console has no directory to look names up in); links become ``label (url)``;
    the emoji shortcodes xenbot writes become words. Only known shortcodes are replaced, so
    MAC addresses and times (``b2:5e:...``) are left alone."""
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _MENTION.sub(lambda m: "@" + (m.group(2) or m.group(1)), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    text = _SHORTCODE.sub(lambda m: _EMOJI_WORDS.get(m.group(1), m.group(0)), text)
    return text.replace("<!here>", "@here").replace("<!channel>", "@channel")


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
        thread = f" (in the thread of message {_number(thread_ts)})" if thread_ts else ""
        where = f"── posted in #{channel}{thread}, message {_number(ts)} ──"
        self._print(where, reply)
        return ts

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        self._print(f"── message {_number(ts)} in #{channel}, updated ──", reply)

    def upload(self, channel: str, chart: Chart, thread_ts: str | None = None, *, private_to: str | None = None) -> str:
        """A chart is saved as a PNG file (in the system's temp folder) and its path printed."""
        folder = Path(tempfile.gettempdir()) / "xenbot-charts"
        folder.mkdir(exist_ok=True)
        path = folder / chart.filename
        path.write_bytes(chart.png)
        with self._lock:
            self.out.write(f"── chart for #{channel}: {chart.title} → {path} ──\n\n")
            self.out.flush()
        return f"saved as {path}"

    def _print(self, where: str, reply: Reply) -> None:
        console = self.console
        first = (max(console.choices, default=0) + 1) if console else 1
        text, choices = to_text(reply, first_choice=first)
        if console:
            console.choices.update({c.number: c for c in choices})
        with self._lock:
            self.out.write(f"{where}\n{for_terminal(text)}\n\n")
            self.out.flush()


def _number(ts: str) -> str:
    """The console's message numbers are its ts values' whole part (``3.000000`` → ``3``)."""
    return ts.split(".", 1)[0]


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
        self.failed = False  # any command refused or failed: a script's exit status
        if messenger is not None:
            messenger.console = self

    def run_line(self, line: str) -> bool:
        """Handle one input line; False means the user asked to leave."""
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        if text in ("quit", "exit", r"\q"):
            return False
        words = text.split()
        if words[0] == "as":
            return self._act_as(words[1:])
        if words[0] in _CARD_BUTTONS:
            if len(words) != 2:
                self._say(f"Usage: {words[0]} ID (a change id such as 12)", failed=True)
                return True
            self._answer(self.router.handle_action(self.actor, _CARD_BUTTONS[words[0]], words[1].lstrip("#")))
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
            if text.split()[:1] == ["help"] and not reply.error and len(text.split()) == 1:
                reply = replace(reply, blocks=[*reply.blocks, section(CONSOLE_HELP)])
        self._answer(reply)
        return True

    def _act_as(self, args: list[str]) -> bool:
        if len(args) != 1:
            self._say("Usage: as USER (a Slack user id such as U0LEAD)", failed=True)
            return True
        from bot.router import Actor

        self.actor = Actor(user_id=args[0], channel_id=CONSOLE_CHANNEL, source="console")
        self._say(f"now acting as {args[0]}")
        return True

    def _say(self, text: str, failed: bool = False) -> None:
        self.failed = self.failed or failed
        self.out.write(text + "\n\n")
        self.out.flush()

    def _answer(self, reply: Reply) -> None:
        self.failed = self.failed or reply.error
        rendered, choices = to_text(reply, first_choice=max(self.choices, default=0) + 1)
        self.choices.update({c.number: c for c in choices})
        visibility = "" if reply.ephemeral else "(posted in channel)\n"
        self.out.write(visibility + for_terminal(rendered) + "\n")
        if reply.file:
            self.out.write(reply.file.content)
        self.out.write("\n")
        self.out.flush()

    def loop(self, stdin: TextIO) -> int:
        """Run until end of input or ``quit``.

        Interactive (a terminal): line editing and history through readline, and the exit
        status is 0. Scripted (a pipe): the exit status is 1 when any command was refused or
        failed, so a script can tell ``approve 3`` by the wrong person from a success."""
        interactive = stdin.isatty()
        if interactive:
            self.out.write(f"xenbot console as {self.actor.user_id}. Type 'help', a number to press a button, "
                           "or 'quit'.\n")
            return self._interactive(stdin)
        while True:
            line = stdin.readline()
            if not line or not self.run_line(line):
                return 1 if self.failed else 0

    def _interactive(self, stdin: TextIO) -> int:
        history = _readline()
        try:
            while True:
                if stdin is sys.stdin:
                    try:
                        line = input(PROMPT)  # readline editing applies to input() on the real stdin
                    except EOFError:
                        return 0
                else:
                    self.out.write(PROMPT)
                    self.out.flush()
                    line = stdin.readline()
                    if not line:
                        return 0
                if not self.run_line(line):
                    return 0
        finally:
            if history is not None:
                history()


_CARD_BUTTONS = {"approve": Action.APPROVE, "reject": Action.REJECT, "cancel": Action.CANCEL}


def _readline() -> Callable[[], None] | None:
    """Turn on line editing and history (stdlib readline); returns the function that saves it.

    Missing readline (some builds) only means no editing; the history file is best effort."""
    try:
        import readline
    except ImportError:  # pragma: no cover - platform without GNU readline / libedit
        return None
    from bot.domain.commands import COMMANDS

    words = sorted({*COMMANDS, *_CARD_BUTTONS, "as", "quit"})

    def complete(text: str, state: int) -> str | None:
        """Tab completes command names (``offload off``, ``approve`` ...) from the line's start."""
        line = readline.get_line_buffer().lstrip()
        matches = [w[len(line) - len(text):] for w in words if w.startswith(line)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" ")
    readline.parse_and_bind("tab: complete")
    with contextlib.suppress(OSError):
        readline.read_history_file(HISTORY_FILE)
    readline.set_history_length(1000)

    def save() -> None:
        try:
            readline.write_history_file(HISTORY_FILE)
        except OSError:
            log.debug("console history not saved to %s", HISTORY_FILE)

    return save


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
    slack = SlackSettings(approvers=list(DEMO_APPROVERS))
    settings = Settings(pools=[PoolSettings(name="demo", url=sim_url, password=SecretStr(password))], slack=slack)
    return settings.model_copy(update={"database_url": f"sqlite:///{folder / 'xenbot-demo.db'}"})


def demo_intro(user: str, sim_url: str, folder: str, password: str) -> str:
    """Who you are in the demo and how to approve your own request: self-approval is refused."""
    approvers = list(DEMO_APPROVERS)
    other = next(a for a in approvers if a != user) if user in approvers else approvers[-1]
    role = "an operator and an approver" if user in approvers else "an operator (not an approver)"
    return (
        f"xenbot demo: simulated pool 'demo' at {sim_url}, throwaway database in {folder}.\n"
        f"You are {user}, {role}. Approvers are {' and '.join(approvers)}; nobody approves their own request.\n"
        f"Try: vms · vifs win7-kiosk · offload off vm=win7-kiosk modes=tso\n"
        f"Then approve as a colleague: as {other} · approve 1 · as {user}. Type help for every command.\n"
        f"Policies are watched as in serve: set one (policy set pool=demo vifs modes=tx,sg), then clone a VM or\n"
        f"create a VIF with the stock XenAPI client at {sim_url} (user root, password {password}) and watch."
    )


def run_demo(args: argparse.Namespace) -> int:
    from bot.wiring import build, watchers
    from bot.xen.sim import Simulator

    _quiet_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="xenbot-demo-") as folder, Simulator.start(
        fixture="demo", latency_ms=args.latency_ms
    ) as sim:
        messenger = ConsoleMessenger(sys.stdout)
        services = build(demo_settings(sim.url, Path(folder), sim.password), messenger=messenger)
        services.policies.report_channel = "console"  # the demo's one channel (not a Slack id, so set here)
        pool_watchers = watchers(services)  # drift and enforcement react to outside changes, as in serve
        pool_watchers.start()
        try:
            print(demo_intro(args.as_user, sim.url, folder, sim.password), file=sys.stderr)
            return Console(services.router, args.as_user, sys.stdout, messenger=messenger).loop(sys.stdin)
        finally:
            pool_watchers.stop()
            services.close()


def _quiet_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
