"""Fixtures that run the real thing: a real SQLite file or a real PostgreSQL database per
test, the real API on waitress over loopback, and the real CLI.

Every test that takes ``db_url`` (directly or through ``settings``/``server``) runs twice, on
SQLite and on PostgreSQL. A core marked ``@THROUGH_PGBOUNCER`` runs a third time, through a
PgBouncer in transaction pooling mode in front of the same PostgreSQL. Under CI (``CI=true``)
an unreachable PostgreSQL or a missing PgBouncer fails those tests; elsewhere it skips them,
and the summary says so.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import hypothesis
import psycopg
import pytest
import requests
from cryptography.fernet import Fernet
from flask import Flask
from typer.testing import CliRunner

from t2ctl import daemon, db, partners, products, sandbox, startup, wiring
from t2ctl.api import create_app
from t2ctl.cli.main import app as cli_app
from t2ctl.config import SandboxSettings, Settings
from t2ctl.db import schema
from t2ctl.jobs.models import Job
from t2ctl.jobs.worker import Worker
from t2ctl.orders import pipeline
from t2ctl.sandbox.zoho import ZohoStandIn
from t2ctl.security.crypto import SecretBox
from t2ctl.values import Money
from tests.hooks import Hook, TlsReceiver, running_hook, self_signed

PG_ADMIN_URL = os.environ.get("T2_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

# Property tests (hypothesis, and schemathesis on it) draw the same examples on every run, so
# CI is deterministic and a failure reproduces; no example database is written anywhere; no
# per-example deadline, since a loaded machine is slow without being wrong. Each test bounds
# its own max_examples. hypothesis's caches (it reads the constants of the code under test)
# go to the temporary directory, not into the working tree.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "t2ctl-hypothesis")
)
hypothesis.settings.register_profile("t2ctl", derandomize=True, database=None, deadline=None)
hypothesis.settings.load_profile("t2ctl")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No T2CTL_* from the caller's shell, and a fresh working directory."""
    for name in list(os.environ):
        if name.startswith("T2CTL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def unavailable(message: str) -> None:
    """A service the test needs is missing: a failure under CI, a skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _postgres_database() -> Iterator[str]:
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}")
    name = f"t2test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        finally:
            _close_handle()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _close_handle() -> None:
    handle = db.database.obj
    if handle is None:
        return
    if hasattr(handle, "close_all"):
        handle.close_all()
    elif not handle.is_closed():
        handle.close()


@dataclass
class PgBouncer:
    """A PgBouncer in transaction pooling mode on a free loopback port, in front of the tests'
    PostgreSQL (trust authentication, as that PostgreSQL's)."""

    port: int

    def url(self, direct: str) -> str:
        """``direct``'s database, reached through this PgBouncer."""
        parts = urlsplit(direct)
        user = f"{parts.username}@" if parts.username else ""
        return parts._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()


PGBOUNCER_INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
"""


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """Debian's ``pgbouncer`` run for the session, with its own ini in a directory that the
    unprivileged user it must run as (it refuses root) can read; stopped at the end."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        unavailable("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    target = urlsplit(PG_ADMIN_URL)
    directory = Path(tempfile.mkdtemp(prefix="t2ctl-pgbouncer-"))
    directory.chmod(0o755)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (directory / "users.txt").write_text(f'"{target.username or "postgres"}" ""\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        PGBOUNCER_INI.format(
            host=target.hostname,
            port=target.port or 5432,
            listen=port,
            auth_file=directory / "users.txt",
        )
    )
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    log_path = directory / "pgbouncer.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([binary, *as_user, str(ini)], stdout=log, stderr=log)
    try:
        _wait_for_port(port, proc, log_path)
        yield PgBouncer(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    unavailable(f"pgbouncer did not start on port {port}: {log_path.read_text()[-2000:]}")


# The database keys that a URL through PgBouncer needs, by that URL: ``make_settings`` adds
# them, so settings derived from a test's URL (and config files written from them) keep them.
POOLED: dict[str, dict[str, object]] = {}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/t2ctl.db"
        _close_handle()
    elif request.param == "postgres":
        yield from _postgres_database()
    else:
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        for direct in _postgres_database():
            url = bouncer.url(direct)
            POOLED[url] = {"listen_url": direct, "prepared_statements": False}
            yield url
            del POOLED[url]


# The core tests that also run through PgBouncer in transaction pooling mode.
THROUGH_PGBOUNCER = pytest.mark.parametrize(
    "db_url", ["sqlite", "postgres", "pgbouncer"], indirect=True
)


def make_settings(db_url: str, **sections: dict) -> Settings:
    base = {
        "database": {"url": db_url, **POOLED.get(db_url, {})},
        "security": {"master_key": Fernet.generate_key().decode()},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Settings.model_validate(base)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    startup.connect(settings, connections=32)
    schema.migrate()
    return settings


@dataclass
class LiveServer:
    """The API served by waitress on a free loopback port, in this process."""

    url: str
    settings: Settings
    box: SecretBox
    app: Flask

    def endpoint(self, path: str) -> str:
        return f"{self.url}/t2mobile{path}"

    def add_partner(self, name: str = "t2mobile") -> partners.NewPartner:
        return partners.add(name, "http://127.0.0.1:9/hook", box=self.box, sandbox=True)

    def session(self, api_key: str) -> requests.Session:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {api_key}"
        return http


def serve_in_thread(settings: Settings) -> tuple[str, Callable[[], None], Flask]:
    """Start the real app on waitress, as ``serve --role api`` starts it; return its base URL,
    a function that stops it, and the app."""
    box = startup.connect(settings, connections=daemon.connections(settings, "api"))
    app = create_app(settings, box)
    running = sandbox.in_background(app)
    return running.url, running.stop, app


@pytest.fixture
def server(migrated: Settings) -> Iterator[LiveServer]:
    url, stop, app = serve_in_thread(migrated)
    try:
        yield LiveServer(url, migrated, SecretBox(migrated.security.master_keys), app)
    finally:
        stop()


CATALOGUE = [
    products.ProductData(
        "M365-BASIC-12M",
        "Microsoft 365 Basic",
        "12 months of M365 Basic",
        Money.parse("15000.00", "NGN"),
        12,
        True,
    ),
    products.ProductData(
        "NORTON-1Y", "Norton 360", "One device, one year", Money.parse("9999.99", "NGN"), 12, True
    ),
    products.ProductData(
        "RETIRED-1M", "Retired product", "No longer sold", Money.parse("100.00", "NGN"), 1, False
    ),
]


@pytest.fixture
def catalogue(migrated: Settings) -> list[products.ProductData]:
    products.upsert(CATALOGUE)
    return CATALOGUE


def order_body(order_id: str = "T2-20261127-000123", **changes) -> dict:
    body = {
        "orderId": order_id,
        "productId": "M365-BASIC-12M",
        "quantity": 1,
        "customer": {
            "id": "CUST-88",
            "name": "Ada Obi",
            "email": "ada@example.ng",
            "phone": "+2348031234567",
        },
        "amount": {"value": "15000.00", "currency": "NGN"},
        "metadata": {"channel": "ussd"},
    }
    body.update(changes)
    return body


# order_body's changes for the catalogue's other product (the one tests decline, often).
NORTON = {"productId": "NORTON-1Y", "amount": {"value": "9999.99", "currency": "NGN"}}


def post_orders(server: LiveServer, http: requests.Session, *order_ids: str, **changes) -> None:
    """Submit ``order_body(order_id, **changes)`` for each id over ``http``: each accepted."""
    for order_id in order_ids:
        response = http.post(server.endpoint("/fulfilment"), json=order_body(order_id, **changes))
        assert response.status_code == 202, response.text


def daemon_worker(server: LiveServer, settings: Settings | None = None) -> Worker:
    """A worker with the handlers the daemon itself would register for these settings."""
    settings = settings or server.settings
    registry = wiring.registry(settings, box=server.box, schedule=wiring.scheduler(settings))
    return wiring.worker(settings, registry, name="test-worker")


def declining_worker(server: LiveServer, product_id: str = "NORTON-1Y") -> Worker:
    """A daemon worker on which orders for ``product_id`` FAIL (PRODUCT_UNAVAILABLE), as
    ``sandbox.decline_products`` makes them."""
    settings = server.settings.model_copy(
        update={"sandbox": SandboxSettings(decline_products=[product_id])}
    )
    return daemon_worker(server, settings)


def order_job() -> Job:
    """The one order's job: a daemon may also have queued a periodic task's tick."""
    return Job.get(Job.task == pipeline.TASK)


def drain(worker: Worker) -> int:
    ran = 0
    while worker.run_once():
        ran += 1
    return ran


def submit(server: LiveServer, *bodies: dict) -> requests.Session:
    """Post orders as a new partner (allowed the burst); return that partner's session."""
    new = server.add_partner()
    partners.update(new.partner.name, sandbox=True, rate_limit=f"{max(100, len(bodies))}/minute")
    http = server.session(new.key.api_key)
    for body in bodies:
        assert http.post(server.endpoint("/fulfilment"), json=body).status_code == 202
    return http


def at_once(count: int, call: Callable[[], object]) -> list:
    """Run ``call`` on ``count`` threads released together; return what each returned."""
    barrier = threading.Barrier(count)
    results = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(call())
        finally:
            db.database.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@dataclass
class Cli:
    """Runs ``t2ctl`` in-process with a config file pointing at the test database."""

    config_path: Path

    def __call__(self, *args: str, input: str | None = None):
        return CliRunner().invoke(
            cli_app, ["--config", str(self.config_path), *args], input=input, catch_exceptions=False
        )


def write_config(path: Path, settings: Settings, extra: str = "") -> Path:
    """A config file for ``settings``' database and master key, plus ``extra`` TOML."""
    key = settings.security.master_key.get_secret_value()
    database = {"url": settings.database.url, **settings.database.model_dump(exclude_defaults=True)}
    keys = "".join(f"{name} = {json.dumps(value)}\n" for name, value in database.items())
    path.write_text(f'[database]\n{keys}\n[security]\nmaster_key = "{key}"\n' + extra)
    path.chmod(0o600)
    return path


@pytest.fixture
def cli(migrated: Settings, tmp_path: Path) -> Cli:
    return Cli(write_config(tmp_path / "config.toml", migrated))


BACKENDS = ("sqlite", "postgres", "pgbouncer")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say how many database tests ran on each backend, so a skipped Postgres (or PgBouncer)
    is visible."""
    counts: Counter = Counter()
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            for backend in BACKENDS:
                if f"[{backend}" in getattr(report, "nodeid", ""):
                    counts[(backend, outcome)] += 1
    if counts:
        terminalreporter.section("database backends")
        for backend in BACKENDS:
            parts = [
                f"{counts[(backend, o)]} {o}"
                for o in ("passed", "failed", "skipped", "error")
                if counts[(backend, o)]
            ]
            terminalreporter.write_line(f"{backend}: {', '.join(parts) or 'none'}")


def zoho_keys(standin: ZohoStandIn, url: str) -> dict[str, object]:
    """The ``[zoho]`` settings that point t2ctl at the stand-in served at ``url``."""
    return {
        "enabled": True,
        "client_id": standin.client_id,
        "client_secret": standin.client_secret,
        "refresh_token": standin.refresh_token,
        "organization_id": standin.organization_id,
        "accounts_url": url,
        "api_url": f"{url}/inventory/v1",
    }


@dataclass
class ZohoEnv:
    """The Zoho stand-in over HTTP, seeded with the catalogue, and settings pointing at it."""

    standin: ZohoStandIn
    url: str
    settings: Settings

    def config_toml(self, **zoho: object) -> str:
        """The ``[zoho]`` section of a config file for this stand-in."""
        keys = {**zoho_keys(self.standin, self.url), **zoho}
        return "\n[zoho]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


def zoho_settings(base: Settings, standin: ZohoStandIn, url: str, **zoho: object) -> Settings:
    """``base`` (its database and master key) with Zoho enabled against the stand-in."""
    return make_settings(
        base.database.url,
        security={"master_key": base.security.master_key.get_secret_value()},
        zoho={**zoho_keys(standin, url), **zoho},
    )


@contextlib.contextmanager
def zoho_standin(base: Settings, catalogue: list[products.ProductData]) -> Iterator[ZohoEnv]:
    """The Zoho stand-in served over HTTP, an item for each product of ``catalogue``, and
    ``base`` pointed at it."""
    standin = ZohoStandIn(window=1.0)
    for product in catalogue:
        standin.add_item(
            product.product_id,
            product.name,
            float(product.price.value),
            active=product.active,
            term_months=product.term_months,
        )
    running = sandbox.in_background(sandbox.build(standin))
    try:
        yield ZohoEnv(standin, running.url, zoho_settings(base, standin, running.url))
    finally:
        running.stop()


@pytest.fixture
def zoho(migrated: Settings, catalogue: list[products.ProductData]) -> Iterator[ZohoEnv]:
    """Zoho's limit of 100 calls a minute is compressed to 100 a second here, and so is the
    budget of the workers tests build (80 per ``per``, the default share): waiting minutes
    would prove nothing more."""
    with zoho_standin(migrated, catalogue) as env:
        yield env


@pytest.fixture
def hook() -> Iterator[Hook]:
    """The partner's receiver, at ``hook.url``."""
    receiver, running = running_hook()
    try:
        yield receiver
    finally:
        running.stop()


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[TlsReceiver]:
    """The receiver over TLS on loopback, its certificate (for localhost) signed by itself:
    a partner reached over a VPN with a private CA. It can be stopped and started again."""
    receiver = TlsReceiver(Hook(), *self_signed(tmp_path))
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def tls_hook(tls_receiver: TlsReceiver) -> tuple[Hook, Path]:
    """The TLS receiver's recording hook, and its certificate to trust (``webhooks.ca_file``)."""
    return tls_receiver.hook, tls_receiver.ca_file
