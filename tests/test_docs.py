"""The configuration reference and the example config name every setting xenbot has.

A setting missing from either is a setting operators cannot find; this fails when a field is
added to bot/settings.py without being documented in both places.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path

from pydantic import BaseModel

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = {"config_path"}


def _fields(model: type[BaseModel], section: str = "") -> list[tuple[str, str]]:
    """(section, field) for every setting, nested sections included."""
    found: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        if name in INTERNAL:
            continue
        nested = [t for t in (field.annotation, *_args(field.annotation)) if _is_model(t)]
        if nested:
            found += _fields(nested[0], name)
        else:
            found.append((section, name))
    return found


def _args(annotation: object) -> list[object]:
    out: list[object] = []
    for arg in typing.get_args(annotation):
        out += [arg, *typing.get_args(arg)]
    return out


def _is_model(candidate: object) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


SETTINGS = _fields(Settings)


def test_every_setting_is_in_the_configuration_reference() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    missing = [f"{s}.{n}" if s else n for s, n in SETTINGS if f"`{n}`" not in reference]
    assert not missing, f"add to docs/configuration.md: {missing}"


def test_every_setting_is_in_the_example_config() -> None:
    text = (ROOT / "deploy" / "xenbot.example.toml").read_text()
    tomllib.loads(text)  # it must stay a valid file to copy
    sections: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^\s*\[\[?([a-z_]+)\]\]?", line)
        if header:
            current = header.group(1)
        sections[current] = sections.get(current, "") + line + "\n"
    missing = []
    for section, name in SETTINGS:
        body = sections.get(section, "")
        if not re.search(rf"^\s*#?\s*{name}\s*=", body, re.MULTILINE):
            missing.append(f"[{section}] {name}" if section else name)
    assert not missing, f"add to deploy/xenbot.example.toml (set or commented out): {missing}"


def test_the_readme_stays_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for target in re.findall(r"\]\(((?:docs|deploy)/[^)#]+)", readme):
        assert (ROOT / target).exists(), target
