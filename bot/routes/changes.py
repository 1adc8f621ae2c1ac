"""``/xen offload off|on|reset``, ``changes``, ``change``, ``revert``, ``activate`` and their buttons.

Thin glue between the router and the change services: parse the ids and
scopes, call the use case, return its reply. Every button re-checks who is
clicking inside the service, whatever the message showed.
"""

from __future__ import annotations

from bot.domain.commands import CommandSpec, Parsed, UsageError, register
from bot.render import changes as render
from bot.render.blocks import Reply
from bot.render.ids import Action
from bot.router import Actor, CommandRouter
from bot.routes import refused_on_change_error
from bot.services.apply import ApplyService
from bot.services.changes import ChangeService, Scope

_SCOPES = frozenset({"vm", "host", "pool", "vif", "pif"})

for _action, _summary in (
    ("off", "turn offload modes off (after approval)"),
    ("on", "set offload modes explicitly on (after approval)"),
    ("reset", "remove the keys: back to the driver default (after approval)"),
):
    register(
        CommandSpec(
            f"offload {_action}",
            f"offload {_action} vm=VM | host=HOST | pool=POOL | vif=UUID | pif=UUID "
            "[modes=rx,tx,sg,tso,ufo,gso] [reason=\"...\"]",
            _summary,
            options=_SCOPES | {"modes", "reason"},
            one_of=_SCOPES,
            section="Offloading",
        )
    )
register(CommandSpec("changes", "changes [N]", "recent change requests", max_args=1, section="Changes"))
register(CommandSpec("change", "change ID", "one change request: plan and per-interface results",
                     min_args=1, max_args=1, section="Changes"))
register(CommandSpec("revert", "revert ID", "request the exact previous values back (after approval)",
                     min_args=1, max_args=1, section="Changes"))
register(CommandSpec("activate", "activate ID", "make an applied change take effect now (after approval)",
                     min_args=1, max_args=1, section="Changes"))


def _id(text: str, spec_name: str) -> int:
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise UsageError(f"`{text}` is not a change id (a number such as 12)") from None


class ChangeRoutes:
    def __init__(self, changes: ChangeService, apply: ApplyService) -> None:
        self.changes = changes
        self.apply = apply

    def register(self, router: CommandRouter) -> None:
        for action in ("off", "on", "reset"):
            router.add_route(f"offload {action}", self._offload)
        router.add_route("changes", self._list)
        router.add_route("change", self._detail)
        router.add_route("revert", lambda a, p: refused_on_change_error(lambda: self.changes.request_revert(
            a.user_id, a.channel_id, _id(p.args[0], "revert"))))
        router.add_route("activate", lambda a, p: refused_on_change_error(lambda: self.changes.request_activation(
            a.user_id, a.channel_id, _id(p.args[0], "activate"))))
        # Approvers need not be operators; these services check their own rules on every click.
        router.add_action(Action.APPROVE, self._approve, operators_only=False)
        router.add_action(
            Action.REJECT, lambda a, v: self.changes.reject(a.user_id, _id(v, "reject")), operators_only=False
        )
        router.add_action(
            Action.CANCEL, lambda a, v: self.changes.cancel(a.user_id, _id(v, "cancel")), operators_only=False
        )
        router.add_action(Action.REVERT, lambda a, v: refused_on_change_error(lambda: self.changes.request_revert(
            a.user_id, a.channel_id, _id(v, "revert"))))
        router.add_action(Action.ACTIVATE, lambda a, v: refused_on_change_error(lambda: self.changes.request_activation(
            a.user_id, a.channel_id, _id(v, "activate"))))
        for action, kind in ((Action.START_VM, "start-vm"), (Action.PLUG_VIF, "plug-vif")):
            router.add_action(action, lambda a, v, kind=kind: refused_on_change_error(  # type: ignore[misc]
                lambda: self.changes.request_repair(a.user_id, a.channel_id, _id(v, kind), kind)))

    def _offload(self, actor: Actor, parsed: Parsed) -> Reply:
        scope_key = next(k for k in ("vm", "host", "pool", "vif", "pif") if k in parsed.options)
        scope = Scope(scope_key, parsed.options[scope_key])  # type: ignore[arg-type]
        action = parsed.name.split()[1]
        return refused_on_change_error(
            lambda: self.changes.request(
                requester=actor.user_id,
                channel=actor.channel_id,
                action=action,  # type: ignore[arg-type]
                scope=scope,
                modes_text=parsed.options.get("modes"),
                reason=parsed.options.get("reason"),
            )
        )

    def _approve(self, actor: Actor, value: str) -> Reply:
        request_id = _id(value, "approve")
        reply, approved = self.changes.approve(actor.user_id, request_id)
        if approved:
            self.apply.start(request_id, actor.user_id)
        return reply

    def _list(self, actor: Actor, parsed: Parsed) -> Reply:
        limit = _id(parsed.args[0], "changes") if parsed.args else 10
        return render.change_list(self.changes.recent(max(1, min(limit, 100))))

    def _detail(self, actor: Actor, parsed: Parsed) -> Reply:
        return render.change_detail(*self.changes.detail(_id(parsed.args[0], "change")))

