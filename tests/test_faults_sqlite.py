"""The fault matrix, SQLite locked by another process: a process holding ``BEGIN EXCLUSIVE``
on the database file for longer than t2ctl's busy timeout while a partner submits orders to
an api and a worker process. The API answers 503 problem+json meanwhile, within a bounded
time; the daemons go on by themselves once the lock is gone, and no acknowledged order is
lost."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from t2ctl import db
from tests.conftest import _close_handle, make_settings
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
    with (
        zoho_fleet(base, ca_file, tmp_path / "config.toml") as (zoho, config),
        Fleet(tmp_path, config, [free_port()], workers=1) as fleet,
    ):
        fleet.start()
        partner = Partner(fleet.urls, partner_key(zoho, hook.url))

        def lock() -> None:
            locker = subprocess.Popen(
                [sys.executable, "-c", LOCKER, str(database), str(HELD)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
            assert locker.wait(timeout=HELD + 30) == 0

        window = through_an_outage(fleet, partner, "T2-LK", lock)

    told = "warning t2ctl.api.errors: database unavailable: OperationalError: database is locked"
    slowest = assert_outage_held(window, partner, fleet, told)
    # One busy timeout bounds each request's wait, however many queue behind the lock; a
    # longer lock is a 503, which the partner retries.
    assert slowest < db.BUSY_TIMEOUT + 3
    found = assert_promise(partner.accepted, zoho_sales(zoho.standin), hook)
    print(
        f"sqlite locked: {len(partner.accepted)} orders {dict(found.statuses)}, locked "
        f"{window.up - window.down:.1f} s, {partner.statuses[503]} answers 503 meanwhile "
        f"(slowest {slowest:.2f} s), first order accepted {window.first_accepted_after():.2f} s "
        f"after the lock went, lost {len(found.lost)}, duplicates {found.duplicates}"
    )
