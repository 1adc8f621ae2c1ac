"""Block Kit → terminal text, for the console and for logs of what was sent.

Buttons become numbered choices so the console can offer the same next steps
as Slack does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.render.blocks import Reply

_EMOJI_TEXT = {
    "warning": "!",
    "grey_question": "?",
    "white_check_mark": "OK",
    "x": "X",
    "hourglass_flowing_sand": "...",
    "no_entry": "REFUSED:",
    "gear": "...",
    "heavy_multiplication_x": "x",
    "alarm_clock": "EXPIRED:",
    "arrows_counterclockwise": "~",
}
# Only the emoji xenbot itself writes: a generic :name: pattern would eat MAC addresses.
_EMOJI = re.compile(":(" + "|".join(_EMOJI_TEXT) + "):")
_USER = re.compile(r"<@([A-Z0-9]+)>")


@dataclass(frozen=True)
class Choice:
    number: int
    label: str
    action_id: str
    value: str


def _inline(text: str) -> str:
    text = _USER.sub(r"@\1", text)
    text = _EMOJI.sub(lambda m: _EMOJI_TEXT.get(m.group(1), ""), text)
    text = text.replace("```", "\n").replace("*", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip("\n")


def to_text(reply: Reply, first_choice: int = 1) -> tuple[str, list[Choice]]:
    out: list[str] = []
    choices: list[Choice] = []
    for block in reply.blocks:
        kind = block.get("type")
        if kind == "header":
            title = block["text"]["text"]
            out += [title, "=" * len(title)]
        elif kind == "section":
            if "text" in block:
                out.append(_inline(block["text"]["text"]))
            for item in block.get("fields", []):
                out.append(_inline(item["text"]).replace("\n", ": ", 1))
        elif kind == "context":
            out.append("  " + "  ".join(_inline(e.get("text", "")) for e in block["elements"]))
        elif kind == "divider":
            out.append("-" * 40)
        elif kind == "actions":
            labels = []
            for element in block["elements"]:
                choice = _choice(element, first_choice + len(choices))
                if choice:
                    choices.append(choice)
                    labels.append(f"[{choice.number}] {choice.label}")
            if labels:
                out.append("  ".join(labels))
    if not reply.blocks:
        out.append(reply.text)
    if reply.file:
        out.append(f"(attached file {reply.file.filename}: {len(reply.file.content.splitlines())} lines)")
    return "\n".join(out), choices


def _choice(element: dict[str, Any], number: int) -> Choice | None:
    if element.get("type") != "button":
        return None
    return Choice(number, element["text"]["text"], element["action_id"], element.get("value", ""))
