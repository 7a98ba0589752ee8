"""What ships in daemon/monitoring/: the alert rules pass promtool's check and their own unit
tests, and every t2ctl_* series they name is one that a real ``/metrics`` listener, started
as the daemon starts it, shows. A misspelt series would otherwise be an alert that never
fires, silently."""

import re
import shutil
import subprocess
from collections.abc import Iterable
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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_rules_name_only_series_the_daemon_exports(scraped: str) -> None:
    names = exported(scraped)
    assert {"t2ctl_reconcile_drift", "t2ctl_webhook_attempts_total"} <= names
    assert unknown(rule_series(), names) == set()
    # The check would see a misspelling, or a histogram named without its suffix.
    assert unknown(["rate(t2ctl_webhook_attempt_total[5m])"], names) == {
        "t2ctl_webhook_attempt_total"
    }
    assert unknown(["t2ctl_zoho_request_duration_seconds"], names)
