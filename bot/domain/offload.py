"""How XAPI reads offload keys, written down once.

dom0 honours ``other-config:ethtool-<mode>`` with values exactly ``on|true`` and
``off|false`` (case-sensitive, no spaces: XA ``ocaml/xenopsd/scripts/vif-real``
``handle_ethtool`` is a shell ``case``, ``ocaml/xapi/nm.ml``
``determine_ethtool_settings`` an OCaml pattern match); anything else, ``" Off"``
or ``"TRUE"`` included, is ignored (with a log line on the host) and acts like a
missing key: the driver default, which is *on* — except a PIF's ``lro``, which
networkd turns *off* whenever the PIF key is not given (XA
``ocaml/xapi-idl/network/network_interface.ml`` default ``ethtool_offload``,
``ocaml/networkd/bin/network_server.ml`` ``set_ethtool_offload``). Xen Orchestra writes
``"true"/"false"``, the classic shell script writes ``"off"``, and reading a
missing key as "off" is the bug behind XO #5234 — so the three-way answer
(on / off / default) is kept distinct everywhere it is shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from bot.domain.model import Interface, InterfaceKind

VIF_MODES: tuple[str, ...] = ("rx", "tx", "sg", "tso", "ufo", "gso")
PIF_MODES: tuple[str, ...] = (*VIF_MODES, "gro", "lro")
DEFAULT_MODES: tuple[str, ...] = VIF_MODES

KEY_PREFIX = "ethtool-"


class Setting(StrEnum):
    ON = "on"
    OFF = "off"
    DEFAULT = "default"
    IGNORED = "ignored"  # a value dom0 does not understand: behaves like the default

    @property
    def effective(self) -> bool:
        """Whether the offload is active once applied, for every mode whose default is on."""
        return self is not Setting.OFF

    @property
    def explicit(self) -> bool:
        """A value dom0 acts on (``ON``/``OFF``); ``DEFAULT`` and ``IGNORED`` both leave the default."""
        return self in (Setting.ON, Setting.OFF)


# Modes whose default, when no valid key is given, is *off*: networkd adds ``lro off`` to
# every PIF it configures unless ``ethtool-lro`` says otherwise (network_interface.ml).
DEFAULT_OFF: frozenset[tuple[str, str]] = frozenset({("pif", "lro")})


def default_on(kind: InterfaceKind, mode: str) -> bool:
    """The state of ``mode`` on this kind of interface when no valid key is given."""
    return (kind, mode) not in DEFAULT_OFF


def is_effective(setting: Setting, kind: InterfaceKind, mode: str) -> bool:
    """Whether ``mode`` is active once dom0 has applied ``setting``."""
    if setting.explicit:
        return setting is Setting.ON
    return default_on(kind, mode)


def same_effect(a: str | None, b: str | None) -> bool:
    """Two raw values dom0 reads the same way (``true``/``on``; absent/garbage) are the same:
    changing one into the other writes nothing and needs no replug."""
    return acts_as(parse_value(a)) == acts_as(parse_value(b))


def acts_as(setting: Setting) -> Setting:
    """What dom0 does with ``setting``: an ignored value is the default."""
    return Setting.DEFAULT if setting is Setting.IGNORED else setting


def key(mode: str) -> str:
    return KEY_PREFIX + mode


def modes_for(kind: InterfaceKind) -> tuple[str, ...]:
    return VIF_MODES if kind == "vif" else PIF_MODES


def parse_value(value: str | None) -> Setting:
    if value is None:
        return Setting.DEFAULT
    if value in ("on", "true"):
        return Setting.ON
    if value in ("off", "false"):
        return Setting.OFF
    return Setting.IGNORED  # " Off", "TRUE", "": dom0 logs and skips it


def configured(other_config: Mapping[str, str], kind: InterfaceKind) -> dict[str, Setting]:
    """The setting of every mode honoured on this kind of interface, as configured."""
    return {mode: parse_value(other_config.get(key(mode))) for mode in modes_for(kind)}


def offload_keys(other_config: Mapping[str, str]) -> dict[str, str]:
    """Only the ethtool keys, for display and for storing exact before-values."""
    return {k: v for k, v in other_config.items() if k.startswith(KEY_PREFIX)}


class ModeError(ValueError):
    """A requested mode that does not exist or is not honoured on the target."""


def parse_modes(text: str | Iterable[str] | None, kinds: Iterable[InterfaceKind]) -> tuple[str, ...]:
    """Validate ``modes=rx,tx`` against what XAPI honours on the interfaces in scope."""
    if text is None:
        return DEFAULT_MODES
    items = text.replace(" ", ",").split(",") if isinstance(text, str) else list(text)
    requested = [m.strip().lower().removeprefix(KEY_PREFIX) for m in items if m.strip()]
    if not requested:
        raise ModeError(f"no modes given; valid modes: {', '.join(PIF_MODES)}")
    unknown = [m for m in requested if m not in PIF_MODES]
    if unknown:
        raise ModeError(f"unknown mode(s) {', '.join(unknown)}; valid modes: {', '.join(PIF_MODES)}")
    kinds = set(kinds)
    if "vif" in kinds:
        pif_only = [m for m in requested if m not in VIF_MODES]
        if pif_only:
            raise ModeError(
                f"{', '.join(pif_only)} cannot be set on VIFs: dom0 honours only "
                f"{', '.join(VIF_MODES)} on a VIF (gro/lro apply to PIFs only)"
            )
    return tuple(dict.fromkeys(requested))


@dataclass(frozen=True, slots=True)
class OffloadSummary:
    """How a set of interfaces is configured, and which ones stand out."""

    modes: tuple[str, ...]
    counts: Mapping[str, Mapping[Setting, int]]
    total: int
    usual: Mapping[str, Setting]
    outliers: tuple[Interface, ...]
    interfaces: tuple[Interface, ...] = ()


def summarise(interfaces: Iterable[Interface]) -> OffloadSummary:
    items = list(interfaces)
    kinds = {i.kind for i in items}
    modes = PIF_MODES if kinds == {"pif"} else VIF_MODES
    counts: dict[str, Counter[Setting]] = {m: Counter() for m in modes}
    signatures: Counter[tuple[Setting, ...]] = Counter()
    configs: list[tuple[Interface, tuple[Setting, ...]]] = []
    for iface in items:
        settings = configured(iface.other_config, iface.kind)
        shown = tuple(settings.get(m, Setting.DEFAULT) for m in modes)
        for mode, setting in zip(modes, shown, strict=True):
            counts[mode][setting] += 1
        # Outliers by what dom0 does: an ignored value is the default, not a difference.
        signature = tuple(acts_as(s) for s in shown)
        signatures[signature] += 1
        configs.append((iface, signature))
    usual_signature = signatures.most_common(1)[0][0] if signatures else tuple(Setting.DEFAULT for _ in modes)
    outliers = tuple(i for i, sig in configs if sig != usual_signature)
    return OffloadSummary(
        modes=modes,
        counts={m: dict(c) for m, c in counts.items()},
        total=len(items),
        usual=dict(zip(modes, usual_signature, strict=True)),
        outliers=outliers,
        interfaces=tuple(items),
    )
