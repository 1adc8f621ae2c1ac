"""The gateway facing XAPI as it really behaves (issue 14): objects that vanish under a write,
and a pool whose master is down (members in emergency mode)."""

from __future__ import annotations

import pytest

from bot.xen.errors import ObjectGone, XapiError


def test_a_write_to_a_destroyed_vif_raises_object_gone(sim, gateway):
    """XAPI answers HANDLE_INVALID [class, ref] for a ref whose object is gone
    (ocaml/idl/datamodel_errors.ml handle_invalid); the gateway says "gone", not "failed"."""
    vif = next(v for v in gateway.inventory().vifs.values() if v.vm_name == "win7-kiosk")
    sim.pool.destroy_object(vif.ref)
    with pytest.raises(ObjectGone) as caught:
        gateway.write_other_config("vif", vif.ref, {"ethtool-tx": "off"}, vif.other_config)
    assert (caught.value.object_class, caught.value.ref) == ("VIF", vif.ref)
    assert isinstance(caught.value, XapiError) and caught.value.code == "HANDLE_INVALID"
