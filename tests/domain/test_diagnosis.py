"""The discard diagnosis: guest families, each built-in rule, operator rules, rule file errors."""

from types import MappingProxyType

import pytest

from bot.domain.alerts import parse_alert
from bot.domain.diagnosis import (
    FACTS,
    Evidence,
    PifEvidence,
    RuleError,
    VifEvidence,
    diagnose,
    evidence_for,
    fill,
    guest_family,
    load_rules,
)
from bot.domain.model import GuestInfo, Host, Network, Pif, PoolInventory, Vif, Vm
from bot.domain.offload import VIF_MODES, Setting, parse_value


def agent(name: str, windir: str = "Windows") -> str:
    """``os_version.name`` as the Windows guest agent sends it."""
    return f"Microsoft {name} |C:\\{windir}|\\Device\\Harddisk0\\Partition2"


WIN2008R2 = agent("Windows Server 2008 R2 Standard")


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def vif(device="0", pending=False, attached=True, **settings):
    offload = dict.fromkeys(VIF_MODES, Setting.DEFAULT)
    offload.update({mode: parse_value(value) for mode, value in settings.items()})
    return VifEvidence(device, "Pool-wide network", attached, MappingProxyType(offload), pending)


def evidence(**overrides):
    base = {
        "vm_name": "vm1",
        "pool": "prod",
        "power_state": "Running",
        "pv_drivers_detected": True,
        "pv_drivers_version": "9.1.0.22",
        "vifs": (vif("0"), vif("1")),
    }
    base.update(overrides)
    return Evidence(**base)


# -- guest family ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_name", "distro", "major", "minor", "family"),
    [
        (WIN2008R2, "windows", "6", "1", "windows-2008"),
        (agent("Windows Server 2008 Enterprise"), "windows", "6", "0", "windows-2008"),
        (agent("Windows 7 Professional"), "windows", "6", "1", "windows-2008"),
        (agent("Windows Vista Business"), "windows", "6", "0", "windows-2008"),
        (agent("Windows XP Professional", "WINDOWS"), "windows", "5", "1", "windows-2003"),
        (agent("Windows Server 2003 R2 Standard Edition", "WINDOWS"), "windows", "5", "2", "windows-2003"),
        (agent("Windows Server 2012 R2 Datacenter"), "windows", "6", "3", "windows-modern"),
        (agent("Windows 10 Pro"), "windows", "10", "0", "windows-modern"),
        # Some agents leave no space before the first "|".
        ("Microsoft Windows 7 Professional|C:\\Windows|\\Device\\Harddisk0\\Partition2", "", "", "", "windows-2008"),
        ("Microsoft Windows XP Professional|C:\\WINDOWS|", "", "", "", "windows-2003"),
        ("Microsoft Windows Server 2022 Standard", "windows", "10", "0", "windows-modern"),
        ("Microsoft Windows 11 Enterprise", "windows", "10", "0", "windows-modern"),
        # The name does not say; the NT version does: 6.1 is 7 *and* 2008 R2.
        ("", "windows", "6", "1", "windows-2008"),
        ("Microsoft Windows Small Business Server 2011 Standard", "windows", "6", "1", "windows-2008"),
        ("", "windows", "5", "2", "windows-2003"),
        ("", "windows", "6", "2", "windows-modern"),
        ("Microsoft Windows 2000 Server", "windows", "5", "0", "windows-other"),
        ("", "windows", "", "", "windows-other"),
        ("FreeBSD 13.2-RELEASE-p3", "freebsd", "13", "2", "freebsd"),
        ("pfSense", "", "", "", "freebsd"),
        ("OPNsense 23.7", "", "", "", "freebsd"),
        ("", "freebsd", "", "", "freebsd"),
        ("Ubuntu 22.04.3 LTS", "ubuntu", "22", "04", "linux"),
        ("CentOS Linux release 7.9.2009 (Core)", "centos", "7", "9", "linux"),
        ("Debian GNU/Linux 12 (bookworm)", "debian", "12", "", "linux"),
        ("", "ubuntu", "", "", "linux"),
        ("", "", "", "", "unknown"),
        ("Plan 9", "", "", "", "unknown"),
    ],
)  # fmt: skip
def test_guest_family(os_name, distro, major, minor, family):
    assert guest_family(os_name, distro, major, minor) == family


# -- built-in rules ---------------------------------------------------------------------------


def test_windows_2008_r2_with_pv_and_equal_rx_tx_is_benign_with_high_confidence(rules):
    ev = evidence(os_name=WIN2008R2, distro="windows", os_major="6", os_minor="1", rx=1520.0, tx=1520.0, unit="packets")
    d = diagnose(ev, rules)
    assert (d.verdict, d.confidence, d.rule_id) == ("benign-driver-artifact", "high", "windows-2008-pv-discards")
    assert "Microsoft Windows Server 2008 R2 Standard" in d.explanation
    assert "Rx 1520, Tx 1520 packets" in d.explanation
    assert "not expected to change" in d.explanation  # disabling offloading will not help
    assert [a.code for a in d.actions] == ["mute", "show_vifs"]
    assert any("Exclude this NIC's discard metric" in a for a in d.advice)
    assert "rx_tx_equal = true (is true)" in " ".join(d.why())


def test_windows_7_with_unequal_figures_is_benign_with_medium_confidence(rules):
    ev = evidence(os_name="Microsoft Windows 7 Professional|C:\\Windows|", rx=1520.0, tx=300.0)
    d = diagnose(ev, rules)
    assert (d.verdict, d.confidence) == ("benign-driver-artifact", "medium")
    assert not d.boosted_by


def test_equal_within_one_percent_counts_as_equal():
    assert evidence(rx=1000.0, tx=1009.0).rx_tx_equal is True
    assert evidence(rx=1000.0, tx=1020.0).rx_tx_equal is False
    assert evidence(rx=1000.0).rx_tx_equal is None


@pytest.mark.parametrize(
    "os_name",
    [
        agent("Windows Server 2003 R2 Standard Edition", "WINDOWS"),
        agent("Windows XP Professional", "WINDOWS"),
    ],
)
def test_windows_2003_and_xp_with_pv_are_likely_real(rules, os_name):
    d = diagnose(evidence(os_name=os_name, rx=40.0, tx=3.0), rules)
    assert (d.verdict, d.rule_id) == ("likely-real-discards", "windows-2003-pv-discards")
    assert "check_network" in [a.code for a in d.actions]


def test_pfsense_with_tx_default_gets_the_freebsd_rule_offering_tx_only(rules):
    d = diagnose(evidence(os_name="pfSense", distro="freebsd", vifs=(vif("0"), vif("1", tx="off"))), rules)
    assert (d.verdict, d.rule_id) == ("freebsd-checksum-offload", "freebsd-tx-checksum-offload")
    offload = [a for a in d.actions if a.code == "disable_offload"]
    assert len(offload) == 1 and offload[0].modes == ("tx",)
    assert "VIF(s) 0." in d.explanation  # only vif 0 still has tx in effect
    assert "turning RX off is not needed" in d.explanation


def test_pfsense_with_tx_already_off_everywhere_is_not_the_freebsd_rule(rules):
    d = diagnose(evidence(os_name="pfSense", vifs=(vif("0", tx="off"), vif("1", tx="false"))), rules)
    assert d.rule_id != "freebsd-tx-checksum-offload"
    assert d.verdict == "unknown"


def test_pfsense_whose_tx_change_is_pending_is_told_to_activate_not_to_change_again(rules):
    d = diagnose(evidence(os_name="pfSense", vifs=(vif("0", tx="off", pending=True),)), rules)
    assert d.verdict == "change-pending-activation"
    assert "freebsd-tx-checksum-offload" not in d.also_matched  # tx state unknown until activated


def test_windows_without_pv_drivers_is_an_emulated_nic(rules):
    d = diagnose(evidence(os_name=WIN2008R2, pv_drivers_detected=False, pv_drivers_version=""), rules)
    assert (d.verdict, d.rule_id) == ("emulated-nic", "emulated-nic")
    assert "install_pv_drivers" in [a.code for a in d.actions]


def test_unknown_pv_drivers_never_means_emulated(rules):
    d = diagnose(evidence(os_name="", pv_drivers_detected=None, power_state="Halted"), rules)
    assert d.verdict == "unknown"


def test_pending_activation_says_so_and_recommends_activation(rules):
    ev = evidence(os_name="Ubuntu 22.04.3 LTS", distro="ubuntu", vifs=(vif("0", tx="off", pending=True), vif("1")))
    d = diagnose(ev, rules)
    assert (d.verdict, d.rule_id) == ("change-pending-activation", "offload-change-pending")
    assert "pending on VIF 0)" in d.explanation
    assert d.actions[0].code == "activate_pending"
    assert (
        diagnose(evidence(os_name="Ubuntu", recent_change_pending=True), rules).verdict == "change-pending-activation"
    )


def test_windows_2008_verdict_stands_while_an_offload_change_is_pending(rules):
    # The story: offloads were turned off (still pending) and the discards went on. Say it is the driver.
    ev = evidence(os_name=WIN2008R2, vifs=(vif("0", pending=True, tx="off", rx="off"),), rx=5.0, tx=5.0)
    d = diagnose(ev, rules)
    assert d.verdict == "benign-driver-artifact"
    assert "offload-change-pending" in d.also_matched


def test_linux_is_unknown_with_next_steps_and_no_invented_cause(rules):
    ev = evidence(os_name="CentOS Linux release 7.9.2009 (Core)", distro="centos", rx=1200.0, tx=1200.0)
    d = diagnose(ev, rules)
    assert (d.verdict, d.confidence, d.rule_id) == ("unknown", "low", "unknown")
    assert "CentOS Linux release 7.9.2009 (Core) (linux)" in d.explanation
    assert "does not guess" in d.explanation
    assert len(d.advice) >= 3
    assert d.matched == () and d.why() == ["no specific rule matched"]


def test_missing_values_read_unknown_never_a_guess(rules):
    d = diagnose(Evidence(vm_name="ghost"), rules)
    assert d.verdict == "unknown"
    assert "ghost: unknown (unknown), PV drivers unknown, power unknown, alert unknown" in d.explanation
    assert "{" not in d.explanation


def test_evidence_table_is_compact_and_true_to_the_evidence():
    ev = evidence(
        os_name=WIN2008R2,
        vifs=(vif("0"), vif("1", tx="off", sg="off", pending=True)),
        host_name="xcp-host1",
        pifs=(PifEvidence("eth0", "Pool-wide network"),),
        rx=1520.0,
        tx=1520.0,
        unit="packets",
        alert_interface="Local Area Connection 2",
    )
    table = dict(ev.table())
    assert table["Guest OS"] == "Microsoft Windows Server 2008 R2 Standard (windows-2008)"
    assert table["PV drivers"] == "detected (9.1.0.22)"
    assert table["Power"] == "Running"
    assert table["VIF offload (configured → in effect)"] == (
        "0: all default (on) → in effect; "
        "1: tx off, sg off, others default (on) → pending activation: not in effect yet"
    )
    assert table["PIF offload on xcp-host1"] == "eth0: all default (on; lro off) → in effect"
    assert table["Alert Rx/Tx"] == "Rx 1520, Tx 1520 packets on Local Area Connection 2"
    assert table["Rx = Tx?"] == "yes"
    assert dict(Evidence().table())["Rx = Tx?"] == "unknown"
    assert (
        dict(Evidence(alert_value=1520.0, unit="packets").table())["Alert Rx/Tx"]
        == "1520 packets (direction not given)"
    )


def test_facts_cover_every_documented_name():
    assert set(evidence().facts()) == set(FACTS)


def test_fill_reads_only_plain_names():
    assert fill("{vm_name.__class__} {rx:.1f} {missing}", {"vm_name": "a", "rx": None}) == "unknown unknown unknown"
    assert fill("{rx:.1f}/s", {"rx": 2.0}) == "2.0/s"


# -- evidence from an inventory ---------------------------------------------------------------


def test_evidence_for_reads_inventory_alert_and_pending():
    host = Host("OpaqueRef:h", "h-uuid", "xcp-host1", "xcp-host1", "10.0.0.1", is_master=True)
    net = Network("OpaqueRef:n", "n-uuid", "Pool-wide network", "xenbr0", 1500)
    other = Network("OpaqueRef:n2", "n2-uuid", "Storage", "xenbr1", 9000)
    guest = GuestInfo(WIN2008R2, "windows", "6", "1", pv_drivers_detected=True, pv_drivers_version="9.1.0.22")
    vm = Vm(
        "OpaqueRef:v", "v-uuid", "win2008r2-sql01", "Running", "OpaqueRef:h", "xcp-host1", guest, ("OpaqueRef:vif0",)
    )
    vif0 = Vif(
        "OpaqueRef:vif0", "vif0-uuid", "0", "aa:bb", 1500, "OpaqueRef:v", vm.name, net.ref, net.name, True,
        {"ethtool-tx": "off"},
    )  # fmt: skip
    pifs = {
        "OpaqueRef:p0": Pif(
            "OpaqueRef:p0", "p0-uuid", "eth0", "cc", 1500, -1, host.ref, host.name, net.ref, net.name, True, True,
            True, None, (), {},
        ),
        "OpaqueRef:p1": Pif(
            "OpaqueRef:p1", "p1-uuid", "eth1", "dd", 9000, -1, host.ref, host.name, other.ref, other.name, True, True,
            False, None, (), {"ethtool-gro": "off"},
        ),
    }  # fmt: skip
    inventory = PoolInventory(
        "prod", host, {host.ref: host}, {vm.ref: vm}, {vif0.ref: vif0}, pifs, {net.ref: net, other.ref: other}
    )
    alert = parse_alert(
        {"type": "message", "subtype": "bot_message", "text": "discards on VM win2008r2-sql01: Rx: 1520, Tx: 1520"}
    )
    ev = evidence_for(inventory, vm, alert, pending={"vif0-uuid": "replug"})
    assert ev.guest_family == "windows-2008" and ev.pv_drivers_detected is True
    assert [v.device for v in ev.vifs] == ["0"] and ev.vifs[0].setting("tx") is Setting.OFF
    assert ev.vifs[0].pending_activation and ev.change_pending
    assert [p.device for p in ev.pifs] == ["eth0"]  # only the PIFs on the VM's networks
    assert (ev.rx, ev.tx, ev.rx_tx_equal, ev.alert_source) == (1520.0, 1520.0, True, "generic")
    d = diagnose(ev)
    assert (d.verdict, d.confidence) == ("benign-driver-artifact", "high")


def test_no_guest_metrics_on_a_running_vm_is_unknown_not_no_pv_drivers():
    """Every VM.start sets VM.guest_metrics to NULL until the agent reports again (xapi_vm.ml)."""
    host = Host("OpaqueRef:h", "h-uuid", "xcp-host1", "xcp-host1", "10.0.0.1")
    running = Vm("OpaqueRef:v", "v-uuid", "old-vm", "Running", host.ref, host.name, None, ())
    halted = Vm("OpaqueRef:w", "w-uuid", "off-vm", "Halted", None, "", None, ())
    inventory = PoolInventory("prod", host, {host.ref: host}, {}, {}, {}, {})
    assert evidence_for(inventory, running).pv_drivers_detected is None
    assert "has not reported since the VM started" in dict(evidence_for(inventory, running).table())["PV drivers"]
    assert evidence_for(inventory, halted).pv_drivers_detected is None


# -- operator rules ---------------------------------------------------------------------------


def test_operator_file_overrides_a_builtin_by_id_and_adds_a_rule(tmp_path, rules):
    site = tmp_path / "site.toml"
    site.write_text(
        """
[[rule]]
id = "windows-2008-pv-discards"
confidence = "high"
priority = 50

[[rule]]
id = "emulated-nic"
enabled = false

[[rule]]
id = "lab-network"
title = "Lab VMs sit on a noisy test network"
priority = 95
verdict = "known-noisy-network"
verdict_label = "Expected on the lab network"
confidence = "medium"
explanation = "{vm_name} is in pool {pool}, whose test network floods broadcasts."
[rule.when]
pool = "LAB"
os_name = { contains = "windows" }
[[rule.actions]]
code = "mute"
"""
    )
    loaded = load_rules([site])
    by_id = {r.id: r for r in loaded}
    assert len(loaded) == len(rules) + 1
    overridden = by_id["windows-2008-pv-discards"]
    assert (overridden.confidence, overridden.priority, overridden.origin) == ("high", 50, str(site))
    assert overridden.when == {r.id: r for r in rules}["windows-2008-pv-discards"].when  # kept from the built-in
    assert [r.priority for r in loaded] == sorted((r.priority for r in loaded), reverse=True)

    lab = evidence(pool="lab", os_name=WIN2008R2)
    d = diagnose(lab, loaded)
    assert (d.verdict, d.rule_id) == ("known-noisy-network", "lab-network")
    assert d.explanation == "vm1 is in pool lab, whose test network floods broadcasts."
    assert [a.label for a in d.actions] == ["Mute these alerts here"]
    assert "windows-2008-pv-discards" in d.also_matched

    no_pv = diagnose(evidence(pv_drivers_detected=False), loaded)
    assert no_pv.verdict == "unknown"  # emulated-nic switched off


def test_later_operator_files_win(tmp_path):
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text('[[rule]]\nid = "unknown"\nverdict_label = "A"\n')
    second.write_text('[[rule]]\nid = "unknown"\nverdict_label = "B"\n')
    assert {r.id: r for r in load_rules([first, second])}["unknown"].verdict_label == "B"


def test_with_every_rule_disabled_the_fallback_still_says_unknown(tmp_path, rules):
    off = tmp_path / "off.toml"
    off.write_text("".join(f'[[rule]]\nid = "{r.id}"\nenabled = false\n' for r in rules))
    d = diagnose(evidence(os_name=WIN2008R2), load_rules([off]))
    assert (d.verdict, d.confidence, d.rule_id) == ("unknown", "low", "fallback-unknown")


NEW_RULE = """
[[rule]]
id = "site-rule"
title = "t"
priority = 1
verdict = "v"
verdict_label = "l"
confidence = "low"
explanation = "e"
[rule.when]
"""


@pytest.mark.parametrize(
    ("text", "rule_id", "field", "words"),
    [
        (NEW_RULE.replace('"low"', '"hgih"'), "site-rule", "confidence", "must be one of low, medium, high"),
        (NEW_RULE + "guest_famly = 'linux'\n", "site-rule", "when.guest_famly", "unknown fact 'guest_famly'"),
        (NEW_RULE + "rx_tx_equal = 'yes'\n", "site-rule", "when.rx_tx_equal", "must be a boolean"),
        (NEW_RULE + "rx = { above = 3 }\n", "site-rule", "when.rx", "unknown operator 'above'"),
        (NEW_RULE + "os_name = { gt = 3 }\n", "site-rule", "when.os_name", "'gt' compares numbers"),
        (NEW_RULE.replace('"e"', '"{vmname} is odd"'), "site-rule", "explanation", "unknown placeholder {vmname}"),
        (NEW_RULE.replace("priority = 1", 'priority = "high"'), "site-rule", "priority", "must be an integer"),
        (NEW_RULE.replace("priority = 1\n", ""), "site-rule", "priority", "is required"),
        (NEW_RULE.replace('title = "t"', 'titel = "t"'), "site-rule", "titel", "unknown field"),
        (NEW_RULE + '[[rule.actions]]\ncode = "reboot_host"\n', "site-rule", "actions[0].code", "must be one of"),
        (
            NEW_RULE + '[[rule.actions]]\ncode = "disable_offload"\nmodes = ["gro"]\n',
            "site-rule", "actions[0].modes", "gro cannot be set on a VIF",
        ),
        (NEW_RULE + '[[rule.actions]]\ncode = "disable_offload"\n', "site-rule", "actions[0].modes", "non-empty list"),
        (NEW_RULE + NEW_RULE, "site-rule", "id", "defined twice"),
        (NEW_RULE.replace('id = "site-rule"', 'id = "Site Rule"'), "Site Rule", "id", "lower-case"),
        (
            '[[rule]]\nid = "windows-2008-pv-discards"\nboost_to = "low"\n',
            "windows-2008-pv-discards", "boost_to", "above",
        ),
        ("[[rule]\nid = 1", None, None, "not valid TOML"),
        ('rules = "x"\n', None, "rules", "unknown top-level key"),
    ],
)  # fmt: skip
def test_invalid_rule_files_name_file_rule_and_field(tmp_path, text, rule_id, field, words):
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(RuleError) as caught:
        load_rules([path])
    error = caught.value
    assert (error.path, error.rule_id, error.field) == (str(path), rule_id, field)
    message = str(error)
    assert message.startswith(f"rules file {path}")
    assert words in message
    if rule_id:
        assert f"rule '{rule_id}'" in message
    if field:
        assert f"field '{field}'" in message


def test_unreadable_rule_file_is_a_rule_error(tmp_path):
    with pytest.raises(RuleError, match="cannot read"):
        load_rules([tmp_path / "missing.toml"])


def test_builtin_rules_load_from_the_package(rules):
    ids = [r.id for r in rules]
    assert ids == [
        "windows-2008-pv-discards",
        "offload-change-pending",
        "freebsd-tx-checksum-offload",
        "windows-2003-pv-discards",
        "emulated-nic",
        "unknown",
    ]
    assert all(r.references or r.id == "unknown" for r in rules)
    assert all(r.origin == "bot/domain/rules/builtin.toml" for r in rules)
