"""The fault matrix, PostgreSQL restarted mid-load: on a private cluster (the shared server
serves other tests), stopped and started again while a partner submits orders to an api and a
worker process. The API answers 503 problem+json meanwhile, within a bounded time; the
daemons recover by themselves, and no acknowledged order is lost."""

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from t2ctl import db
from tests.cluster import Cluster
from tests.conftest import IN_CI, _close_handle, make_settings
from tests.faults import (
    UNAVAILABLE,
    Fleet,
    Partner,
    Window,
    assert_promise,
    free_port,
    order,
    partner_key,
    settled,
    zoho_fleet,
    zoho_sales,
)
from tests.hooks import Hook
from tests.processes import wait_until

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
    stop = threading.Event()
    with (
        zoho_fleet(make_settings(cluster.url), ca_file, tmp_path / "config.toml") as (
            zoho,
            config,
        ),
        Fleet(tmp_path, config, [free_port()], workers=1) as fleet,
    ):
        fleet.start()
        partner = Partner(fleet.urls, partner_key(zoho, hook.url))
        bodies = (order(n, "T2-PG") for n in itertools.count())
        load = partner.keep_submitting(bodies, stop, clients=4, pause=0.05)
        wait_until(lambda: len(partner.accepted) >= 40, timeout=30, what="40 orders accepted")
        down = time.monotonic()
        cluster.stop()
        health = requests.get(f"{fleet.urls[0]}/t2mobile/health", timeout=10)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
        cluster.start()
        up = time.monotonic()
        db.reset()  # this test's own connection died with the server, as any thread's did
        wait_until(lambda: len(partner.accepted) >= 40 + 80, timeout=60, what="80 more orders")
        stop.set()
        for thread in load:
            thread.join()
        wait_until(lambda: settled(partner.accepted), timeout=60, what="every order settled")
        assert fleet.stop() == [0, 0]

    assert health.status_code == 503
    assert health.json()["status"] == health.json()["database"] == "unavailable"
    window = Window(down, up, list(partner.attempts))
    during = window.during
    assert during, "orders came in while the database was down"
    assert {a.status for a in during} <= {503} | {200, 202}, "503 (or accepted just before)"
    assert {a.problem for a in during if a.status == 503} == {UNAVAILABLE}
    assert max(a.ended - a.started for a in during) < 10, "answered, not held"
    assert all(a.status in (200, 202) for a in window.after), "the first requests succeed"
    assert 500 not in partner.statuses
    assert (
        sum(
            n
            for complaint, n in fleet.complaints().items()
            if complaint.startswith(
                "warning t2ctl.api.errors: database unavailable: OperationalError"
            )
        )
        == partner.statuses[503]
    )
    found = assert_promise(partner.accepted, zoho_sales(zoho.standin), hook)
    print(
        f"postgres restart: {len(partner.accepted)} orders {dict(found.statuses)}, down "
        f"{up - down:.1f} s, {partner.statuses[503]} answers 503 meanwhile (slowest "
        f"{max(a.ended - a.started for a in during):.2f} s), first order accepted "
        f"{window.first_accepted_after():.2f} s after it was back, lost {len(found.lost)}, "
        f"duplicates {found.duplicates}"
    )
