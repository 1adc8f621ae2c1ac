"""``/xen policy set|list|show|remove`` and ``/xen compliance``, and the policy buttons."""

from __future__ import annotations

from bot.domain.commands import CommandSpec, Parsed, UsageError, register
from bot.render import policies as render
from bot.render.blocks import Reply
from bot.render.ids import Action
from bot.router import Actor, CommandRouter
from bot.routes import refused_on_change_error
from bot.services.changes import ChangeService, Scope
from bot.services.policies import PolicyService, policy_spec_from

register(
    CommandSpec(
        "policy set",
        'policy set pool=POOL vifs|pifs modes=rx,tx,... [action=off|on] [mode=report|enforce] '
        "[host=HOST] [exclude=GLOB,GLOB] [exclude_tags=TAG,TAG]",
        "keep an offload decision for new and edited interfaces (after approval)",
        options=frozenset({"pool", "modes", "action", "mode", "host", "exclude", "exclude_tags"}),
        min_args=1,
        max_args=1,
        one_of=frozenset({"pool"}),
        section="Policies",
    )
)
register(CommandSpec("policy list", "policy list", "all policies", section="Policies"))
register(CommandSpec("policy show", "policy show ID", "one policy and its compliance", min_args=1, max_args=1,
                     section="Policies"))
register(CommandSpec("policy remove", "policy remove ID", "stop a policy (after approval)", min_args=1, max_args=1,
                     section="Policies"))
register(CommandSpec("compliance", "compliance [pool=POOL]", "per policy: complying, drifting, pending activation",
                     options=frozenset({"pool"}), section="Policies"))


def _id(text: str) -> int:
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise UsageError(f"`{text}` is not an id (a number such as 3)") from None


class PolicyRoutes:
    def __init__(self, policies: PolicyService, changes: ChangeService) -> None:
        self.policies = policies
        self.changes = changes

    def register(self, router: CommandRouter) -> None:
        router.add_route("policy set", self._set)
        router.add_route("policy list", lambda a, p: render.policy_list(self.policies.all()))
        router.add_route("policy show", lambda a, p: render.policy_detail(*self.policies.show(_id(p.args[0]))))
        router.add_route("policy remove", lambda a, p: refused_on_change_error(
            lambda: self.policies.request_remove(a.user_id, a.channel_id, _id(p.args[0]))))
        router.add_route("compliance", lambda a, p: render.compliance_report(
            self.policies.compliance_report(p.options.get("pool"))))
        router.add_action(Action.SAVE_POLICY, lambda a, v: self.policies.save_from_change(a.user_id, _id(v)),
                          operators_only=False)
        router.add_action(Action.POLICY_FIX, self._fix)

    def _set(self, actor: Actor, parsed: Parsed) -> Reply:
        target = parsed.args[0].lower()
        if target not in ("vifs", "pifs"):
            raise UsageError(f"say which interfaces: `vifs` or `pifs`, not `{parsed.args[0]}`", parsed.spec)
        options = dict(parsed.options)
        if options.get("mode", "report") not in ("report", "enforce"):
            raise UsageError("mode= is `report` or `enforce`", parsed.spec)
        if options.get("action", "off") not in ("off", "on"):
            raise UsageError("action= is `off` or `on`", parsed.spec)
        pool = self.changes.inspection.gateway(options["pool"]).name
        spec = policy_spec_from({**options, "pool": pool}, target)
        return refused_on_change_error(lambda: self.policies.request_set(actor.user_id, actor.channel_id, spec))

    def _fix(self, actor: Actor, value: str) -> Reply:
        """The drift message's button: an ordinary change request for that VM (or host) and policy."""
        policy_text, _, owner = value.partition(":")
        row = self.policies.active_policy(_id(policy_text))
        spec = row.spec
        scope = Scope("vm" if spec["target"] == "vifs" else "host", owner, row.pool)
        return refused_on_change_error(
            lambda: self.changes.request(
                requester=actor.user_id,
                channel=actor.channel_id,
                action=spec["action"],
                scope=scope,
                modes_text=",".join(spec["modes"]),
                reason=f"drift from policy #{row.id}",
            )
        )

