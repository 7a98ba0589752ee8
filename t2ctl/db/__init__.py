"""The one database handle and the one way to write.

``connect(url)`` builds the peewee ``Database`` once per process and binds every model to it.
``transaction()`` is the only way to write: on SQLite it takes the write lock up front
(``BEGIN IMMEDIATE``) so concurrent writers queue on the busy timeout instead of failing
half-way; on Postgres it is an ordinary transaction.
"""

import contextlib
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import peewee
import psycopg
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase

from t2ctl import urls
from t2ctl.errors import Unavailable

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 15000,
}
DRIVER_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


def connect(url: str, *, max_connections: int = 32) -> peewee.Database:
    """Build the database for ``url`` and make it the one every model uses."""
    path = urls.sqlite_path(url)
    built: peewee.Database
    if path is not None:
        built = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=15)
    else:
        params = db_url.parse(url, unquote_password=True, unquote_user=True)
        built = PooledPostgresqlDatabase(
            params.pop("database"),
            max_connections=max_connections,
            stale_timeout=300,
            timeout=15,
            prefer_psycopg3=True,
            **params,
        )
    database.initialize(built)
    return built


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


# SQLite has one writer at a time. Threads of this process queue for it on this lock, which
# hands over at once, instead of in SQLite's busy handler, which sleeps for milliseconds at a
# time; other processes still wait in the busy handler.
_sqlite_writer = threading.RLock()


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """A write transaction; nested calls become savepoints."""
    if not is_sqlite():
        with database.atomic():
            yield
        return
    with _sqlite_writer, database.atomic("IMMEDIATE"):
        yield


def locked(query: peewee.Select) -> peewee.Select:
    """``query`` taking row locks until the transaction ends: ``FOR UPDATE`` on Postgres;
    SQLite needs none, as ``transaction()`` already holds its one write lock."""
    return query if is_sqlite() else query.for_update()


def reset() -> None:
    """Drop this thread's connection after an error, so its next query opens a fresh one:
    a long-lived thread would otherwise keep a connection the server has closed."""
    with contextlib.suppress(Exception):
        database.close()


def ping() -> None:
    """Run a trivial query; raise Unavailable if the database cannot be reached."""
    try:
        database.execute_sql("SELECT 1")
    except DRIVER_ERRORS as exc:
        raise Unavailable("The database cannot be reached.") from exc


def sqlite_file() -> Path | None:
    return Path(database.obj.database) if is_sqlite() else None


def notify(channel: str) -> None:
    """Postgres ``NOTIFY``: delivered when the current transaction commits, dropped if it rolls
    back. A no-op on SQLite, whose readers poll."""
    if not is_sqlite():
        database.execute_sql("SELECT pg_notify(%s, '')", (channel,))


def listen(channel: str, *, timeout: float) -> Generator[bool, None, None]:
    """Postgres ``LISTEN`` on this thread's connection: yields True for each notification, or
    False after ``timeout`` seconds of quiet, so the caller can check whether to stop. Waiting
    sends no query; closing the generator unlistens and hands the connection back."""
    connection = database.connection()
    try:
        connection.execute(f'LISTEN "{channel}"')
        while True:
            got = False
            for _ in connection.notifies(timeout=timeout, stop_after=1):
                got = True
            yield got
    except psycopg.Error as exc:
        raise peewee.OperationalError(str(exc)) from exc
    finally:
        with contextlib.suppress(psycopg.Error):
            connection.execute("UNLISTEN *")
        database.close()
