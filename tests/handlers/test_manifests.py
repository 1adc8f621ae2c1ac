"""Both Slack app manifests declare what the Home tab, the form and the shortcuts need, with the
callback ids the listeners use, and no new OAuth scope (``views.*`` need none; shortcuts need
``commands``, which ``/xen`` already has)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.render import forms as render
from handlers.forms import SHORTCUT

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCOPES = {"commands", "chat:write", "files:write", "im:write", "usergroups:read", "channels:history",
          "groups:history"}


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_manifest_declares_home_shortcuts_and_options(mode):
    manifest = yaml.safe_load((DEPLOY / f"slack-manifest.{mode}.yml").read_text())
    features, settings = manifest["features"], manifest["settings"]
    assert features["app_home"]["home_tab_enabled"] is True
    shortcuts = {s["callback_id"]: s["type"] for s in features["shortcuts"]}
    assert shortcuts == {SHORTCUT: "global", render.EXPLAIN_CALLBACK: "message"}
    assert all(len(s["name"]) <= 24 and len(s["description"]) <= 150 for s in features["shortcuts"])
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SCOPES
    interactivity = settings["interactivity"]
    if mode == "http":  # the form's external_select asks this URL for options ("Options Load URL")
        assert interactivity["message_menu_options_url"] == interactivity["request_url"]
    else:
        assert "message_menu_options_url" not in interactivity
