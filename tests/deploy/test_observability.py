"""Alerts and dashboard: valid for Prometheus and Grafana, and only about metrics that exist."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import DEPLOY, PROMTOOL, ROOT, Manifest, one, require_tool

Objects = Callable[[str], tuple[Manifest, ...]]

DASHBOARD = DEPLOY / "k8s" / "base" / "monitoring" / "dashboards" / "replaypipe.json"
METRICS_FILE = DEPLOY / "metrics.txt"
ALERT_TESTS = DEPLOY / "prometheus-tests" / "alerts_test.yaml"
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"
# Series that Prometheus makes itself, not the services.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "sum", "min", "max", "avg", "count", "stddev", "stdvar",
    "topk", "bottomk", "quantile", "count_values", "group", "inf", "nan",
}  # fmt: skip


def metric_contract() -> dict[str, str]:
    """deploy/metrics.txt as ``{family name: type}``."""
    families = {}
    for line in METRICS_FILE.read_text().splitlines():
        name, _, comment = line.partition("#")
        if name.strip():
            families[name.strip()] = comment.split()[0] if comment.split() else ""
    return families


def series_names() -> set[str]:
    """Every series name a query may use: the families, plus each histogram's parts."""
    names = set()
    for family, kind in metric_contract().items():
        names.add(family)
        if kind == "histogram":
            names.update(f"{family}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def metric_names_in(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", text):
        name = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        found.add(name)
    return found


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL text in the dashboard: panel targets and query variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key in ("query", "definition") and isinstance(value, str):
                yield from re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,", value)
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def rule_groups(objects: Objects) -> list[dict[str, Any]]:
    """The rule groups of the rendered PrometheusRule (a copy: tests may edit it)."""
    rule = one(objects("prod"), "PrometheusRule", "replaypipe")
    groups: list[dict[str, Any]] = copy.deepcopy(rule["spec"]["groups"])
    return groups


def write_rules_file(groups: list[dict[str, Any]], path: Path) -> Path:
    """A plain Prometheus rules file (JSON is YAML) with the groups of the PrometheusRule."""
    path.write_text(json.dumps({"groups": groups}))
    return path


def test_metric_contract_names_each_family_once_with_a_type() -> None:
    lines = [ln.split("#")[0].strip() for ln in METRICS_FILE.read_text().splitlines()]
    names = [n for n in lines if n]
    assert len(names) == len(set(names))
    assert set(metric_contract().values()) <= {"counter", "gauge", "histogram"}
    for name, kind in metric_contract().items():
        assert name.startswith("replaypipe_"), name
        assert name.endswith("_total") == (kind == "counter"), name


def test_metric_name_extraction_ignores_functions_labels_and_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x",le!="1"}[5m] offset 1h)))'
        " / on (pod) group_left b_total > 1e-9 and time() - c:recorded"
    )
    assert metric_names_in(expr) == {"a_bucket", "b_total", "c:recorded"}


def test_alert_rules_pass_promtool_check(objects: Objects, tmp_path: Path) -> None:
    promtool = require_tool(PROMTOOL)
    rules = write_rules_file(rule_groups(objects), tmp_path / "rules.yaml")
    result = subprocess.run(
        [str(promtool), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_as_their_unit_tests_say(objects: Objects, tmp_path: Path) -> None:
    # The unit tests check labels only: annotations are prose, checked by `check rules`.
    promtool = require_tool(PROMTOOL)
    groups = rule_groups(objects)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    write_rules_file(groups, tmp_path / "rules.yaml")
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    result = subprocess.run(
        [str(promtool), "test", "rules", ALERT_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_use_only_contract_metrics(objects: Objects) -> None:
    groups = rule_groups(objects)
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    allowed = series_names() | recorded | PROMETHEUS_SERIES
    for group in groups:
        for rule in group["rules"]:
            unknown = metric_names_in(str(rule["expr"])) - allowed
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)}"


def test_every_alert_has_a_severity_and_a_runbook_section(objects: Objects) -> None:
    guide = OPERATIONS_GUIDE.read_text()
    anchors = {m.lower() for m in re.findall(r'<a id="([^"]+)"></a>', guide)}
    for group in rule_groups(objects):
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            notes = rule["annotations"]
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert notes["summary"] and notes["description"] and notes["runbook"]
            anchor = notes["runbook_url"].removeprefix("docs/operations.md#")
            assert anchor == f"alert-{rule['alert'].lower()}"
            assert anchor in anchors, f"docs/operations.md has no section for {rule['alert']}"


def test_dashboard_is_grafana_json_with_queries() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    assert len(list(dashboard_queries(dashboard))) > 20


def test_dashboard_uses_only_contract_metrics() -> None:
    allowed = series_names() | PROMETHEUS_SERIES
    for query in dashboard_queries(json.loads(DASHBOARD.read_text())):
        unknown = metric_names_in(query) - allowed
        assert not unknown, f"{query}: {sorted(unknown)}"


@pytest.mark.parametrize(
    "title",
    [
        "Requests per second by status",
        "Events and bytes accepted per second",
        "Rejections by reason",
        "Request latency percentiles",
        "Masker throughput",
        "Masked fields by rule",
        "Masker consumer lag per partition",
        "Sink consumer lag per partition",
        "Sink rows and inserts per second",
        "Insert latency percentiles",
        "DLQ rate by reason",
    ],
)
def test_dashboard_has_the_panels_operations_asks_for(title: str) -> None:
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert title in titles


def test_dashboard_is_provisioned_by_a_labelled_configmap(objects: Objects) -> None:
    configmap = one(objects("prod"), "ConfigMap", "replaypipe-grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["replaypipe.json"]) == json.loads(DASHBOARD.read_text())
