"""The monitoring files: alert rules (checked and unit-tested by promtool), the Prometheus
configuration, and the Grafana dashboard, each naming only metrics that /metrics exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import fakeredis
import pytest
import yaml

from shared.metrics import RELAY_LATENCY, Counters
from tests.conftest import build_settings
from tests.doubles import FakePublisher
from tests.ops.promtool import promtool
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "smsproxy.json"
OPERATIONS = ROOT / "docs" / "operations.md"
# Prometheus's own series, not ours
PROMETHEUS_OWN = {"up"}


def _run(*args: str, cwd: Path = PROMETHEUS, stdin: str | None = None) -> str:
    result = subprocess.run([promtool(), *args], cwd=cwd, input=stdin,  # noqa: S603
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _exposition() -> str:
    """/metrics of a fresh deployment with one histogram observed (every family appears)."""
    redis = fakeredis.FakeRedis(decode_responses=True)
    Counters(redis).observe(RELAY_LATENCY, 0.4)
    app = create_app(build_settings(SMSPROXY_POOL_TARGETS="GB=2"), redis_client=redis,
                     publisher=FakePublisher())
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _exposed_names(text: str) -> set[str]:
    names = set()
    for kind_line in re.finditer(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        name, kind = kind_line.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, flags=re.M))
    return names


def _alerts() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p.get("targets") for p in panels)
    return [t["expr"] for p in panels for t in p["targets"]]


def _metric_names(expr: str) -> set[str]:
    """The series an expression reads: identifiers not followed by '(' (a function), not
    label names or keywords."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_labels)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", without_groupings))
    return {n for n in names if n.startswith("smsproxy_") or n in PROMETHEUS_OWN}


def test_metrics_exposition_passes_promtool():
    _run("check", "metrics", stdin=_exposition())


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    assert "SUCCESS" in _run("check", "rules", "alerts.yml")
    assert "SUCCESS" in _run("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test_and_a_runbook():
    tested = {case["alertname"]
              for test in yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
              for case in test.get("alert_rule_test", [])
              if case.get("exp_alerts")}  # a test that expects it to fire
    runbook = OPERATIONS.read_text()
    for rule in _alerts():
        assert rule["alert"] in tested, f"{rule['alert']} has no test that makes it fire"
        assert f"### {rule['alert']}" in runbook, f"{rule['alert']} has no runbook section"
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"


def test_alerts_and_dashboard_name_only_exposed_metrics():
    exposed = _exposed_names(_exposition()) | PROMETHEUS_OWN
    exprs = [rule["expr"] for rule in _alerts()] + _dashboard_exprs()
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used, "no metric names found: the parser is broken"
    assert used - exposed == set()
    # every family /metrics exposes is on the dashboard
    families = {n for n in re.findall(r"^# TYPE (smsproxy_\S+)", _exposition(), flags=re.M)}
    shown = {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
    assert {f.removesuffix("_total") for f in families} - \
        {s.removesuffix("_total") for s in shown} == set()


def test_the_dashboard_uses_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [datasource] = source["datasources"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {datasource["uid"]}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_config_is_valid(tmp_path):
    # The token file is written by the compose service at start; here, a stand-in for it.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    token = tmp_path / "token"
    token.write_text("t")
    job["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    output = _run("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 1 rule files found" in output


def test_a_broken_rule_file_fails_the_check(tmp_path):
    """The checks above can fail: promtool refuses a rule naming an unknown function."""
    (tmp_path / "bad.yml").write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: nope(up)\n")
    result = subprocess.run([promtool(), "check", "rules", "bad.yml"], cwd=tmp_path,  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (kind) (rate(smsproxy_webhooks_total{kind="x"}[5m]))', {"smsproxy_webhooks_total"}),
    ("smsproxy_a > on (queue) smsproxy_b or up == 0", {"smsproxy_a", "smsproxy_b", "up"}),
])
def test_metric_names_are_read_from_expressions(expr, names):
    assert _metric_names(expr) == names
