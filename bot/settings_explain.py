"""Reading the config file for people: relative paths, and pydantic's errors as fixes.

Kept apart from ``bot.settings`` (the schema) so that each stays short; ``load_settings``
calls in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from bot.settings import (
    AlertSettings,
    AuditSettings,
    PolicySettings,
    PoolSettings,
    ServingSettings,
    Settings,
    SlackSettings,
)


def resolve_paths(data: dict[str, Any], folder: Path) -> None:
    """Relative file paths in the config file are relative to the file's folder, not to wherever
    xenbot was started from (systemd starts it in /)."""

    def resolve(value: Any) -> Any:
        return str(folder / value) if isinstance(value, str) and value and not Path(value).is_absolute() else value

    for pool in data.get("pools") or []:
        if isinstance(pool, dict):
            for key in ("password_file", "ca_file"):
                if key in pool:
                    pool[key] = resolve(pool[key])
    for section, key in (("alerts", "rules_files"), ("audit", "key_file")):
        node = data.get(section)
        if isinstance(node, dict) and key in node:
            value = node[key]
            node[key] = [resolve(v) for v in value] if isinstance(value, list) else resolve(value)


_KNOWN_KEYS: Final[dict[tuple[str, ...], list[str]]] = {
    (): [n for n in Settings.model_fields if n != "config_path"],
    ("pools",): list(PoolSettings.model_fields),
    ("slack",): list(SlackSettings.model_fields),
    ("policies",): list(PolicySettings.model_fields),
    ("alerts",): list(AlertSettings.model_fields),
    ("audit",): list(AuditSettings.model_fields),
    ("serving",): list(ServingSettings.model_fields),
}


def explain(exc: Any, data: Mapping[str, Any]) -> list[str]:
    """Turn pydantic's errors into one line per problem: where, what, and the fix."""
    import difflib

    problems: list[str] = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        where = _location(loc, data)
        if error["type"] == "extra_forbidden":
            section = tuple(p for p in loc[:-1] if not p.isdigit())
            known = _KNOWN_KEYS.get(section, [])
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            problems.append(f"{where}: unknown key; {hint}")
        elif error["type"] == "missing":
            problems.append(f"{where}: required; add it to the config file")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    return problems


def _location(loc: list[str], data: Mapping[str, Any]) -> str:
    """``pools[1].url`` reads better as ``pools[1] ('lab').url`` when the pool has a name."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if item.isdigit() and isinstance(node, list):
            index = int(item)
            label = f"[{index}]"
            if index < len(node) and isinstance(node[index], dict) and "name" in node[index]:
                label += f" ({node[index]['name']!r})"
            parts[-1] += label
            node = node[index] if index < len(node) else None
        else:
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)
