"""Inspection results → replies: compact tables, like ``xe`` but readable in a channel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.domain.activation import nic_is_emulated
from bot.domain.commands import COMMANDS, CommandSpec
from bot.domain.model import Interface, Pif, Vif, Vm
from bot.domain.offload import OffloadSummary, Setting, configured, modes_for
from bot.domain.slack_text import code, escape
from bot.render.blocks import (
    Block,
    Reply,
    actions,
    button,
    code_sections,
    context,
    fit,
    header,
    section,
    table_lines,
)
from bot.render.ids import Action
from bot.services.inspection import InterfaceDetail, OffloadStatus, PifList, PoolStatus, VifList, VmList

_MARK = {Setting.ON: "on", Setting.OFF: "off", Setting.DEFAULT: "·", Setting.IGNORED: "?"}
LEGEND = (
    "Offload modes as configured in other-config: on · off · `·` default (on; a PIF's lro off) · "
    "`?` value dom0 ignores (not exactly true/on/false/off): acts as the default"
)
NO_DEVICE = "no (OVS)"
NO_DEVICE_LEGEND = (
    f"IN EFFECT `{NO_DEVICE}`: a bond or VLAN PIF has no device of its own under Open vSwitch; its keys "
    "take effect nowhere — set the member NICs"
)
PENDING_LEGEND = (
    "IN EFFECT: `pending` = changed by xenbot but not yet applied by dom0 (needs a replug, power cycle "
    "or PIF plug: `/xen activate ID`)"
)


EMULATED = "no (emulated)"
EMULATED_LEGEND = (
    f"IN EFFECT `{EMULATED}`: the guest has no PV drivers, so its traffic goes through the emulated NIC "
    "and no device honours the VIF's offload keys"
)


def _pending(pending: Mapping[str, str], uuid: str) -> str:
    return "pending" if uuid in pending else "yes"


def _pif_in_effect(pending: Mapping[str, str], pif: Pif) -> str:
    """A bond-master or VLAN PIF's keys reach no device under Open vSwitch (nm.ml configures the
    members of a bond and the tagged PIF of a VLAN): never "in effect", even after a plug."""
    if not pif.physical:
        return NO_DEVICE
    return _pending(pending, pif.uuid)


def offload_cells(interface: Interface, modes: Sequence[str] | None = None) -> list[str]:
    settings = configured(interface.other_config, interface.kind)
    return [_MARK[settings.get(m, Setting.DEFAULT)] for m in (modes or modes_for(interface.kind))]


def _share(command_text: str) -> Block:
    return actions(button("Share in channel", Action.SHARE, command_text))


def _listing(title: str, lines: list[str], notes: Sequence[str], command_text: str, filename: str) -> Reply:
    blocks: list[Block] = [section(title), *code_sections(lines)]
    if notes:
        blocks.append(context(*notes))
    blocks.append(_share(command_text))
    full = "\n".join(lines) + "\n"
    return fit(Reply(text=_plain(title), blocks=blocks), full_listing=full, filename=filename)


def _plain(mrkdwn: str) -> str:
    """Reply.text is plain text (escaped once, on delivery); titles are mrkdwn, so undo that."""
    return mrkdwn.replace("*", "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _unreachable(pools: Sequence[str]) -> list[str]:
    return [f":warning: not answering: {escape(', '.join(pools))}"] if pools else []


def render_pools(statuses: list[PoolStatus], command_text: str) -> Reply:
    if not statuses:
        message = "No pools are configured: add a `[[pools]]` entry."
        return Reply(text=message, blocks=[section(message)])
    rows = []
    for s in statuses:
        if s.error:
            rows.append((s.name, s.url, "-", "UNREACHABLE", s.error))
        else:
            rows.append((s.name, s.master_url or s.url, s.master_name, "ok", f"{s.hosts} hosts, {s.vms} VMs"))
    lines = table_lines(("POOL", "MASTER URL", "MASTER", "STATE", "DETAIL"), rows)
    # A pool whose master is down: what each host said (members in emergency mode answer every
    # call with HOST_STILL_BOOTING, HOST_MASTER_CANNOT_TALK_BACK or INTERNAL_ERROR, not the master).
    for s in statuses:
        if s.error and s.answers:
            lines += ["", f"{s.name}: what each host answered", *(f"  {url}  {a}" for url, a in s.answers.items())]
    ok = sum(1 for s in statuses if not s.error)
    return _listing(f"*Pools* — {ok} of {len(statuses)} answering", lines, [], command_text, "pools.txt")


def _pv(vm: Vm) -> str:
    if vm.guest is None:
        return "no agent"
    if not vm.guest.pv_drivers_detected:
        return "none"
    return vm.guest.pv_drivers_version or "yes"


def render_vms(result: VmList, command_text: str) -> Reply:
    multi = len({pool for pool, _, _ in result.rows}) > 1
    headers = ("NAME", "POWER", "HOST", "OS", "PV DRIVERS", "VIFS", "UUID") + (("POOL",) if multi else ())
    rows = []
    for pool, vm, vif_count in result.rows:
        os_label = vm.guest.os_label if vm.guest else "unknown"
        host = vm.host_name or "-"
        row: tuple[object, ...] = (vm.name, vm.power_state, host, os_label, _pv(vm), vif_count, vm.uuid[:8])
        rows.append(row + ((pool,) if multi else ()))
    what = f" matching {code(result.text)}" if result.text else ""
    where = f" in pool {code(result.pool)}" if result.pool else ""
    title = f"*{len(rows)} VMs*{what}{where}"
    if not rows:
        return Reply(text=_plain(title), blocks=[section(title), *_notes(_unreachable(result.unreachable))])
    lines = table_lines(headers, rows)
    return _listing(title, lines, _unreachable(result.unreachable), command_text, "vms.txt")


def _notes(notes: list[str]) -> list[Block]:
    return [context(*notes)] if notes else []


def render_vifs(result: VifList, command_text: str) -> Reply:
    vm = result.vm
    modes = modes_for("vif")
    emulated = nic_is_emulated(vm)
    rows = [
        (
            v.device,
            v.mac,
            v.network_name,
            v.mtu,
            "yes" if v.currently_attached else "no",
            *offload_cells(v, modes),
            EMULATED if emulated else _pending(result.pending, v.uuid),
        )
        for v in result.vifs
    ]
    guest = vm.guest.os_label if vm.guest else "unknown OS"
    title = (
        f"*VIFs of {escape(vm.name)}* — {escape(vm.power_state)} on {escape(vm.host_name or '-')}, "
        f"{escape(guest)}, PV drivers {escape(_pv(vm))} (pool {escape(result.pool)})"
    )
    if not rows:
        return Reply(text=_plain(title), blocks=[section(title + "\nThis VM has no VIFs.")])
    lines = table_lines(("DEV", "MAC", "NETWORK", "MTU", "ATTACHED", *modes, "IN EFFECT"), rows)
    legends = [LEGEND, EMULATED_LEGEND if emulated else PENDING_LEGEND]
    return _listing(title, lines, legends, command_text, f"vifs-{vm.name}.txt")


def render_pifs(result: PifList, command_text: str) -> Reply:
    modes = modes_for("pif")
    multi = len({pool for pool, _ in result.rows}) > 1
    rows = []
    for pool, p in result.rows:
        row: tuple[object, ...] = (
            p.host_name,
            p.device,
            p.mac,
            p.mtu,
            p.vlan if p.vlan >= 0 else "-",
            p.network_name,
            p.bond_role or "-",
            "yes" if p.management else "",
            "yes" if p.currently_attached else "no",
            *offload_cells(p, modes),
            _pif_in_effect(result.pending, p),
        )
        rows.append(row + ((pool,) if multi else ()))
    headers = ("HOST", "DEV", "MAC", "MTU", "VLAN", "NETWORK", "BOND", "MGMT", "ATTACHED", *modes, "IN EFFECT")
    headers += ("POOL",) if multi else ()
    where = f" on {escape(result.host.name)}" if result.host else ""
    where += f" in pool {escape(result.pool)}" if result.pool else ""
    title = f"*{len(rows)} PIFs*{where}"
    lines = table_lines(headers, rows)
    notes = [LEGEND, PENDING_LEGEND, *_unreachable(result.unreachable)]
    if any(not p.physical for _pool, p in result.rows):
        notes.insert(2, NO_DEVICE_LEGEND)
    return _listing(title, lines, notes, command_text, "pifs.txt")


def render_detail(detail: InterfaceDetail, command_text: str) -> Reply:
    iface = detail.interface
    kind = "VIF" if isinstance(iface, Vif) else "PIF"
    settings = configured(iface.other_config, iface.kind)
    offload = ", ".join(f"{m} {s.value}" for m, s in settings.items())
    title = f"*{kind} {escape(iface.label)}* (pool {escape(detail.pool)})"
    width = max((len(k) for k, _ in detail.params), default=0)
    lines = [f"{k.rjust(width)} ( RO): {v}" if k != "other_config" else f"{k.rjust(width)} (MRW): {v}"
             for k, v in detail.params]
    notes = [f"Offload as configured: {escape(offload)}"]
    if isinstance(iface, Pif) and iface.bond_slave_of:
        notes.append("Bond member: plug/unplug the bond, not this PIF.")
    if isinstance(iface, Pif) and not iface.physical:
        notes.append(f"In effect: {NO_DEVICE}. " + NO_DEVICE_LEGEND.split(": ", 1)[1])
    return _listing(title, lines, notes, command_text, f"{kind.lower()}-{iface.uuid}.txt")


def _summary_lines(summary: OffloadSummary) -> list[str]:
    rows = []
    for mode in summary.modes:
        counts: Mapping[Setting, int] = summary.counts[mode]
        rows.append(
            (
                mode,
                counts.get(Setting.OFF, 0),
                counts.get(Setting.ON, 0),
                counts.get(Setting.DEFAULT, 0),
                counts.get(Setting.IGNORED, 0),
                summary.usual[mode].value,
            )
        )
    return table_lines(("MODE", "OFF", "ON", "DEFAULT", "IGNORED", "MOST COMMON"), rows)


def render_offload_status(status: OffloadStatus, command_text: str) -> Reply:
    title = f"*Offload status of {status.scope} {escape(status.label)}* (pool {escape(status.pool)})"
    blocks: list[Block] = [section(title)]
    full: list[str] = []
    for label, summary in (("VIFs", status.vifs), ("PIFs", status.pifs)):
        if summary is None:
            continue
        lines = _summary_lines(summary)
        blocks.append(section(f"*{label}*: {summary.total}"))
        if summary.total:
            blocks += code_sections(lines)
        full += [f"{label}: {summary.total}", *lines]
        if summary.outliers:
            outlier_rows = [(i.label, *offload_cells(i, summary.modes)) for i in summary.outliers]
            outlier_lines = table_lines(("INTERFACE", *summary.modes), outlier_rows)
            blocks.append(section(f"{len(summary.outliers)} {label} differ from the most common setting:"))
            blocks += code_sections(outlier_lines)
            full += ["Differing:", *outlier_lines]
        full.append("")
    blocks.append(context(LEGEND))
    if status.no_device:
        text = (f"{status.no_device} VIF(s) belong to guests without PV drivers: their emulated NICs carry "
                "the traffic, so none of these settings is in effect on them.")
        blocks.append(section(f":information_source: {text}"))
        full.append(text)
    if status.pending:
        blocks.append(section(f":hourglass_flowing_sand: {status.pending} interface(s) are *pending activation*."))
        full.append(f"{status.pending} interface(s) pending activation")
    blocks.append(_share(command_text))
    return fit(Reply(text=_plain(title), blocks=blocks), "\n".join(full), f"offload-{status.label}.txt")


def render_help(command: str, topic: str | None = None) -> Reply:
    specs = list(COMMANDS.values())
    if topic:
        chosen = [s for s in specs if s.name == topic or s.name.startswith(topic + " ")]
        if chosen:
            specs = chosen
    by_section: dict[str, list[CommandSpec]] = {}
    for spec in specs:
        by_section.setdefault(spec.section, []).append(spec)
    blocks: list[Block] = [header("xenbot — XenServer / XCP-ng from Slack")]
    for name, members in by_section.items():
        lines = "\n".join(f"`{escape(command)} {escape(s.usage)}`\n      {escape(s.summary)}" for s in members)
        blocks.append(section(f"*{name}*\n{lines}"))
    blocks.append(context("VM by name, uuid or uuid prefix (8+ chars). Answers are visible only to you until shared."))
    return Reply(text=f"{command} help", blocks=blocks)


def render_usage(command: str, message: str, spec: CommandSpec | None) -> Reply:
    lines = [f":grey_question: {escape(message)}"]
    if spec is not None and spec.usage:
        usage = "\n".join(f"{command} {u}" for u in spec.usage.splitlines())
        lines.append("Usage:\n```" + escape(usage) + "```")
    else:
        lines.append(f"Try `{escape(command)} help`.")
    return Reply(text=message, blocks=[section("\n".join(lines))], error=True)


def render_error(message: str, reference: str | None = None) -> Reply:
    suffix = f" (reference `{reference}`)" if reference else ""
    return Reply(text=message, blocks=[section(f":warning: {escape(message)}{suffix}")], error=True)
