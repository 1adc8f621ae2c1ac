"""The `xenbot` command line.

Each subcommand lives next to the code it drives and contributes a
``register(subparsers)`` function; this module only assembles them, so adding a
command never means editing a growing if/else here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order `xenbot --help` lists them.
_COMMAND_MODULES = (
    "bot.xen.sim.cli",
    "bot.config_cli",
    "bot.db.cli",
    "bot.console",
    "bot.health",
    "handlers.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xenbot",
        description="Slack chat-ops for XenServer / XCP-ng pools.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML config file (default: $XENBOT_CONFIG, else ./xenbot.toml when present)",
    )
    parser.add_argument("--version", action="version", version=f"xenbot {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    _accept_config_anywhere(parser)
    return parser


def _accept_config_anywhere(parser: argparse.ArgumentParser) -> None:
    """``xenbot status --config X`` as well as ``xenbot --config X status``.

    Each (sub)subcommand gets its own ``--config``; SUPPRESS as its default keeps a value given
    before the subcommand when none is given after it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in set(action.choices.values()):
                if not any("--config" in a.option_strings for a in subparser._actions):
                    subparser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                                           help="TOML config file (also accepted before the command)")
                _accept_config_anywhere(subparser)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xenbot")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
