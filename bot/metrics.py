"""Prometheus metrics: what operators watch on a dashboard.

Defined once here (the default registry) and incremented where things happen;
served at ``/metrics`` in HTTP mode and on ``--metrics-port`` in Socket Mode.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

COMMANDS = Counter("xenbot_commands_total", "Slash commands and button presses handled", ["command", "outcome"])
ACK_SECONDS = Histogram(
    "xenbot_ack_seconds",
    "Time from receiving a Slack request to answering it (HTTP mode)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0),
)
XAPI_CALLS = Counter("xenbot_xapi_calls_total", "XAPI calls by method and result", ["pool", "method", "error"])
CHANGE_TRANSITIONS = Counter(
    "xenbot_change_transitions_total", "Change requests entering a state (approval states)", ["state"]
)
INTERFACES_CHANGED = Counter(
    "xenbot_interfaces_changed_total", "Per-interface outcomes of applied changes", ["pool", "status"]
)
ALERTS = Counter("xenbot_alerts_total", "Discard alerts seen, by source and verdict", ["source", "verdict"])
