"""What ships in daemon/monitoring/: the alert rules pass promtool's check and their own unit
tests, and every t2ctl_* series the rules and the Grafana dashboard name is one that a real
``/metrics`` listener, started as the daemon starts it, shows. A misspelt series would
otherwise be an alert that never fires and a panel that stays empty, silently."""

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from t2ctl import wiring
from t2ctl.config import MetricsSettings
from t2ctl.monitoring import metrics
from tests.conftest import Cli, unavailable

MONITORING = Path(__file__).parent.parent / "daemon" / "monitoring"
RULES = MONITORING / "t2ctl-alerts.yml"
RULE_TESTS = MONITORING / "t2ctl-alerts.test.yml"
DASHBOARD = MONITORING / "t2ctl-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SERIES = re.compile(r"\bt2ctl_[a-z0-9_]+\b")
# The series a family has before its first sample: the exposition gives the family's name and
# type at once, its samples only once observed.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def promtool(*args: str) -> subprocess.CompletedProcess:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run(
        [found, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60
    )


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def panels(within: list[dict]) -> Iterator[dict]:
    """Every panel, those inside a collapsed row too."""
    for panel in within:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]


def rule_series() -> list[str]:
    """The alerts' expressions and the series their unit tests feed them."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fed = [series["series"] for test in tests for series in test["input_series"]]
    return [rule["expr"] for rule in alert_rules()] + fed


def exported(exposition: str) -> set[str]:
    """Every series name a scrape offers, by its families' samples and types."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def unknown(exprs: Iterable[str], names: set[str]) -> set[str]:
    return {name for expr in exprs for name in SERIES.findall(expr)} - names


@pytest.fixture
def scraped(cli: Cli) -> str:
    """A scrape of ``/metrics`` served as ``t2ctl serve`` serves it, once a routine reconcile
    has run (its gauges are absent until then)."""
    ran = cli("reconcile")
    assert ran.exit_code == 0, ran.output
    listener = metrics.serve(MetricsSettings(port=0), wiring.gauges)
    try:
        return requests.get(f"http://127.0.0.1:{listener.port}/metrics", timeout=5).text
    finally:
        listener.stop()


def test_the_alert_rules_pass_promtool_and_their_unit_tests_cover_each_alert() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(names)} rules found" in checked.stdout
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout

    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    evals = [e for test in tests for e in test["alert_rule_test"]]
    fired = {e["alertname"] for e in evals if e["exp_alerts"]}
    quiet = {e["alertname"] for e in evals if not e["exp_alerts"]}
    assert fired == quiet == set(names), "each alert is tested firing and not firing"


def test_each_alert_says_how_urgent_it_is_and_what_to_run() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.search(r"`(t2ctl|systemctl|journalctl) ", rule["annotations"]["description"])


def test_every_dashboard_expression_is_promql(tmp_path: Path) -> None:
    """promtool parses each as a recording rule; Grafana's own $__ variables become 5m."""
    exprs = dashboard_exprs()
    recorded = [
        {"record": f"t2ctl:dashboard_{n}", "expr": re.sub(r"\$__\w+", "5m", expr)}
        for n, expr in enumerate(exprs)
    ]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_rules_and_the_dashboard_name_only_series_the_daemon_exports(scraped: str) -> None:
    names = exported(scraped)
    assert {"t2ctl_reconcile_drift", "t2ctl_webhook_attempts_total"} <= names
    assert unknown(rule_series(), names) == set()
    assert unknown(dashboard_exprs(), names) == set()
    # The check would see a misspelling, or a histogram named without its suffix.
    assert unknown(["rate(t2ctl_webhook_attempt_total[5m])"], names) == {
        "t2ctl_webhook_attempt_total"
    }
    assert unknown(["t2ctl_zoho_request_duration_seconds"], names)
    # ...and the dashboard shows every family the daemon exports (a counter's _created, its
    # start time, is a family of its own in this format).
    families = {f.name for f in text_string_to_metric_families(scraped)}
    shown = {n.removesuffix("_total") for n in SERIES.findall(" ".join(dashboard_exprs()))}
    shown |= {re.sub(r"_(bucket|count|sum)$", "", n) for n in shown}
    assert {f for f in families if not f.endswith("_created")} <= shown


def test_the_dashboard_imports_into_grafana() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["uid"] and dashboard["title"]
    (variable,) = dashboard["templating"]["list"]
    assert (variable["type"], variable["name"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    every = list(panels(dashboard["panels"]))
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in every:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"], panel["title"]
