"""The fault matrix, PostgreSQL restarted mid-load: on a private cluster (the shared server
serves other tests), stopped and started again while a partner submits orders to an api and a
worker process. The API answers 503 problem+json meanwhile, within a bounded time; the
daemons recover by themselves, and no acknowledged order is lost."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from t2ctl import db
from tests.cluster import Cluster
from tests.conftest import IN_CI, _close_handle, make_settings
from tests.faults import (
    Fleet,
    Partner,
    assert_outage_held,
    assert_promise,
    free_port,
    partner_key,
    through_an_outage,
    zoho_fleet,
    zoho_sales,
)
from tests.hooks import Hook

OUTAGE = 4.0  # seconds the database stays down


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    try:
        private = Cluster()
        private.start()
    except (FileNotFoundError, RuntimeError) as exc:
        if IN_CI:
            pytest.fail(f"a private PostgreSQL cluster cannot be run: {exc}")
        pytest.skip(f"a private PostgreSQL cluster cannot be run: {exc}")
    try:
        private.create_database()
        yield private
    finally:
        _close_handle()
        private.remove()


def test_postgresql_restarted_mid_load_is_a_503_meanwhile_and_loses_nothing(
    cluster: Cluster, tls_hook: tuple[Hook, Path], tmp_path: Path
) -> None:
    hook, ca_file = tls_hook
    health: list[requests.Response] = []
    with (
        zoho_fleet(make_settings(cluster.url), ca_file, tmp_path / "config.toml") as (
            zoho,
            config,
        ),
        Fleet(tmp_path, config, [free_port()], workers=1) as fleet,
    ):
        fleet.start()
        partner = Partner(fleet.urls, partner_key(zoho, hook.url))

        def restart() -> None:
            down = time.monotonic()
            cluster.stop()
            health.append(requests.get(f"{fleet.urls[0]}/t2mobile/health", timeout=10))
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
            cluster.start()
            db.reset()  # this test's own connection died with the server, as any thread's did

        window = through_an_outage(fleet, partner, "T2-PG", restart)

    (answer,) = health
    assert answer.status_code == 503
    assert answer.json()["status"] == answer.json()["database"] == "unavailable"
    told = "warning t2ctl.api.errors: database unavailable: OperationalError"
    slowest = assert_outage_held(window, partner, fleet, told)
    assert slowest < 10, "answered, not held"
    found = assert_promise(partner.accepted, zoho_sales(zoho.standin), hook)
    print(
        f"postgres restart: {len(partner.accepted)} orders {dict(found.statuses)}, down "
        f"{window.up - window.down:.1f} s, {partner.statuses[503]} answers 503 meanwhile "
        f"(slowest {slowest:.2f} s), first order accepted {window.first_accepted_after():.2f} s "
        f"after it was back, lost {len(found.lost)}, duplicates {found.duplicates}"
    )
