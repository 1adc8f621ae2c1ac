"""The ``/xen`` grammar: words, ``key=value`` options and quoted values.

Parsing is separate from running so that every malformed command gets the
usage of the subcommand the person was reaching for, in Slack and in the
console alike, before anything touches XAPI.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.domain.slack_text import unescape


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    options: frozenset[str] = frozenset()
    min_args: int = 0
    max_args: int = 0
    # At least one of these options must be given (e.g. a scope: vm=, host=, pool=).
    one_of: frozenset[str] = frozenset()
    section: str = "Inspect"


@dataclass(frozen=True, slots=True)
class Parsed:
    spec: CommandSpec
    args: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def text(self, separator: str = " ") -> str:
        """The free-text positional part, e.g. the filter of ``/xen vms sql``."""
        return separator.join(self.args)


class UsageError(ValueError):
    """Malformed command; carries the usage of the subcommand that was meant."""

    def __init__(self, message: str, spec: CommandSpec | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.spec = spec


SCOPE_OPTIONS = frozenset({"vm", "host", "pool", "vif", "pif"})

COMMANDS: dict[str, CommandSpec] = {
    s.name: s
    for s in (
        CommandSpec("help", "help [COMMAND]", "what xenbot can do", max_args=2),
        CommandSpec("pools", "pools", "configured pools, their master and whether they answer"),
        CommandSpec(
            "vms",
            "vms [pool=NAME] [TEXT]",
            "VMs with power state, OS, PV drivers and VIF count",
            options=frozenset({"pool"}),
            max_args=3,
        ),
        CommandSpec(
            "vifs",
            "vifs VM [pool=NAME]",
            "a VM's VIFs: device, MAC, network, MTU, attached, offload modes",
            options=frozenset({"pool"}),
            min_args=1,
            max_args=1,
        ),
        CommandSpec(
            "vif",
            "vif UUID | VM:DEVICE [pool=NAME]",
            "every parameter of one VIF (like xe vif-param-list)",
            options=frozenset({"pool"}),
            min_args=1,
            max_args=1,
        ),
        CommandSpec(
            "pifs",
            "pifs [host=NAME] [pool=NAME]",
            "PIFs: host, device, MAC, MTU, VLAN, network, bond role, management, attached, offload modes",
            options=frozenset({"host", "pool"}),
        ),
        CommandSpec(
            "pif",
            "pif UUID | HOST:DEVICE [pool=NAME]",
            "every parameter of one PIF (like xe pif-param-list)",
            options=frozenset({"pool"}),
            min_args=1,
            max_args=1,
        ),
        CommandSpec(
            "offload status",
            "offload status vm=VM | host=HOST | pool=POOL",
            "offload modes summarised over a VM, a host or a whole pool",
            options=frozenset({"vm", "host", "pool"}),
            one_of=frozenset({"vm", "host", "pool"}),
            section="Offloading",
        ),
    )
}

# Words that take a second word to name the subcommand.
_GROUPS = {"offload", "policy"}


def register(spec: CommandSpec) -> None:
    """Later features add their commands here rather than editing the table above."""
    COMMANDS[spec.name] = spec


def parse(text: str) -> Parsed:
    """``'vifs web01'`` → Parsed(vifs, ('web01',)); raises :class:`UsageError` with the right usage."""
    cleaned = unescape(text or "").strip()
    if not cleaned:
        return Parsed(COMMANDS["help"])
    try:
        tokens = shlex.split(cleaned)
    except ValueError as exc:
        raise UsageError(f"could not read the command: {exc} (check the quotes)") from None
    if not tokens:
        return Parsed(COMMANDS["help"])
    head = tokens[0].lower()
    rest = tokens[1:]
    if head in _GROUPS:
        if not rest:
            raise UsageError(f"`{head}` needs a subcommand", _groupCommandSpec(head))
        name = f"{head} {rest[0].lower()}"
        rest = rest[1:]
    else:
        name = head
    spec = COMMANDS.get(name)
    if spec is None:
        if head in _GROUPS:
            raise UsageError(f"unknown subcommand `{name}`", _groupCommandSpec(head))
        raise UsageError(f"unknown command `{head}`")
    args: list[str] = []
    options: dict[str, str] = {}
    for token in rest:
        key, sep, value = token.partition("=")
        if sep and key.lower() in spec.options:
            if not value:
                raise UsageError(f"`{key}=` needs a value", spec)
            if key.lower() in options:
                raise UsageError(f"`{key}=` is given twice", spec)
            options[key.lower()] = value
        elif sep and key.isidentifier() and spec.options:
            raise UsageError(f"`{key}=` is not an option of `{spec.name}`", spec)
        else:
            args.append(token)
    if len(args) < spec.min_args:
        raise UsageError(f"`{spec.name}` needs {_count(spec.min_args)}", spec)
    if len(args) > spec.max_args:
        raise UsageError(f"`{spec.name}` takes {_count(spec.max_args, upto=True)}, got {len(args)}", spec)
    if spec.one_of and not spec.one_of & options.keys():
        raise UsageError(f"`{spec.name}` needs one of {', '.join(sorted(k + '=' for k in spec.one_of))}", spec)
    if spec.one_of and len(spec.one_of & options.keys()) > 1:
        raise UsageError(f"give only one of {', '.join(sorted(k + '=' for k in spec.one_of))}", spec)
    _check_numbers(spec, args, options)
    return Parsed(spec, tuple(args), options)


# Numbers are checked here, from the placeholders of each command's usage, so that no route ever
# sees `-5` for a count, an id no database column can hold, or `nan` for a figure.
MAX_COUNT = 1000
MAX_ID = 2**31 - 1  # the id columns are 32-bit integers


def _check_numbers(spec: CommandSpec, args: list[str], options: Mapping[str, str]) -> None:
    """``N`` in a usage is a count (1..MAX_COUNT), ``ID`` an id (``12`` or ``#12``), ``key=N`` a figure
    (a finite number, not negative)."""
    positional, named = _placeholders(spec)
    for value, placeholder in zip(args, positional, strict=False):
        if placeholder == "N" and not (value.isdigit() and 1 <= int(value) <= MAX_COUNT):
            raise UsageError(f"`{value}` is not a count: give a whole number from 1 to {MAX_COUNT}", spec)
        digits = value.removeprefix("#")
        if placeholder == "ID" and not (digits.isdigit() and 1 <= int(digits) <= MAX_ID):
            raise UsageError(f"`{value}` is not an id: give a number such as 12", spec)
    for key, value in options.items():
        if named.get(key) != "N":
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise UsageError(f"`{key}=` needs a number of 0 or more, not `{value}`", spec)


def _placeholders(spec: CommandSpec) -> tuple[list[str], dict[str, str]]:
    """``explain VM [rx=N] [tx=N]`` -> (["VM"], {"rx": "N", "tx": "N"})."""
    words = spec.usage.split("\n")[0].split()[len(spec.name.split()):]
    positional: list[str] = []
    named: dict[str, str] = {}
    for word in words:
        word = word.strip("[]\"")
        key, sep, placeholder = word.partition("=")
        if sep:
            named[key.lower()] = placeholder
        elif word and word != "|":
            positional.append(word)
    return positional, named


def _count(n: int, upto: bool = False) -> str:
    if n == 0:
        return "no arguments"
    word = "argument" if n == 1 else "arguments"
    return f"{'at most ' if upto else ''}{n} {word}"


def _groupCommandSpec(head: str) -> CommandSpec:
    members = [s for s in COMMANDS.values() if s.name.startswith(head + " ")]
    usage = "\n".join(s.usage for s in members)
    return CommandSpec(name=head, usage=usage, summary="", section=members[0].section if members else "")
