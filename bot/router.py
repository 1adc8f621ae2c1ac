"""``/xen`` text in, a reply out — the same path for Slack and for the console.

The router owns the cross-cutting rules so no handler can forget them: parse
first (usage on error), check who is asking (refusals are audited), run the use
case, turn every failure into a clear sentence, and give unexpected failures a
short reference that is also in the log.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from bot import logs, metrics
from bot.db.retry import is_transient
from bot.domain import names
from bot.domain.access import AccessPolicy, MembersOf
from bot.domain.commands import CommandSpec, Parsed, UsageError, parse
from bot.domain.slack_text import unescape
from bot.render import inspection as render
from bot.render.blocks import Reply, context
from bot.render.ids import Action
from bot.services.inspection import InspectionService
from bot.xen.errors import XapiAuthFailed, XapiError, XapiUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking, and from where."""

    user_id: str
    channel_id: str | None
    source: str = "slack"  # or "console"


class Audit(Protocol):
    def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: dict[str, object] | None = None,
        channel: str | None = None,
        request_id: str | None = None,
    ) -> None: ...


Route = Callable[[Actor, Parsed], Reply]
ActionHandler = Callable[[Actor, str], Reply]


def new_reference() -> str:
    return secrets.token_hex(4)


class CommandRouter:
    def __init__(
        self,
        *,
        inspection: InspectionService,
        access: AccessPolicy,
        members_of: MembersOf,
        audit: Audit,
        command: str = "/xen",
    ) -> None:
        self.inspection = inspection
        self.access = access
        self.members_of = members_of
        self.audit = audit
        self.command = command
        self._routes: dict[str, Route] = {
            "help": self._help,
            "pools": lambda a, p: render.render_pools(self.inspection.pools(), self._text(p)),
            "vms": lambda a, p: render.render_vms(
                self.inspection.vms(p.options.get("pool"), p.text() or None), self._text(p)
            ),
            "vifs": lambda a, p: render.render_vifs(
                self.inspection.vifs(p.args[0], p.options.get("pool")), self._text(p)
            ),
            "vif": lambda a, p: render.render_detail(
                self.inspection.vif(p.args[0], p.options.get("pool")), self._text(p)
            ),
            "pifs": lambda a, p: render.render_pifs(
                self.inspection.pifs(p.options.get("host"), p.options.get("pool")), self._text(p)
            ),
            "pif": lambda a, p: render.render_detail(
                self.inspection.pif(p.args[0], p.options.get("pool")), self._text(p)
            ),
            "offload status": self._offload_status,
        }
        self._actions: dict[str, ActionHandler] = {Action.SHARE: self._share}
        self._open_actions: set[str] = set()

    def add_route(self, name: str, route: Route) -> None:
        """Later features (changes, alerts, policies) plug their commands in here."""
        self._routes[name] = route

    def add_action(self, action_id: str, handler: ActionHandler, *, operators_only: bool = True) -> None:
        """``operators_only=False`` for buttons whose service applies its own rule (approve/reject/cancel)."""
        self._actions[action_id] = handler
        if not operators_only:
            self._open_actions.add(action_id)

    def handle_action(self, actor: Actor, action_id: str, value: str) -> Reply:
        """A button press. Who is clicking is checked again here, whatever the message showed."""
        handler = self._actions.get(action_id)
        if handler is None:
            return render.render_error("That button is no longer supported; run the command again.")
        if action_id not in self._open_actions:
            decision = self.access.may_operate(actor.user_id, actor.channel_id, self.members_of)
            if not decision.allowed:
                self._audit_safely(actor, "action.refused", action_id, {"value": value, "reason": decision.reason})
                return render.render_error(f"Sorry, {decision.reason}.")
        return self._safely(action_id, lambda: handler(actor, value), None)

    def _safely(self, what: str, run: Callable[[], Reply], spec: CommandSpec | None) -> Reply:
        """Every failure becomes a sentence for the person; unexpected ones also get a reference.

        The reference is also on every log line written meanwhile (``bot.logs``)."""
        with logs.reference(new_reference()) as reference:
            outcome = "ok"
            try:
                reply = run()
                outcome = "refused" if reply.error else "ok"
                return reply
            except UsageError as exc:
                outcome = "usage"
                return render.render_usage(self.command, exc.message, exc.spec or spec)
            except names.LookupProblem as exc:
                outcome = "not_found"
                return render.render_error(str(exc))
            except XapiUnavailable as exc:
                outcome = "xapi_unavailable"
                log.warning("%s: %s", what, exc)
                return render.render_error(
                    f"Pool {exc.pool} is not answering ({exc.reason}). Nothing was changed; try again shortly."
                )
            except XapiAuthFailed as exc:
                outcome = "xapi_auth"
                log.error("%s: %s", what, exc)
                return render.render_error(f"{exc}. An administrator must fix xenbot's pool credentials.", reference)
            except XapiError as exc:
                outcome = "xapi_error"
                log.warning("%s: %s", what, exc)
                return render.render_error(f"XAPI on pool {exc.pool} refused: {exc.short}", reference)
            except Exception as exc:
                if is_transient(exc):
                    outcome = "database_unavailable"
                    log.warning("%s: database unreachable: %s", what, exc)
                    return render.render_error(
                        "xenbot's database is not answering, so this may not have been recorded. "
                        "Try again in a minute; repeating a command or a click is safe.",
                        reference,
                    )
                outcome = "error"
                log.exception("%s failed", what)
                return render.render_error(
                    "Something went wrong on xenbot's side; the team can look it up.", reference
                )
            finally:
                metrics.COMMANDS.labels(what, outcome).inc()

    def _share(self, actor: Actor, value: str) -> Reply:
        """Run the command again (fresh data, access re-checked) and post it for everyone."""
        reply = self.handle(actor, value)
        if reply.error:
            return reply
        blocks = [b for b in reply.blocks if not _has_action(b, Action.SHARE)]
        blocks.append(context(f"Shared by <@{actor.user_id}>"))
        return replace(reply, blocks=blocks, ephemeral=False)

    def handle(self, actor: Actor, text: str) -> Reply:
        """Run one command; never raises — every outcome is a reply."""
        try:
            parsed = parse(text)
        except UsageError as exc:
            return render.render_usage(self.command, exc.message, exc.spec)
        decision = self.access.may_operate(actor.user_id, actor.channel_id, self.members_of)
        if not decision.allowed:
            metrics.COMMANDS.labels(parsed.name, "unauthorised").inc()
            self._audit_safely(actor, "command.refused", parsed.name, {"text": text, "reason": decision.reason})
            return render.render_error(f"Sorry, {decision.reason}.")
        route = self._routes.get(parsed.name)
        if route is None:
            return render.render_usage(self.command, f"`{parsed.name}` is not available here", parsed.spec)
        reply = self._safely(parsed.name, lambda: route(actor, parsed), parsed.spec)
        self._audit_safely(actor, "command.run", parsed.name, {"text": unescape(text)})
        return reply

    # -- routes -------------------------------------------------------------------

    def _text(self, parsed: Parsed) -> str:
        """The canonical command text, used by the Share button to run it again in the channel."""
        options = " ".join(f"{k}={_quote(v)}" for k, v in parsed.options.items())
        return " ".join(x for x in (parsed.name, *map(_quote, parsed.args), options) if x)

    def _help(self, actor: Actor, parsed: Parsed) -> Reply:
        return render.render_help(self.command, " ".join(parsed.args).lower() or None)

    def _offload_status(self, actor: Actor, parsed: Parsed) -> Reply:
        scope = next(k for k in ("vm", "host", "pool") if k in parsed.options)
        status = self.inspection.offload_status(scope, parsed.options[scope])  # type: ignore[arg-type]
        return render.render_offload_status(status, self._text(parsed))

    def _audit_safely(self, actor: Actor, action: str, target: str, details: dict[str, object]) -> None:
        """A failed audit write must not hide the answer; it is logged loudly instead."""
        try:
            self.audit.record(
                actor=actor.user_id, action=action, target=target, details=details, channel=actor.channel_id
            )
        except Exception:
            log.exception("could not write audit event %s for %s", action, actor.user_id)


def _has_action(block: dict[str, object], action_id: str) -> bool:
    elements = block.get("elements")
    return isinstance(elements, list) and any(
        isinstance(e, dict) and e.get("action_id") == action_id for e in elements
    )


def _quote(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value
