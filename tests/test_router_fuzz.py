"""Fuzz the whole router on a real simulated pool: every input gets a reply with text, none raises."""

from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from bot.router import Actor
from bot.settings import Settings
from bot.wiring import build
from tests.conftest_xen import pool_settings

COMMAND_WORDS = st.sampled_from(
    ["vifs", "vif", "pifs", "pif", "vms", "offload", "status", "off", "changes", "change", "explain", "policy",
     "win7-kiosk", "xcp-host1:eth0", "pool=demo", "vm=nope", "host=", "modes=gro", "rx=abc", "#3", "-1", "999999"]
)


def test_router_answers_everything(sim, tmp_path):
    settings = Settings(pools=[pool_settings(sim)]).model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'f.db'}"}
    )
    services = build(settings)
    actor = Actor("U1", "C1")

    @settings_(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(COMMAND_WORDS, min_size=1, max_size=4).map(" ".join))
    def run(text):
        reply = services.router.handle(actor, text)
        assert reply.text and reply.blocks
        assert "Traceback" not in str(reply.blocks)
        assert "went wrong" not in reply.text, (text, reply.text)

    try:
        run()
    finally:
        services.close()



