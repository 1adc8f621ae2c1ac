"""Who may do what: one rule set, checked on every command and every click.

Membership of Slack user groups is looked up by the Slack layer and handed in
as plain data, so these rules stay pure and testable, and a button press is
judged by the same function as the command that posted the button.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

# Group id → its members; the Slack layer caches usergroups.users.list behind this.
MembersOf = Callable[[str], Collection[str]]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


def _is_group(principal: str) -> bool:
    return principal.startswith("S")


def is_member(user_id: str, principals: Iterable[str], members_of: MembersOf) -> bool:
    for principal in principals:
        if principal == user_id:
            return True
        if _is_group(principal) and user_id in members_of(principal):
            return True
    return False


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    operators: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    allowed_channels: tuple[str, ...] = ()
    allow_self_approval: bool = False

    def may_operate(self, user_id: str, channel_id: str | None, members_of: MembersOf) -> Decision:
        """Run commands: an operator (or anyone when none are listed) in an allowed channel."""
        if self.allowed_channels and channel_id not in self.allowed_channels and not _is_console(channel_id):
            return Decision(False, "xenbot is not enabled in this channel; ask in one of its channels")
        if self.operators and not is_member(user_id, self.operators, members_of):
            return Decision(False, "you are not on xenbot's operator list; ask your platform team to add you")
        return Decision(True)

    def may_approve(self, user_id: str, requester_id: str, members_of: MembersOf) -> Decision:
        if not self.approvers:
            return Decision(False, "no approvers are configured, so nobody can approve changes")
        if not is_member(user_id, self.approvers, members_of):
            return Decision(False, "you are not an approver for xenbot changes")
        if user_id == requester_id and not self.allow_self_approval:
            return Decision(False, "you cannot approve your own request; another approver must")
        return Decision(True)


CONSOLE_CHANNEL = "console"


def _is_console(channel_id: str | None) -> bool:
    """The break-glass console runs on a trusted host, outside any Slack channel."""
    return channel_id == CONSOLE_CHANNEL
