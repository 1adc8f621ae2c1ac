from types import MappingProxyType

import pytest

from bot.domain.model import Vif
from bot.domain.offload import (
    ModeError,
    Setting,
    configured,
    is_effective,
    parse_modes,
    parse_value,
    same_effect,
    summarise,
)


@pytest.mark.parametrize(
    ("value", "setting"),
    [
        (None, Setting.DEFAULT),
        ("on", Setting.ON),
        ("true", Setting.ON),
        ("TRUE", Setting.IGNORED),  # vif-real's `case` and nm.ml's match are case-sensitive
        (" Off", Setting.IGNORED),
        ("off ", Setting.IGNORED),
        ("off", Setting.OFF),
        ("false", Setting.OFF),
        ("disabled", Setting.IGNORED),
        ("", Setting.IGNORED),
    ],
)
def test_values_are_read_as_dom0_reads_them(value, setting):
    assert parse_value(value) is setting


def test_missing_key_is_the_driver_default_which_is_on():
    assert Setting.DEFAULT.effective is True
    assert Setting.IGNORED.effective is True
    assert Setting.OFF.effective is False


def test_gro_is_not_a_vif_mode():
    assert "gro" not in configured({"ethtool-gro": "off"}, "vif")
    assert configured({"ethtool-gro": "off"}, "pif")["gro"] is Setting.OFF


def test_parse_modes_validates_against_interface_kinds():
    assert parse_modes(None, ["vif"]) == ("rx", "tx", "sg", "tso", "ufo", "gso")
    assert parse_modes("tx,ethtool-tso", ["vif"]) == ("tx", "tso")
    assert parse_modes("gro", ["pif"]) == ("gro",)
    with pytest.raises(ModeError, match="valid modes"):
        parse_modes("tx,checksum", ["vif"])
    with pytest.raises(ModeError, match="cannot be set on VIFs"):
        parse_modes("gro", ["vif", "pif"])


def _vif(n: int, other_config: dict[str, str]) -> Vif:
    return Vif(
        ref=f"OpaqueRef:{n}", uuid=f"u{n}", device=str(n), mac="", mtu=1500, vm_ref="vm", vm_name="vm",
        network_ref="", network_name="", currently_attached=True, other_config=MappingProxyType(other_config),
    )


def test_summary_counts_and_outliers():
    vifs = [_vif(0, {}), _vif(1, {}), _vif(2, {"ethtool-tx": "off", "ethtool-rx": "false"})]
    summary = summarise(vifs)
    assert summary.total == 3
    assert summary.counts["tx"] == {Setting.DEFAULT: 2, Setting.OFF: 1}
    assert summary.usual["tx"] is Setting.DEFAULT
    assert [v.uuid for v in summary.outliers] == ["u2"]


def test_values_dom0_reads_the_same_are_the_same():
    assert same_effect("true", "on") and same_effect("false", "off")
    assert same_effect(None, " Off") and same_effect("TRUE", None)  # ignored = default
    assert not same_effect("off", " Off") and not same_effect("on", "off")


def test_pif_lro_defaults_to_off_network_interface_ml():
    """networkd adds ``lro off`` for a PIF key not given (xapi-idl network_interface.ml)."""
    assert is_effective(Setting.DEFAULT, "pif", "lro") is False
    assert is_effective(Setting.IGNORED, "pif", "lro") is False
    assert is_effective(Setting.ON, "pif", "lro") is True
    assert is_effective(Setting.DEFAULT, "pif", "gro") is True
    assert is_effective(Setting.DEFAULT, "vif", "tx") is True


def test_an_ignored_value_is_not_an_outlier():
    vifs = [_vif(0, {}), _vif(1, {}), _vif(2, {"ethtool-tx": "TRUE"})]
    summary = summarise(vifs)
    assert summary.counts["tx"] == {Setting.DEFAULT: 2, Setting.IGNORED: 1}
    assert summary.outliers == ()
