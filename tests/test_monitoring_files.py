"""The monitoring files in deploy/ agree with what xenbot exports (no network, no Docker).

A metric or label misspelt in a dashboard or an alert rule does not fail anywhere: the panel
stays empty and the alert never fires. So every ``xenbot_*`` name in deploy/monitoring must be
one that ``bot.metrics`` registers, and every label a query selects or groups a xenbot metric by
must be one of that metric's labels (or a target label Prometheus adds).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import bot.metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "xenbot-alerts.yml"
PROMETHEUS = MONITORING / "prometheus.yml"
COMPOSE = DEPLOY / "compose.yaml"

# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}

METRIC = re.compile(r"\bxenbot_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(xenbot_[a-z0-9_]+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ANNOTATION_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
LABEL_VALUES = re.compile(r"label_values\(\s*(xenbot_[a-z0-9_]+)[^,]*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


@cache
def exported() -> dict[str, frozenset[str]]:
    """Every sample name bot.metrics exposes, with the labels that name may be selected by."""
    registered = {f.name: f.type for f in REGISTRY.collect() if f.name.startswith("xenbot_")}
    # prometheus-client has no public accessor for label names; the collectors keep them here.
    labelnames = {m._name: tuple(m._labelnames) for m in vars(bot.metrics).values() if isinstance(m, MetricWrapperBase)}
    assert registered, "bot.metrics registered nothing in prometheus_client.REGISTRY"
    names: dict[str, frozenset[str]] = {}
    for family, kind in registered.items():
        assert kind in SUFFIXES, f"{family}: add the sample suffixes of a {kind} to this test"
        assert family in labelnames, f"{family} is registered but not defined in bot.metrics"
        for suffix in SUFFIXES[kind]:
            extra = {"le"} if suffix == "_bucket" else set()
            names[family + suffix] = frozenset(labelnames[family]) | TARGET_LABELS | extra
    return names


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # inside collapsed rows
    return found


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and variable query."""
    board = dashboard()
    queries = [
        (f"panel {p.get('title')!r}", t["expr"]) for p in panels(board) for t in p.get("targets", []) if "expr" in t
    ]
    queries += [
        (f"variable {v['name']!r}", variable_query(v)) for v in board["templating"]["list"] if v["type"] == "query"
    ]
    return queries


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def all_queries() -> list[tuple[str, str]]:
    return dashboard_queries() + [(f"rule {r['alert']}", r["expr"]) for r in rules()]


def balanced(text: str, start: int) -> tuple[int, int]:
    """The span of the parenthesised group opening at ``text[start]``."""
    assert text[start] == "("
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return start, i + 1
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def opening(text: str, end: int) -> int:
    """Where the parenthesised group closing at ``text[end - 1]`` opens."""
    depth = 0
    for i in range(end - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def label_problems(expr: str) -> list[str]:
    names = exported()
    code = STRING.sub('""', expr)  # label values can hold anything, braces and "by (" included
    problems = []
    for match in SELECTOR.finditer(code):
        metric, matchers = match.group(1), match.group(2) or ""
        if metric not in names:
            continue  # reported by the metric-name test
        for label in MATCHER.findall(matchers):
            if label not in names[metric]:
                problems.append(f"{metric} has no label {label!r}")
    for match in GROUPING.finditer(code):
        keyword, labels = match.group(1), [x.strip() for x in match.group(2).split(",") if x.strip()]
        rest = code[match.end() :].lstrip()
        if keyword in ("by", "without") and rest.startswith("("):  # sum by (x) (expr)
            start = match.end() + code[match.end() :].index("(")
            scope = code[slice(*balanced(code, start))]
        elif keyword in ("by", "without"):  # sum(expr) by (x)
            before = code[: match.start()].rstrip()
            scope = code[opening(before, len(before)) : len(before)]
        else:  # vector matching: both sides, so the whole expression
            scope = code
        for metric in set(METRIC.findall(scope)) & names.keys():
            problems += [f"{keyword} ({label}) over {metric}" for label in labels if label not in names[metric]]
    return problems


def available_labels(expr: str) -> set[str]:
    """Labels the result can carry: those it is summed by, else those of the series it reads."""
    code = STRING.sub('""', expr)
    grouped = [m.group(2) for m in GROUPING.finditer(code) if m.group(1) == "by"]
    if grouped:
        return {label.strip() for labels in grouped for label in labels.split(",") if label.strip()} - {"le"}
    names = exported()
    metrics = set(METRIC.findall(code)) & names.keys()
    if not metrics:  # "up" and other Prometheus series
        return set(TARGET_LABELS)
    return set().union(*(names[m] for m in metrics))


# -- the files parse --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [*sorted(p for p in MONITORING.rglob("*") if p.suffix in (".yml", ".yaml")), COMPOSE],
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_yaml_files_parse(path: Path) -> None:
    assert isinstance(load_yaml(path), dict)


def test_dashboard_parses_and_is_self_contained() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= variables.keys()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'job=~"$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"], panel["title"]


# -- names and labels ---------------------------------------------------------------------------


def test_the_exported_set_is_what_bot_metrics_defines() -> None:
    names = exported()
    assert "xenbot_commands_total" in names
    assert names["xenbot_ack_seconds_bucket"] >= {"le", "job", "instance"}
    assert "pool" in names["xenbot_xapi_calls_total"]
    assert "pool" not in names["xenbot_commands_total"]


@pytest.mark.parametrize(
    "path", sorted(p for p in MONITORING.rglob("*") if p.is_file()), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_every_xenbot_metric_named_in_deploy_monitoring_is_exported(path: Path) -> None:
    unknown = set(METRIC.findall(path.read_text(encoding="utf-8"))) - exported().keys()
    assert not unknown, f"{path.name} names metrics xenbot does not export: {sorted(unknown)}"


def test_every_query_uses_xenbot_metrics_by_their_own_labels() -> None:
    problems = [f"{where}: {p}" for where, expr in all_queries() for p in label_problems(expr)]
    assert not problems, "\n".join(problems)


def test_legends_and_variables_name_labels_the_series_have() -> None:
    problems = []
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            missing = set(LEGEND.findall(target.get("legendFormat", ""))) - available_labels(target["expr"])
            problems += [f"panel {panel['title']!r}: legend {{{{{label}}}}}" for label in missing]
    for where, query in dashboard_queries():
        for metric, label in LABEL_VALUES.findall(query):
            if label not in exported().get(metric, ()):
                problems.append(f"{where}: {metric} has no label {label!r}")
    assert not problems, "\n".join(problems)


def test_the_label_check_catches_mistakes() -> None:
    assert label_problems('sum by (pool) (rate(xenbot_commands_total{job="x"}[5m]))')
    assert label_problems('rate(xenbot_alerts_total{state="failed"}[5m])')
    assert label_problems("sum(rate(xenbot_change_transitions_total[5m])) by (pool)")
    assert not label_problems('sum by (pool, error) (rate(xenbot_xapi_calls_total{error!="by (x)"}[5m]))')
    assert not label_problems("histogram_quantile(0.9, sum by (le) (rate(xenbot_ack_seconds_bucket[5m])))")


# -- alert rules ----------------------------------------------------------------------------------


def test_the_expected_alerts_exist_with_severity_summary_and_description() -> None:
    alerts = {r["alert"]: r for r in rules()}
    assert {
        "XenbotDown",
        "XenbotAcksSlow",
        "XenbotXapiUnreachable",
        "XenbotChangesFailing",
        "XenbotCommandErrors",
    } <= alerts.keys()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"].strip(), name
        assert len(rule["annotations"]["description"]) > 80, f"{name}: tell the operator what to check"
        referenced = set(ANNOTATION_LABEL.findall(json.dumps(rule["annotations"])))
        missing = referenced - available_labels(rule["expr"])
        assert not missing, f"{name}: annotations use labels the alert cannot have: {missing}"


def test_prometheus_scrapes_both_replicas_and_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS)
    assert config["global"]["scrape_interval"] == "15s"
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file(), rule_file
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for sc in jobs["xenbot"]["static_configs"] for t in sc["targets"]}
    assert targets == {"xenbot-a:3000", "xenbot-b:3000"}
    # the rules select the job by this name
    assert all('job="xenbot"' in r["expr"] for r in rules())


# -- compose ---------------------------------------------------------------------------------------


def test_monitoring_services_are_a_profile_on_localhost_only() -> None:
    services = load_yaml(COMPOSE)["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["monitoring"], name
        image, _, tag = service["image"].rpartition(":")
        assert image and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a version, not {tag!r}"
        assert service["ports"], name
        for port in service["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
        for volume in service["volumes"]:
            source, _, rest = volume.partition(":")
            if source.startswith("./"):
                assert rest.endswith(":ro"), f"{name}: mount {source} read-only"
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"
    # the default "docker compose up -d" is unchanged
    assert not any("monitoring" in s.get("profiles", ()) for n, s in services.items() if n.startswith("xenbot"))
    assert "profiles" not in services["xenbot-a"] and "profiles" not in services["xenbot-b"]


def test_grafana_provisioning_points_at_the_mounted_dashboard_and_prometheus() -> None:
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    dashboard_in_container = mounts["./monitoring/grafana-dashboard.json"]
    provider = load_yaml(MONITORING / "grafana-provisioning/dashboards/xenbot.yml")["providers"][0]
    assert dashboard_in_container.startswith(provider["options"]["path"].rstrip("/") + "/")
    assert dashboard_in_container.endswith(".json")
    source = load_yaml(MONITORING / "grafana-provisioning/datasources/prometheus.yml")["datasources"][0]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
