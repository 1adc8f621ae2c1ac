"""The gateway facing XAPI as it really behaves (issue 14): objects that vanish under a write,
and a pool whose master is down (members in emergency mode)."""

from __future__ import annotations

import pytest
import XenAPI

from bot.xen.errors import ObjectGone, XapiError, XapiUnavailable


def test_a_write_to_a_destroyed_vif_raises_object_gone(sim, gateway):
    """XAPI answers HANDLE_INVALID [class, ref] for a ref whose object is gone
    (ocaml/idl/datamodel_errors.ml handle_invalid); the gateway says "gone", not "failed"."""
    vif = next(v for v in gateway.inventory().vifs.values() if v.vm_name == "win7-kiosk")
    sim.pool.destroy_object(vif.ref)
    with pytest.raises(ObjectGone) as caught:
        gateway.add_key("vif", vif.ref, "ethtool-sg", "off")
    assert (caught.value.object_class, caught.value.ref) == ("VIF", vif.ref)
    assert isinstance(caught.value, XapiError) and caught.value.code == "HANDLE_INVALID"


def test_master_down_each_host_answer_is_kept_and_a_promoted_member_is_found(sim, gateway):
    """While the master is down its members answer every call, login included, with their emergency
    error rather than HOST_IS_SLAVE (ocaml/xapi/api_server.ml, ocaml/xapi/xapi.ml): the gateway must
    ask every host it knows from the last read, and find the member an operator promoted."""
    gateway.inventory()  # the last good read: every host's address is remembered
    master = sim.stop_master()
    members = [name for name in sim.host_urls if name != master]
    sim.set_emergency_error(members[1], ["HOST_STILL_BOOTING"])
    with pytest.raises(XapiUnavailable) as caught:
        gateway.call("pool.get_all")
    answers = gateway.host_answers
    assert len(answers) == 3
    assert answers[sim.host_urls[members[1]]] == "HOST_STILL_BOOTING"
    assert answers[sim.host_urls[members[0]]].startswith("INTERNAL_ERROR")
    assert "HOST_STILL_BOOTING" in str(caught.value)

    local = XenAPI.Session(sim.host_urls[members[0]])
    local.slave_local_login_with_password("root", "xenroot")
    local.xenapi.pool.emergency_transition_to_master()  # what an operator runs on that member
    inventory = gateway.inventory()
    assert inventory.master.name == members[0]
    assert gateway.host_answers[sim.host_urls[members[0]]] == "master"
