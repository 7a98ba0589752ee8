"""What operators see of a running daemon: metrics, JSON logs with ids, request ids, health
probes, systemd's notifications, ``t2ctl status`` and shell completion (real processes and
real HTTP, each database test on SQLite and on PostgreSQL)."""

import json
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import peewee
import pytest
import requests
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from t2ctl import db, partners, products
from t2ctl.config import DatabaseSettings
from t2ctl.daemon import Watchdog
from t2ctl.db import schema
from t2ctl.monitoring.metrics import HTTP_REQUESTS
from t2ctl.security.crypto import SecretBox
from tests.conftest import (
    CATALOGUE,
    NORTON,
    Cli,
    LiveServer,
    ZohoEnv,
    daemon_worker,
    drain,
    make_settings,
    order_body,
    submit,
    write_config,
)
from tests.hooks import Hook
from tests.openapi_check import assert_documented
from tests.processes import LISTENING, run, serve, wait_until
from tests.test_secrets import zoho_and_tls

ROOT = Path(__file__).parent.parent
METRICS = re.compile(r"metrics on (http://[\d.]+:\d+/metrics)")


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, by name and labels."""
    text = requests.get(url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_an_order_flow_shows_in_the_metrics_and_in_json_logs_carrying_its_ids(
    zoho: ZohoEnv, tls_hook: tuple[Hook, Path], tmp_path: Path
) -> None:
    hook, ca_file = tls_hook
    config = write_config(tmp_path / "config.toml", zoho.settings, zoho_and_tls(zoho, ca_file))
    box = SecretBox(zoho.settings.security.master_keys)
    key = partners.add("acme", hook.url, box=box, sandbox=False).key.api_key
    with serve(tmp_path, config, "--port", "0") as daemon:
        api = daemon.wait_for(LISTENING).group(1)
        metrics = daemon.wait_for(METRICS).group(1)
        traced = {"X-API-Key": key, "X-Request-ID": "portal-7f3a91"}
        answer = requests.post(
            f"{api}/t2mobile/fulfilment", json=order_body("T2-OPS-1"), headers=traced
        )
        assert answer.status_code == 202 and answer.headers["X-Request-ID"] == "portal-7f3a91"
        unknown = requests.post(
            f"{api}/t2mobile/fulfilment",
            json=order_body("T2-OPS-2", productId="NO-SUCH"),
            headers={"X-API-Key": key},
        )
        assert unknown.status_code == 422
        wait_until(lambda: len(hook.received) == 1, timeout=60, what="order.fulfilled delivered")

        def jobs_done() -> bool:
            got = scrape(metrics)
            return sample(got, "t2ctl_jobs", task="deliver", state="done") == 1

        # The delivery's job is recorded done after its attempt and the order's job.
        wait_until(jobs_done, timeout=30, what="the delivery's job recorded done")
        got = scrape(metrics)
        assert daemon.stop() == 0

    route = "/t2mobile/fulfilment"
    count = "t2ctl_http_request_duration_seconds_count"
    assert sample(got, count, route=route, method="POST", status="202") == 1
    assert sample(got, count, route=route, method="POST", status="422") == 1
    assert sample(got, "t2ctl_database_up") == 1
    assert sample(got, "t2ctl_jobs", task="process_order", state="done") == 1
    assert sample(got, "t2ctl_job_oldest_due_age_seconds") == 0
    assert sample(got, "t2ctl_job_duration_seconds_count", task="process_order", outcome="done")
    assert sample(got, "t2ctl_orders_finished_total", status="FULFILLED") == 1
    webhook = {"event": "order.fulfilled", "outcome": "delivered"}
    assert sample(got, "t2ctl_webhook_attempts_total", **webhook) == 1
    assert sample(got, "t2ctl_webhook_deliveries", status="delivered") == 1
    zoho_calls = "t2ctl_zoho_request_duration_seconds_count"
    created = {"method": "POST", "endpoint": "/salesorders", "status": "201"}
    assert sample(got, zoho_calls, **created) == 1
    confirmed = "/salesorders/{id}/status/confirmed"
    assert sample(got, zoho_calls, method="POST", endpoint=confirmed, status="200") == 1
    assert sample(got, zoho_calls, method="POST", endpoint="/oauth/v2/token", status="200") == 1

    records = daemon.records  # every line parses as JSON, or this fails
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    traced_lines = [r for r in records if r.get("request_id") == "portal-7f3a91"]
    (access,) = traced_lines  # one line for an accepted order: the access log's, with its id
    assert (access["logger"], access["status"], access["route"]) == ("t2ctl.access", 202, route)
    assert (access["action"], access["order_id"]) == ("http_request", "T2-OPS-1")
    assert access["partner"] == "acme" and access["client"] == "127.0.0.1"
    refused = [r for r in records if r.get("status") == 422]
    assert len(refused) == 1 and re.fullmatch(r"[0-9a-f]{32}", refused[0]["request_id"])
    (fulfilled,) = [r for r in records if r.get("action") == "order_fulfilled"]
    assert fulfilled["order_id"] == "T2-OPS-1" and isinstance(fulfilled["job_id"], int)
    (delivered,) = [r for r in records if r.get("action") == "webhook_delivered"]
    assert delivered["order_id"] == "T2-OPS-1" and delivered["webhook_id"].startswith("msg_")
    assert delivered["job_id"] != fulfilled["job_id"]


def test_x_request_id_is_returned_as_sent_or_made_up_even_on_a_refusal(
    server: LiveServer, catalogue
) -> None:
    http = submit(server)
    products = server.endpoint("/products")
    assert http.get(products, headers={"X-Request-ID": "a1:b2/c3"}).headers["X-Request-ID"] == (
        "a1:b2/c3"
    )
    made = [http.get(products).headers["X-Request-ID"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", one) for one in made) and made[0] != made[1]
    for insane in ("two words", "x" * 129, "<script>"):
        got = http.get(products, headers={"X-Request-ID": insane}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", got), insane
    refused = requests.get(products, headers={"X-Request-ID": "no-key-1"})
    assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "no-key-1"


def test_health_reports_the_queue_and_readiness_follows_the_schema(
    server: LiveServer, catalogue
) -> None:
    health = requests.get(server.endpoint("/health"))
    assert_documented("GET", "/health", health)
    assert health.json()["queue"] == {"queued": 0, "running": 0, "dead": 0}
    assert health.json()["oldestPendingSeconds"] is None
    submit(server, order_body("T2-H-1"))  # no worker here: the job waits
    body = requests.get(server.endpoint("/health")).json()
    assert (body["status"], body["migrations"], body["queue"]["queued"]) == ("ok", "ok", 1)
    assert body["oldestPendingSeconds"] >= 0

    live = requests.get(server.endpoint("/health/live"))
    assert live.json() == {"status": "ok"}
    assert_documented("GET", "/health/live", live)
    ready = requests.get(server.endpoint("/health/ready"))
    assert ready.status_code == 200 and ready.json()["pending"] == []
    assert_documented("GET", "/health/ready", ready)

    # The database restored from a backup older than this daemon's code: not ready.
    history = peewee.Table("schema_migration").bind(db.database.obj)
    last = schema.status()[-1].name
    with db.transaction():
        history.delete().where(history.c.name == last).execute()
    behind = requests.get(server.endpoint("/health/ready"))
    assert behind.status_code == 503
    assert behind.json() == {
        "status": "unavailable",
        "database": "ok",
        "migrations": "pending",
        "pending": [last],
    }
    assert_documented("GET", "/health/ready", behind)
    assert requests.get(server.endpoint("/health")).json()["migrations"] == "pending"
    assert requests.get(server.endpoint("/health/live")).status_code == 200


def test_under_systemd_serve_notifies_ready_then_the_watchdog_then_stopping(
    tmp_path: Path,
) -> None:
    address = f"@t2ctl-test-{secrets.token_hex(6)}"  # abstract: no path-length limit
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind("\0" + address[1:])
        notify.settimeout(20)
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}  # checks every 0.2 s
        with serve(tmp_path, None, "--port", "0", env=env) as daemon:
            ready = notify.recv(4096).decode().splitlines()
            assert ready[0] == "READY=1"
            assert ready[1].startswith("STATUS=all role, sandbox mode, http://127.0.0.1:")
            pings = [notify.recv(4096).decode() for _ in range(3)]
            assert pings == ["WATCHDOG=1"] * 3
            daemon.proc.send_signal(signal.SIGTERM)
            while (said := notify.recv(4096).decode()) == "WATCHDOG=1":
                pass
            assert said == "STOPPING=1"
            assert daemon.proc.wait(timeout=30) == 0
    probes = [r for r in daemon.records if r.get("route") == "/t2mobile/health/live"]
    assert not probes, "the watchdog's probes are logged at DEBUG, below the INFO default"


def test_the_watchdog_is_withheld_while_the_http_server_does_not_answer(
    server: LiveServer,
) -> None:
    assert Watchdog(server.url, None).trouble(timeout=5) is None
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        silent = f"http://127.0.0.1:{closed.getsockname()[1]}"
        trouble = Watchdog(silent, None).trouble(timeout=5)
    assert trouble == (
        f"the HTTP server does not answer {silent}/t2mobile/health/live: ConnectionError"
    )


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (ROOT / "daemon" / "t2ctl.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    # verify insists that ExecStart exists: point it at this install's t2ctl.
    here = tmp_path / "t2ctl.service"
    here.write_text(unit.replace("/opt/t2ctl/bin/t2ctl", shutil.which("t2ctl")))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(here)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "t2ctl.service" not in result.stderr, result.stderr  # no warning about the unit


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_the_reconcile_timer_and_its_service_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for name in ("t2ctl-reconcile.service", "t2ctl-reconcile.timer"):
        unit = (ROOT / "daemon" / name).read_text()
        (tmp_path / name).write_text(unit.replace("/opt/t2ctl/bin/t2ctl", shutil.which("t2ctl")))
    assert "reconcile" in (tmp_path / "t2ctl-reconcile.service").read_text()
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(path) for path in sorted(tmp_path.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "t2ctl-reconcile" not in result.stderr, result.stderr


def test_on_a_terminal_the_log_is_text_for_people(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "t2ctl", "serve", "--port", "0"],
        cwd=tmp_path,
        env={**os.environ, "T2CTL_METRICS__PORT": "0"},
        stderr=follower,
        stdout=subprocess.DEVNULL,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"listening on" not in seen and time.monotonic() < deadline:
            if select.select([leader], [], [], 1)[0]:
                seen += os.read(leader, 4096)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        os.close(leader)
    line = next(x for x in seen.decode().splitlines() if "listening on" in x)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO +t2ctl\.daemon: listening on", line)
    assert not line.startswith("{") and "action=" not in line


def test_status_shows_the_queue_then_failures_and_dead_deliveries(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    submit(server, order_body("T2-S-1"), order_body("T2-S-2", **NORTON))
    waiting = json.loads(cli("status", "--json").stdout)
    assert waiting["database"] == {
        "url": server.settings.database.redacted_url(),
        "reachable": True,
        "pendingMigrations": [],
    }
    assert waiting["mode"] == "sandbox"
    assert waiting["queue"] == {"queued": 2, "waitingForRetry": 0, "running": 0, "dead": 0}
    assert waiting["oldestPending"]["seconds"] >= 0 and waiting["oldestPending"]["since"]

    # NORTON-1Y is declined; every webhook goes to a closed port and dies after one retry.
    key = server.settings.security.master_key.get_secret_value()
    worker = daemon_worker(
        server,
        make_settings(
            server.settings.database.url,
            security={"master_key": key},
            sandbox={"decline_products": ["NORTON-1Y"]},
            webhooks={"retry_schedule": ["0s"]},
        ),
    )
    drain(worker)
    after = json.loads(cli("status", "--json").stdout)
    assert after["queue"]["queued"] == 0 and after["oldestPending"]["seconds"] is None
    assert after["failuresLastHour"] == {
        "ordersFailed": 1,
        "jobsDead": 0,
        "webhookAttemptsFailed": 4,
    }
    assert after["deliveries"] == {"pending": 0, "dead": 2}

    screen = cli("status")
    assert screen.exit_code == 0
    lines = {line.split("  ")[0]: line for line in screen.stdout.splitlines()}
    assert "sandbox (provisioning is simulated)" in lines["mode"]
    assert "ok, schema current" in lines["database"]
    assert "0 queued (0 waiting to retry), 0 running" in lines["queue"]
    assert (
        "1 order(s) failed, 0 job(s) died, 4 webhook attempt(s) failed"
        in (lines["failures, last hour"])
    )
    assert lines["dead deliveries"].split()[-3:] == ["2", "(0", "pending)"]


def test_status_says_when_the_database_is_unreachable_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[database]\nurl = "postgresql://t2ctl@127.0.0.1:1/t2ctl"\n'
        f'[security]\nmaster_key = "{Fernet.generate_key().decode()}"\n'
    )
    config.chmod(0o600)
    done = run(tmp_path, "--config", str(config), "status")
    assert done.returncode == 1
    assert "postgresql://t2ctl@127.0.0.1:1/t2ctl  UNREACHABLE: " in done.stdout
    assert "Connection refused" in done.stdout and "Traceback" not in done.stderr


def test_status_watch_refreshes_until_interrupted(migrated, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", migrated)
    watch = subprocess.Popen(
        [sys.executable, "-m", "t2ctl", "--config", str(config), "status", "--watch", "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # --json with --watch: one JSON object a line, a line a refresh (default every 2 s)
        screens = [json.loads(watch.stdout.readline()) for _ in range(2)]
    finally:
        watch.send_signal(signal.SIGINT)
        code = watch.wait(timeout=30)
    assert [s["queue"]["queued"] for s in screens] == [0, 0]
    assert screens[0]["time"] < screens[1]["time"], "two reads, two seconds apart"
    assert code == 0 and "Traceback" not in watch.stderr.read()


def test_shell_completion_completes_commands(tmp_path: Path) -> None:
    script = run(tmp_path, env={**os.environ, "_T2CTL_COMPLETE": "source_bash"})
    assert script.returncode == 0 and "_T2CTL_COMPLETE=complete_bash" in script.stdout
    env = {**os.environ, "_T2CTL_COMPLETE": "complete_bash", "COMP_WORDS": "t2ctl db b"}
    done = run(tmp_path, env={**env, "COMP_CWORD": "2"})
    assert done.stdout.split() == ["backup"]


def test_a_backup_taken_under_write_load_opens_and_holds_every_committed_order(
    tmp_path: Path,
) -> None:
    """SQLite only: on PostgreSQL `db backup` refuses and names pg_dump (test_cli)."""
    settings = make_settings(f"sqlite:///{tmp_path}/live.db")
    config = write_config(tmp_path / "config.toml", settings)
    assert run(tmp_path, "--config", str(config), "db", "migrate").returncode == 0
    db.connect(settings.database.url)
    products.upsert(CATALOGUE)
    new = partners.add(
        "acme",
        "http://127.0.0.1:9/hook",
        box=SecretBox(settings.security.master_keys),
        sandbox=True,
    )
    partners.update("acme", sandbox=True, rate_limit="100000/minute")
    db.database.close()
    acknowledged: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    with serve(tmp_path, config, "--port", "0") as daemon:  # its workers write too
        api = daemon.wait_for(LISTENING).group(1)

        def write(lane: int) -> None:
            http = requests.Session()
            http.headers["X-API-Key"] = new.key.api_key
            n = 0
            while not stop.is_set():
                order_id = f"T2-B{lane}-{n}"
                answer = http.post(f"{api}/t2mobile/fulfilment", json=order_body(order_id))
                if answer.status_code != 202:
                    refused.append(f"{order_id}: {answer.status_code} {answer.text}")
                    return
                acknowledged.append(order_id)
                n += 1

        writers = [threading.Thread(target=write, args=(lane,)) for lane in range(3)]
        for writer in writers:
            writer.start()
        try:
            wait_until(lambda: len(acknowledged) >= 60, timeout=60, what="orders flowing")
            committed = set(acknowledged)  # each answered 202: its commit was done
            backup = tmp_path / "backup.db"
            taken = run(tmp_path, "--config", str(config), "db", "backup", str(backup))
            during = len(acknowledged) - len(committed)
        finally:
            stop.set()
            for writer in writers:
                writer.join(timeout=30)
        assert daemon.stop() == 0
    assert not refused, refused
    assert taken.returncode == 0, taken.stderr
    assert during > 0, "orders were being written while the backup ran"

    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        jobs = copy.execute("SELECT COUNT(*) FROM job WHERE task = 'process_order'").fetchone()
    # Opened as the README restores it: the copy as the database, under the same master key.
    copy_of = settings.model_copy(update={"database": DatabaseSettings(url=f"sqlite:///{backup}")})
    restored = write_config(tmp_path / "restored.toml", copy_of)
    listed = run(
        tmp_path, "--config", str(restored), "orders", "list", "--limit", "10000", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    held = {order["orderId"] for order in json.loads(listed.stdout)}
    assert committed <= held, f"missing from the backup: {sorted(committed - held)[:5]}"
    assert jobs == (len(held),), "each order's job is in the backup with it"


def test_a_made_up_http_method_does_not_grow_the_metrics(server: LiveServer) -> None:
    for method in ("FOO1", "FOO2", "BAR"):
        assert requests.request(method, server.endpoint("/products")).status_code == 405
    methods = {
        sample.labels["method"]
        for family in HTTP_REQUESTS.collect()
        for sample in family.samples
        if sample.labels["status"] == "405"
    }
    # (this process's other tests may have counted real methods' 405s)
    assert "other" in methods and not methods & {"FOO1", "FOO2", "BAR"}


def test_a_postgresql_that_never_answers_is_reported_within_its_connect_timeout(
    tmp_path: Path,
) -> None:
    """A server that takes the connection and then says nothing (frozen, or a half-open
    link): the command gives up after ``db.CONNECT_TIMEOUT`` seconds and says so."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        port = silent.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "postgresql://t2ctl@127.0.0.1:{port}/t2ctl"\n'
            f'[security]\nmaster_key = "{Fernet.generate_key().decode()}"\n'
        )
        config.chmod(0o600)
        began = time.monotonic()
        done = run(tmp_path, "--config", str(config), "status")
        took = time.monotonic() - began
    assert done.returncode == 1
    assert "UNREACHABLE: " in done.stdout and "timeout" in done.stdout.lower()
    assert took < db.CONNECT_TIMEOUT + 10
