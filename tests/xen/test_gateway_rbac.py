"""The gateway facing XAPI's RBAC (issue 14 item 10): every login refusal backs off, and the
gateway learns what its session may write (XA ocaml/xapi/xapi_session.ml, ocaml/xapi/rbac.ml)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bot.xen.errors import XapiAuthFailed
from bot.xen.gateway import PoolGateway
from tests.conftest_xen import pool_settings


def _gateway(sim, user: str, password: str) -> PoolGateway:
    return PoolGateway(pool_settings(sim, username=user, password=SecretStr(password)), retry_delays=(0.01,))


@pytest.mark.parametrize(("user", "role", "subject", "code", "said"), [
    ("stranger", "", False, "SESSION_AUTHORIZATION_FAILED", "has no subject"),
    ("norole", "", True, "RBAC_PERMISSION_DENIED", "no role"),
])
def test_every_login_refusal_backs_off(sim, user, role, subject, code, said):
    """Without the back-off these answers were taken for a member in emergency mode: every known
    host was asked again at every call, each refusal costing XAPI's 5 s and the account's lock-out."""
    sim.add_user(user, "pw", role, subject)
    gw = _gateway(sim, user, "pw")
    try:
        with pytest.raises(XapiAuthFailed, match=said) as caught:
            gw.inventory()
        assert caught.value.answer[0] == code
        with pytest.raises(XapiAuthFailed, match=said):
            gw.inventory()  # within the back-off: XAPI is not asked again
        assert sim.call_counts().get("session.login_with_password") == 1
    finally:
        gw.close()


def test_the_gateway_knows_what_its_session_may_write(sim, gateway):
    assert (gateway.may_write("vif"), gateway.may_write("pif")) == (True, True)  # root: is_local_superuser
    sim.add_user("vmadmin", "pw", "vm-admin")
    sim.add_user("viewer", "pw", "read-only")
    for user, expected in (("vmadmin", (True, False)), ("viewer", (False, False))):
        gw = _gateway(sim, user, "pw")
        try:
            assert (gw.may_write("vif"), gw.may_write("pif")) == expected
        finally:
            gw.close()
