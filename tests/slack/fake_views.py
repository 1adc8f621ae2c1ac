"""``views.open`` / ``views.update`` / ``views.publish`` for the fake Slack, answering as Slack's docs say.

Sources: docs.slack.dev reference pages of the three methods and "Modals"/"App Home":

* ``views.open`` needs a ``trigger_id`` that is at most 3 seconds old (``expired_trigger_id``) and
  used once (``exchanged_trigger_id``); the view must be a ``modal``.
* ``views.update`` names the view by ``view_id`` (or ``external_id``); an unknown one is
  ``not_found``, and a ``hash`` that is no longer the view's is ``hash_conflict``.
* ``views.publish`` takes ``user_id`` and a ``home`` view; ``hash`` works as above.
* A view holds at most 100 blocks; its title is at most 24 characters, ``callback_id`` 255,
  ``private_metadata`` 3,000; a bad view is ``invalid_arguments`` with the reasons in
  ``response_metadata.messages``. Each answer carries the stored view (``id``, ``hash``,
  ``state``, ``root_view_id``, ``app_id``, ``bot_id`` …).

Trigger ids minted by :mod:`tests.slack.signing` start with the Unix time they were issued at,
like Slack's, which is how the 3-second rule is checked here.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any

TRIGGER_TTL_SECONDS = 3.0
MAX_VIEW_BLOCKS = 100


def _err(error: str, *messages: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"ok": False, "error": error}
    if messages:
        answer["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in messages]}
    return answer


def _decode(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def view_problems(view: dict[str, Any], kind: str, block_errors: Any) -> list[str]:
    """Why Slack would refuse this view, as its ``response_metadata.messages`` put it."""
    problems = []
    if view.get("type") != kind:
        problems.append(f"must be a {kind} view [json-pointer:/view/type]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return [*problems, "missing required field: blocks [json-pointer:/view/blocks]"]
    if len(blocks) > MAX_VIEW_BLOCKS:
        problems.append(f"no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]")
    problems += [e for e in block_errors(blocks) if "no more than 50 items allowed [json-pointer:/blocks]" not in e]
    title = view.get("title")
    if kind == "modal":
        if not isinstance(title, dict) or not title.get("text"):
            problems.append("missing required field: title [json-pointer:/view/title]")
        elif len(str(title["text"])) > 24:
            problems.append("must be less than 25 characters [json-pointer:/view/title/text]")
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and not view.get("submit"):
            problems.append("submit is required when an input block is present [json-pointer:/view/submit]")
    if len(str(view.get("callback_id") or "")) > 255:
        problems.append("must be less than 256 characters [json-pointer:/view/callback_id]")
    if len(str(view.get("private_metadata") or "")) > 3000:
        problems.append("must be less than 3001 characters [json-pointer:/view/private_metadata]")
    return problems


class FakeViews:
    """The views Slack holds for the app: modals by id, and each user's Home tab."""

    def __init__(self, team_id: str, app_id: str, bot_id: str, block_errors: Any) -> None:
        self._team_id, self._app_id, self._bot_id = team_id, app_id, bot_id
        self._block_errors = block_errors
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._views: dict[str, dict[str, Any]] = {}
        self._homes: dict[str, str] = {}  # user id -> view id
        self._used_triggers: set[str] = set()

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._views.get(view_id)
            return json.loads(json.dumps(found)) if found else None

    def home(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            view_id = self._homes.get(user_id)
        return self.view(view_id) if view_id else None

    def reset(self) -> None:
        with self._lock:
            self._views.clear()
            self._homes.clear()
            self._used_triggers.clear()

    # -- methods ---------------------------------------------------------------------

    def open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        view = _decode(args.get("view"))
        if not trigger or view is None:
            return _err("invalid_arguments", "missing required field: trigger_id or view")
        issued = trigger.split(".", 1)[0]
        if not issued.isdigit() or time.time() - int(issued) > TRIGGER_TTL_SECONDS + 1:
            return _err("expired_trigger_id")  # whole seconds in the id: allow the rounding
        problems = view_problems(view, "modal", self._block_errors)
        if problems:
            return _err("invalid_arguments", *problems)
        with self._lock:
            if trigger in self._used_triggers:
                return _err("exchanged_trigger_id")
            self._used_triggers.add(trigger)
            stored = self._store(view, None)
        return {"ok": True, "view": stored}

    def update(self, args: dict[str, Any]) -> dict[str, Any]:
        view = _decode(args.get("view"))
        view_id = str(args.get("view_id") or "")
        external = str(args.get("external_id") or "")
        if view is None or not (view_id or external):
            return _err("invalid_arguments", "missing required field: view_id or external_id, and view")
        problems = view_problems(view, "modal", self._block_errors)
        if problems:
            return _err("invalid_arguments", *problems)
        with self._lock:
            if not view_id:
                view_id = next((k for k, v in self._views.items() if v.get("external_id") == external), "")
            current = self._views.get(view_id)
            if current is None or current.get("type") != "modal":
                return _err("not_found")
            if args.get("hash") and args["hash"] != current["hash"]:
                return _err("hash_conflict")
            stored = self._store(view, current)
        return {"ok": True, "view": stored}

    def publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user_id") or "")
        view = _decode(args.get("view"))
        if not user or view is None:
            return _err("invalid_arguments", "missing required field: user_id or view")
        problems = view_problems(view, "home", self._block_errors)
        if problems:
            return _err("invalid_arguments", *problems)
        with self._lock:
            current = self._views.get(self._homes.get(user, ""))
            if current is not None and args.get("hash") and args["hash"] != current["hash"]:
                return _err("hash_conflict")
            stored = self._store(view, current)
            self._homes[user] = stored["id"]
        return {"ok": True, "view": stored}

    def _store(self, view: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        view_id = current["id"] if current else f"V{next(self._ids):08d}"
        stored = {
            "id": view_id,
            "team_id": self._team_id,
            "type": view.get("type"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": None,
            "root_view_id": current["root_view_id"] if current else view_id,
            "app_id": self._app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self._team_id,
            "bot_id": self._bot_id,
        }
        self._views[view_id] = stored
        return json.loads(json.dumps(stored))
