"""Prometheus metrics: what operators watch on a dashboard.

Defined once here (the default registry) and incremented where things happen;
served at ``/metrics`` in HTTP mode and on ``--metrics-port`` in Socket Mode.
``xenbot serve`` applies changes in child processes; their counts are shared
through prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
set by :func:`bot.services.apply_process.share_metrics` before this module is
imported) and summed into one exposition here.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def registry() -> CollectorRegistry:
    """What to expose: this process's metrics, or every xenbot process's when they share a folder."""
    if not os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import REGISTRY

        return REGISTRY
    shared = CollectorRegistry()
    _multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
    # The multiprocess collector only sums our own series. CPU, memory, file descriptors and the
    # garbage collector are the serving process's, where operators look first when acks slow down.
    ProcessCollector(registry=shared)
    PlatformCollector(registry=shared)
    GCCollector(registry=shared)
    return shared


def exposition() -> bytes:
    return generate_latest(registry())

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
