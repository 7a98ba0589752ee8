"""What PgBouncer in transaction pooling mode breaks, and the settings that mend it: psycopg's
prepared statements (``database.prepared_statements``) and LISTEN (``database.listen_url``).
The core of intake and workers runs through PgBouncer too, in test_intake and test_workers."""

import contextlib
import logging
import threading
import time

import peewee
import psycopg
import pytest

from t2ctl import db, startup
from t2ctl.config import Settings
from t2ctl.jobs import queue
from tests.conftest import Cli, make_settings, write_config

PGBOUNCER = pytest.mark.parametrize("db_url", ["pgbouncer"], indirect=True)
QUERY = "SELECT count(*) FROM pg_class WHERE relname = %s"


def repeated_while_pinned(url: str) -> tuple:
    """Run one query a sixth time, when psycopg prepares it by default, then once more while
    another client holds the server session it ran on: PgBouncer hands t2ctl another one."""
    for _ in range(6):
        db.database.execute_sql(QUERY, ("job",)).fetchone()
    with psycopg.connect(url, autocommit=True) as other, other.transaction():
        other.execute("SELECT 1")  # takes the session t2ctl just gave back (the last used)
        return db.database.execute_sql(QUERY, ("job",)).fetchone()


@PGBOUNCER
def test_prepared_statements_left_on_break_a_repeated_query(settings: Settings) -> None:
    db.connect(settings.database.url, prepared_statements=True)
    with pytest.raises(peewee.ProgrammingError, match='prepared statement "_pg3_0" does not exist'):
        repeated_while_pinned(settings.database.url)


@PGBOUNCER
def test_prepared_statements_off_repeat_a_query_on_any_session(settings: Settings) -> None:
    assert settings.database.prepared_statements is False
    startup.connect(settings, connections=4)
    assert repeated_while_pinned(settings.database.url) == (0,)


@PGBOUNCER
def test_a_worker_hears_notify_through_pgbouncer_on_the_direct_listen_url(
    settings: Settings,
) -> None:
    startup.connect(settings, connections=4)
    heard = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with contextlib.closing(db.listen(queue.CHANNEL, timeout=0.2)) as notifications:
            for notified in notifications:
                if notified:
                    heard.set()
                if stop.is_set() or notified:
                    return

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        # NOTIFY from pooled sessions, as an enqueue does, until the listener is in place.
        deadline = time.monotonic() + 15
        while not heard.wait(0.2) and time.monotonic() < deadline:
            with db.transaction():
                db.notify(queue.CHANNEL)
    finally:
        stop.set()
        listener.join(timeout=5)
    assert heard.is_set()


@PGBOUNCER
def test_without_a_listen_url_nothing_listens_through_pgbouncer_and_the_log_says_why(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    pooled = make_settings(
        settings.database.url,
        database={"listen_url": ""},
        security={"master_key": settings.security.master_key.get_secret_value()},
    )
    startup.connect(pooled, connections=4)
    with (
        caplog.at_level(logging.WARNING, "t2ctl.db"),
        contextlib.closing(db.listen(queue.CHANNEL, timeout=0.1)) as notifications,
    ):
        with db.transaction():
            db.notify(queue.CHANNEL)
        assert [next(notifications) for _ in range(3)] == [False] * 3
        # No pooled server session listens, to hand notifications to whichever client is next.
        with psycopg.connect(settings.database.listen_url) as direct:
            listening = direct.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            ).fetchone()
        assert listening == (0,)
    (warning,) = [r for r in caplog.records if getattr(r, "action", None) == "listen_pooled"]
    assert "set database.listen_url to a direct PostgreSQL URL" in warning.getMessage()


@PGBOUNCER
def test_config_check_says_the_database_is_behind_a_pooler(migrated: Settings, tmp_path) -> None:
    cli = Cli(write_config(tmp_path / "config.toml", migrated))
    result = cli("config", "check")
    assert result.exit_code == 0, result.output
    assert "goes through a connection pooler (PgBouncer?)" in result.output
    assert "LISTEN session reachable: postgresql://" in result.output
