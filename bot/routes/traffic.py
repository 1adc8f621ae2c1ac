"""The "Traffic, last hour" button under ``/xen vif``: the VM's VIF chart, sent privately."""

from __future__ import annotations

from bot.domain.commands import UsageError
from bot.render.blocks import Reply
from bot.render.ids import Action
from bot.router import Actor, CommandRouter
from bot.services.messenger import Messenger
from bot.services.traffic import TrafficCharts


class TrafficRoutes:
    def __init__(self, charts: TrafficCharts, messenger: Messenger) -> None:
        self.charts = charts
        self.messenger = messenger

    def register(self, router: CommandRouter) -> None:
        router.add_action(Action.TRAFFIC, self._traffic)  # operators only, like /xen vif itself

    def _traffic(self, actor: Actor, value: str) -> Reply:
        pool, _, vif_uuid = value.partition(" ")  # bot/render/inspection.py render_detail
        if not pool or not vif_uuid:
            raise UsageError("that button names no VIF; run `vif` again")
        return self.charts.for_button(self.messenger, pool, vif_uuid, actor.channel_id or "", actor.user_id)
