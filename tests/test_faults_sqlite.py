"""The fault matrix, SQLite locked by another process: a process holding ``BEGIN EXCLUSIVE``
on the database file for longer than t2ctl's busy timeout while a partner submits orders to
an api and a worker process. The API answers 503 problem+json meanwhile, within a bounded
time; the daemons go on by themselves once the lock is gone, and no acknowledged order is
lost."""

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from t2ctl import db
from tests.conftest import _close_handle, make_settings
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

HELD = 20.0  # seconds the other process holds the lock: past the 15 s busy timeout
LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    """A SQLite file of this test's own: the fault is SQLite's (PostgreSQL's own is a
    restart, in test_faults_postgres)."""
    yield tmp_path / "t2ctl.db"
    _close_handle()


def test_sqlite_locked_by_another_process_is_a_503_meanwhile_and_loses_nothing(
    database: Path, tls_hook: tuple[Hook, Path], tmp_path: Path
) -> None:
    hook, ca_file = tls_hook
    base = make_settings(f"sqlite:///{database}")
    stop = threading.Event()
    with (
        zoho_fleet(base, ca_file, tmp_path / "config.toml") as (zoho, config),
        Fleet(tmp_path, config, [free_port()], workers=1) as fleet,
    ):
        fleet.start()
        partner = Partner(fleet.urls, partner_key(zoho, hook.url))
        bodies = (order(n, "T2-LK") for n in itertools.count())
        load = partner.keep_submitting(bodies, stop, clients=4, pause=0.05)
        wait_until(lambda: len(partner.accepted) >= 40, timeout=30, what="40 orders accepted")
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(database), str(HELD)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        down = time.monotonic()
        assert locker.wait(timeout=HELD + 30) == 0
        up = time.monotonic()
        wait_until(lambda: len(partner.accepted) >= 40 + 80, timeout=60, what="80 more orders")
        stop.set()
        for thread in load:
            thread.join()
        wait_until(lambda: settled(partner.accepted), timeout=60, what="every order settled")
        assert fleet.stop() == [0, 0]

    window = Window(down, up, list(partner.attempts))
    during = window.during
    assert during, "orders came in while the database was locked"
    assert {a.status for a in during} <= {503, 200, 202}
    assert 503 in {a.status for a in during}
    assert {a.problem for a in during if a.status == 503} == {UNAVAILABLE}
    # One busy timeout bounds each request's wait, however many queue behind the lock; a
    # longer lock is a 503, which the partner retries.
    slowest = max(a.ended - a.started for a in during)
    assert slowest < db.BUSY_TIMEOUT + 3
    assert all(a.status in (200, 202) for a in window.after), "the first requests succeed"
    assert 500 not in partner.statuses
    # The operator is told why, the partner not.
    told = "warning t2ctl.api.errors: database unavailable: OperationalError: database is locked"
    complaints = fleet.complaints()
    assert sum(n for c, n in complaints.items() if c.startswith(told)) == partner.statuses[503]
    found = assert_promise(partner.accepted, zoho_sales(zoho.standin), hook)
    print(
        f"sqlite locked: {len(partner.accepted)} orders {dict(found.statuses)}, locked "
        f"{up - down:.1f} s, {partner.statuses[503]} answers 503 meanwhile (slowest "
        f"{slowest:.2f} s), first order accepted {window.first_accepted_after():.2f} s after "
        f"the lock went, lost {len(found.lost)}, duplicates {found.duplicates}"
    )
