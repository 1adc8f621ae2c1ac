"""Who may raise an alert, and what the people in an alert channel may see.

An alert channel is a place people read too, so two rules decide what xenbot
does with a message there:

* **Who counts as a monitoring sender** (:func:`refusal`). Only bots and
  integrations raise alerts: a person's "still 1,520 discards on win7-kiosk"
  is conversation, not a second alert (unless ``accept_people``). When
  ``sources`` is set, only the bot ids, app ids and classic-integration
  usernames listed there count. Events delivered for another Slack app, from
  another workspace (Slack Connect: an event ``team`` that is not ours) or in
  an externally shared channel are ignored unless explicitly allowed.
* **What the channel's audience may see** (:func:`audience`). A diagnosis
  names the guest OS, PV driver version and offload settings; an unknown
  target would list the closest VM names; a host alert shows the host's PIFs
  and networks. Those details are what ``/xen explain`` would show, so they go
  only where everyone present could run it: channels listed in
  ``slack.allowed_channels``, or any channel when xenbot is open to everyone
  (neither ``allowed_channels`` nor ``operators`` set), and never in an
  externally shared channel. Elsewhere the reply is a summary: the verdict,
  the name the alert itself gave, and the buttons (checked again on click).

Pure: no Slack, XAPI or database imports.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Audience = Literal["full", "summary"]


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    sources: tuple[str, ...] = ()
    accept_people: bool = False
    allowed_teams: tuple[str, ...] = ()
    allow_shared_channels: bool = False


@dataclass(frozen=True, slots=True)
class Installation:
    """Who we are, as Slack told us (auth.test, bots.info); ``None`` when not known (then not checked)."""

    team_id: str | None = None
    app_id: str | None = None
    bot_ids: frozenset[str] = frozenset()


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def inner_message(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The message an event is about: the new version for an edit, else the event itself."""
    if event.get("subtype") == "message_changed" and isinstance(event.get("message"), Mapping):
        message: Mapping[str, Any] = event["message"]
        return message
    return event


def is_person(message: Mapping[str, Any]) -> bool:
    """Typed by a person: a ``user`` and neither a ``bot_id`` nor a classic ``bot_message``."""
    return bool(message.get("user")) and not message.get("bot_id") and message.get("subtype") != "bot_message"


def sender_names(message: Mapping[str, Any]) -> set[str]:
    """Every name a bot or integration message can be listed under in ``alerts.sources``."""
    profile = _map(message.get("bot_profile"))
    names = {
        _str(message.get("bot_id")),
        _str(message.get("app_id")),
        _str(profile.get("app_id")),
        _str(profile.get("id")),
        _str(message.get("username")),
    }
    return {n for n in names if n}


_THEIR_TEAM_KEYS: Final = ("team", "user_team", "source_team")


def refusal(
    envelope: Mapping[str, Any],
    event: Mapping[str, Any],
    us: Installation,
    policy: IntakePolicy,
) -> str | None:
    """Why this message event is not an alert, or ``None`` when it may be one."""
    api_app_id = _str(envelope.get("api_app_id"))
    if us.app_id and api_app_id and api_app_id != us.app_id:
        return f"delivered for another app ({api_app_id})"
    envelope_team = _str(envelope.get("team_id"))
    if us.team_id and envelope_team and envelope_team != us.team_id and envelope_team not in policy.allowed_teams:
        return f"delivered for another team ({envelope_team})"
    if envelope.get("is_ext_shared_channel") and not policy.allow_shared_channels:
        return "externally shared channel"
    message = inner_message(event)
    profile = _map(message.get("bot_profile"))
    teams = {_str(message.get(k)) for k in _THEIR_TEAM_KEYS} | {_str(event.get(k)) for k in _THEIR_TEAM_KEYS}
    teams |= {_str(profile.get("team_id"))}
    foreign = {t for t in teams if t and us.team_id and t != us.team_id and t not in policy.allowed_teams}
    if foreign:
        return f"sent from another team ({', '.join(sorted(foreign))})"
    if us.bot_ids & {_str(message.get("bot_id")), _str(message.get("user"))}:
        return "xenbot's own message"
    if is_person(message):
        return None if policy.accept_people else "a person, not a monitoring tool"
    if policy.sources and not sender_names(message) & set(policy.sources):
        return "not one of alerts.sources"
    return None


def audience(
    channel: str,
    *,
    allowed_channels: Collection[str],
    operators: Collection[str],
    shared: bool = False,
) -> Audience:
    """``full`` where everyone present may run ``/xen explain`` anyway; else ``summary`` (see the module doc)."""
    if shared:
        return "summary"
    if channel in allowed_channels:
        return "full"
    if not allowed_channels and not operators:
        return "full"
    return "summary"
