"""deploy/monitoring/: the alert rules pass their promtool unit tests and link to their runbooks;
the dashboard's queries parse and name only metrics a running stack exports; and a real
Prometheus scraping the stack in production settings, with the same rules, sees an alert go
pending, fire and resolve when the stack's worker, then its beat, is stopped and started again.
"""

import json
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack.celery import beat_heartbeat_recorded
from devstack.prometheus import MONITORING_DIR, PrometheusServer, promtool
from devstack.stack import start_stack
from devstack.wait import wait_for

ALERTS = MONITORING_DIR / "alerts.yml"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
JOB = "delivery-web"


def rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING_DIR / "dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# --- The rules, offline -------------------------------------------------------------------------


@pytest.mark.checklist("P12.3")
def test_promtool_accepts_the_rules_and_every_alert_passes_its_unit_tests():
    checked = promtool("check", "rules", ALERTS.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet():
    cases = yaml.safe_load((MONITORING_DIR / "alerts.test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert fired == names
    assert quiet == names


@pytest.mark.checklist("P12.7", configured=True)
def test_every_alert_has_a_severity_a_summary_and_a_runbook_in_operations_md():
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        page, anchor = annotations["runbook_url"].split("#")
        assert page == "docs/operations.md", rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


def test_every_dashboard_query_parses(tmp_path):
    # promtool 2.42 has no bare "parse": each query becomes a recording rule it checks.
    queries = dashboard_queries()
    assert len(queries) >= 14
    records = [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]})
    )
    checked = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_broken_query_fails_the_parse_check(tmp_path):
    # The check above can fail: a query with an unbalanced parenthesis does not pass it.
    records = [{"record": "dashboard:broken", "expr": "sum(rate(celery_queue_length[5m])"}]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]})
    )
    assert promtool("check", "rules", "queries.yml", cwd=tmp_path).returncode != 0


# --- A live stack, scraped by a real Prometheus ---------------------------------------------------

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset", "inf"}


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads: identifiers that are not functions, keywords or
    labels (label matchers, grouping clauses, strings and ranges are cut out first)."""
    query = re.sub(r'"[^"]*"', "", query)
    query = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", query)
    query = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", query)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", query):
        rest = query[match.end() :].lstrip()
        if not rest.startswith("(") and match.group().lower() not in KEYWORDS:
            names.add(match.group())
    return names


def exported_names(text: str) -> set[str]:
    """Every sample name a /metrics body can hold, including families with no sample yet."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
        names.update(sample.name for sample in family.samples)
    return names


# The alert rules, with every `for:` cut to FOR_SECONDS: the shipped ones (2 to 10 minutes)
# would make this test wait as long. Expressions and thresholds are the shipped ones.
FOR_SECONDS = 5


def shortened_rules() -> dict:
    loaded = yaml.safe_load(ALERTS.read_text())
    for group in loaded["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{FOR_SECONDS}s"
    return loaded


@pytest.fixture(scope="module")
def monitored(django_db_setup, django_db_blocker, tmp_path_factory):
    """The stack in production settings (web on gunicorn with /metrics, a worker, beat, its own
    Redis) and a Prometheus scraping its /metrics every second with the shortened rules. Beat's
    heartbeat is sent every 2 s and stale after 8 s, so BeatHeartbeatStale can fire in seconds."""
    work_dir = tmp_path_factory.mktemp("monitoring")
    with django_db_blocker.unblock():
        stack = start_stack(
            work_dir / "stack",
            web_workers=2,
            BEAT_HEARTBEAT_INTERVAL_SECONDS="2",
            BEAT_HEARTBEAT_MAX_AGE_SECONDS="8",
        )
    try:
        prometheus = PrometheusServer(
            work_dir / "prometheus",
            job=JOB,
            targets=[f"127.0.0.1:{stack.web.port}"],
            rules=shortened_rules(),
        )
    except BaseException:
        stack.stop()
        raise
    yield stack, prometheus
    prometheus.stop()
    stack.stop()


def states(prometheus: PrometheusServer, name: str) -> set[str]:
    return {alert["state"] for alert in prometheus.alerts(name)}


def watch(prometheus: PrometheusServer, name: str, *, timeout: float) -> dict[str, float]:
    """Polls /api/v1/alerts until the alert fires; returns when each state was first seen."""
    seen: dict[str, float] = {}

    def firing():
        for state in states(prometheus, name):
            seen.setdefault(state, time.monotonic())
        return "firing" in seen

    wait_for(firing, timeout, f"{name} to fire", interval=0.2)
    return seen


def up_and_scraping(prometheus: PrometheusServer) -> bool:
    targets = prometheus.api("targets")["activeTargets"]
    return bool(targets) and all(t["health"] == "up" for t in targets)


@pytest.mark.checklist("P12.21")
def test_every_metric_the_dashboard_and_the_alerts_read_is_exported_by_the_running_stack(
    monitored,
):
    stack, prometheus = monitored
    # given beat's first heartbeat run, and a few requests, so the per-view metrics exist
    wait_for(lambda: beat_heartbeat_recorded(stack.redis.url), 60, "beat's first heartbeat")
    for path in ("/health/", "/api/config/", "/api/config/"):
        assert stack.web.get(path).status_code == 200
    body = stack.web.get("/metrics").text
    exported = exported_names(body)
    # `up` is Prometheus's own, per target
    wanted = set().union(*map(metric_names, dashboard_queries())) - {"up"}
    alert_reads = set().union(*(metric_names(rule["expr"]) for rule in rules())) - {"up"}
    assert {"celery_queue_length", "websocket_connections_open"} <= wanted  # the parsing works
    assert wanted - exported == set()
    assert alert_reads - exported == set()
    # and Prometheus scrapes it, with no alert firing on a healthy stack
    wait_for(lambda: up_and_scraping(prometheus), 30, "the stack's target to be up")
    firing = [a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]]
    assert not {"ServiceDown", "HealthCheckFailing", "CeleryQueueStale"} & set(firing), firing


@pytest.mark.checklist("P12.3")
def test_a_stopped_worker_fires_celery_queue_stale_and_its_restart_resolves_it(monitored):
    stack, prometheus = monitored
    wait_for(lambda: up_and_scraping(prometheus), 30, "the stack's target to be up")
    assert states(prometheus, "CeleryQueueStale") == set()

    # when the only worker stops: beat's tasks (heartbeat, sweeps) pile up in "high"
    broke = time.monotonic()
    stack.worker.kill(signal.SIGTERM)
    stack.worker.close()

    # then the alert is pending once the oldest waits over 60 s, and fires FOR_SECONDS later
    seen = watch(prometheus, "CeleryQueueStale", timeout=180)
    assert "pending" in seen and seen["pending"] < seen["firing"]
    [alert] = [a for a in prometheus.alerts("CeleryQueueStale") if a["state"] == "firing"]
    assert alert["labels"]["queue"] == "high"
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#celeryqueuestale"

    # when a worker starts again it drains the queue, and the alert resolves
    healed = time.monotonic()
    stack.start_worker()
    wait_for(lambda: not prometheus.alerts("CeleryQueueStale"), 120, "the alert to resolve")
    resolved = time.monotonic()
    print(
        f"CeleryQueueStale: pending {seen['pending'] - broke:.1f} s and firing "
        f"{seen['firing'] - broke:.1f} s after the worker stopped; resolved "
        f"{resolved - healed:.1f} s after a worker started"
    )


@pytest.mark.checklist("P12.3")
def test_a_stopped_beat_fires_beat_heartbeat_stale_and_its_restart_resolves_it(monitored):
    stack, prometheus = monitored
    # given a healthy stack: beat's heartbeat runs every 2 s
    wait_for(lambda: up_and_scraping(prometheus), 30, "the stack's target to be up")
    wait_for(lambda: not prometheus.alerts("BeatHeartbeatStale"), 60, "no stale heartbeat to start")

    # when beat stops
    broke = time.monotonic()
    stack.beat.kill(signal.SIGTERM)
    stack.beat.close()

    # then the heartbeat goes stale after 8 s: pending, then firing
    seen = watch(prometheus, "BeatHeartbeatStale", timeout=90)
    assert "pending" in seen and seen["pending"] < seen["firing"]
    assert seen["pending"] - broke >= 5  # not before the heartbeat could be stale

    # when beat starts again (it sends a heartbeat once it holds redbeat's lock), it resolves
    healed = time.monotonic()
    stack.start_beat()
    wait_for(lambda: not prometheus.alerts("BeatHeartbeatStale"), 120, "the alert to resolve")
    resolved = time.monotonic()
    print(
        f"BeatHeartbeatStale: pending {seen['pending'] - broke:.1f} s and firing "
        f"{seen['firing'] - broke:.1f} s after beat stopped; resolved "
        f"{resolved - healed:.1f} s after beat started"
    )
