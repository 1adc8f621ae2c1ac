"""How XAPI reads offload keys, written down once.

dom0 honours ``other-config:ethtool-<mode>`` with values ``on|true`` and
``off|false``; anything else is ignored (with a log line on the host) and a
missing key leaves the driver default, which is *on*. Xen Orchestra writes
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
        """Whether the offload is active once applied (driver default is on)."""
        return self is not Setting.OFF


def key(mode: str) -> str:
    return KEY_PREFIX + mode


def modes_for(kind: InterfaceKind) -> tuple[str, ...]:
    return VIF_MODES if kind == "vif" else PIF_MODES


def parse_value(value: str | None) -> Setting:
    if value is None:
        return Setting.DEFAULT
    normalised = value.strip().lower()
    if normalised in ("on", "true"):
        return Setting.ON
    if normalised in ("off", "false"):
        return Setting.OFF
    return Setting.IGNORED


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
        signature = tuple(settings.get(m, Setting.DEFAULT) for m in modes)
        for mode, setting in zip(modes, signature, strict=True):
            counts[mode][setting] += 1
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
