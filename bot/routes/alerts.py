"""``/xen explain``, ``/xen alerts`` and the buttons under a diagnosis."""

from __future__ import annotations

from dataclasses import replace

from bot.domain.commands import CommandSpec, Parsed, UsageError, register
from bot.render import alerts as render
from bot.render.blocks import Reply
from bot.render.ids import Action
from bot.render.inspection import render_error
from bot.router import ActionHandler, Actor, CommandRouter
from bot.services.alerts import AlertService
from bot.services.changes import ChangeError, ChangeService, Scope

register(CommandSpec("explain", "explain VM [rx=N] [tx=N] [pool=NAME]",
                     "diagnose discards on a VM on demand, as for an alert",
                     options=frozenset({"rx", "tx", "pool"}), min_args=1, max_args=1, section="Discards"))
register(CommandSpec("alerts", "alerts [N]", "recent discard alerts: target, verdict, repeats",
                     max_args=1, section="Discards"))


def _number(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"`{name}=` needs a number, not `{text}`") from None


class AlertRoutes:
    def __init__(self, alerts: AlertService, changes: ChangeService) -> None:
        self.alerts = alerts
        self.changes = changes

    def register(self, router: CommandRouter) -> None:
        router.add_route("explain", self._explain)
        router.add_route("alerts", self._list)
        # The buttons under a diagnosis are checked like any click (operators), but in the alert
        # channels they were posted in as well as in xenbot's own channels.
        for action_id, handler in (
            (Action.SHOW_VIFS, self._show_vifs),
            (Action.MUTE, self._mute),
            (Action.DISABLE_OFFLOAD, self._disable),
        ):
            router.add_action(action_id, self._checked(router, action_id, handler), operators_only=False)

    def _checked(self, router: CommandRouter, action_id: str, handler: ActionHandler) -> ActionHandler:
        def run(actor: Actor, value: str) -> Reply:
            policy = router.access
            if policy.allowed_channels:
                policy = replace(policy, allowed_channels=(*policy.allowed_channels, *self.alerts.alert_channels))
            decision = policy.may_operate(actor.user_id, actor.channel_id, router.members_of)
            if not decision.allowed:
                router.audit.record(actor=actor.user_id, action="action.refused", target=action_id,
                                    details={"value": value, "reason": decision.reason}, channel=actor.channel_id)
                return render_error(f"Sorry, {decision.reason}.")
            return handler(actor, value)

        return run

    def _explain(self, actor: Actor, parsed: Parsed) -> Reply:
        return self.alerts.explain(
            parsed.args[0],
            _number(parsed.options.get("rx"), "rx"),
            _number(parsed.options.get("tx"), "tx"),
            parsed.options.get("pool"),
        )

    def _list(self, actor: Actor, parsed: Parsed) -> Reply:
        try:
            limit = int(parsed.args[0]) if parsed.args else 10
        except ValueError:
            raise UsageError(f"`{parsed.args[0]}` is not a number", parsed.spec) from None
        return render.alert_list(self.alerts.recent(max(1, min(limit, 100))))

    def _show_vifs(self, actor: Actor, value: str) -> Reply:
        from bot.render.inspection import render_vifs

        pool, vm_uuid, _ = render.parse_value(value)
        return render_vifs(self.alerts.inspection.vifs(vm_uuid, pool), f"vifs {vm_uuid}")

    def _mute(self, actor: Actor, value: str) -> Reply:
        pool, vm_uuid, _ = render.parse_value(value)
        return self.alerts.mute(actor.user_id, pool, vm_uuid)

    def _disable(self, actor: Actor, value: str) -> Reply:
        """Opens the ordinary approval flow with the modes the rule recommends."""
        pool, vm_uuid, modes = render.parse_value(value)
        try:
            return self.changes.request(
                requester=actor.user_id,
                channel=actor.channel_id,
                action="off",
                scope=Scope("vm", vm_uuid, pool),
                modes_text=",".join(modes) or None,
                reason="recommended by xenbot's discard diagnosis",
            )
        except ChangeError as exc:
            from bot.render.changes import refusal

            return refusal(str(exc))
