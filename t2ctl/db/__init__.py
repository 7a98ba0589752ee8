"""The one database handle and the one way to write.

``connect(url)`` builds the peewee ``Database`` once per process and binds every model to it.
Behind PgBouncer in transaction pooling mode, ``connect`` takes ``prepared_statements=False``
(a pooler hands each transaction any server session, where psycopg's named statements are
missing or another client's) and ``listen_url``, a direct session for ``listen``.
``transaction()`` is the way to write: on SQLite it takes the write lock up front
(``BEGIN IMMEDIATE``) so concurrent writers queue on the busy timeout instead of failing
half-way; on Postgres it is an ordinary transaction. ``single()`` is for a write of one
statement, which on Postgres needs no transaction of its own.
"""

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee
import psycopg
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase

from t2ctl import urls
from t2ctl.errors import Unavailable

logger = logging.getLogger(__name__)

database = peewee.DatabaseProxy()
# Where ``listen`` opens its own session; None: on the pooled handle's (see ``connect``).
_listen_url: str | None = None

# How long a SQLite writer waits for its turn, in all, before the database counts as
# unavailable (the API's 503): writes take milliseconds, so only an outage or a long
# maintenance write (a migration, a VACUUM, another process's stuck transaction) waits this long.
BUSY_TIMEOUT = 15.0
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": int(BUSY_TIMEOUT * 1000),
    # A savepoint's statement journal (a nested transaction's) in memory, not a temporary
    # file created and deleted each time.
    "temp_store": "memory",
}
# A PostgreSQL that accepts connections and never answers (a frozen server, a half-open link)
# would hold a request for as long as the kernel keeps trying: seconds bound it, and a 503.
CONNECT_TIMEOUT = 5
DRIVER_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


def connect(
    url: str,
    *,
    max_connections: int = 32,
    listen_url: str | None = None,
    prepared_statements: bool = True,
) -> peewee.Database:
    """Build the database for ``url`` and make it the one every model uses. On PostgreSQL,
    ``prepared_statements=False`` stops psycopg preparing a query it runs often, and
    ``listen_url`` gives ``listen`` a session of its own, outside the pool."""
    global _listen_url
    _listen_url = listen_url or None
    path = urls.sqlite_path(url)
    built: peewee.Database
    if path is not None:
        built = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=BUSY_TIMEOUT)
    else:
        params = db_url.parse(url, unquote_password=True, unquote_user=True)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)  # ?connect_timeout= in the URL wins
        built = _Pool(
            params.pop("database"),
            max_connections=max_connections,
            stale_timeout=300,
            timeout=15,
            prefer_psycopg3=True,
            **({} if prepared_statements else {"prepare_threshold": None}),
            **params,
        )
    database.initialize(built)
    return built


# A pooled connection given back this recently goes out again unchecked (HikariCP's "alive
# bypass window"): peewee's pool checks every connection it hands out by a round trip
# (``SELECT 1``), a third of a GET's round trips, to learn what the request's first query
# learns anyway. A connection idle longer is checked; one that died within the window fails
# its request's first query (a 503), and is dropped when given back broken.
CHECKED_AFTER = 1.0


class _Pool(PooledPostgresqlDatabase):
    """peewee's pool, checking on the way out only a connection idle for ``CHECKED_AFTER``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def _can_reuse(self, conn: Any) -> bool:
        """On check-in: whether it goes back to the pool; when it went back."""
        reusable = bool(super()._can_reuse(conn))
        if reusable:
            self._returned[conn] = time.monotonic()
        return reusable

    def _is_closed(self, conn: Any) -> bool:
        """On check-out: whether to open a new connection in its place."""
        returned = self._returned.pop(conn, None)
        if (
            returned is not None
            and time.monotonic() - returned < CHECKED_AFTER
            and not conn.closed
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        ):
            return False
        return bool(super()._is_closed(conn))


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


# SQLite has one writer at a time. Threads of this process queue for it on this lock, which
# hands over at once, instead of in SQLite's busy handler, which sleeps for milliseconds at a
# time; other processes still wait in the busy handler.
_sqlite_writer = threading.RLock()


@contextlib.contextmanager
def transaction(since: float | None = None) -> Iterator[None]:
    """A write transaction; nested calls become savepoints. On SQLite, waiting to begin it
    counts from ``since`` (a ``time.monotonic()``; now by default)."""
    with _committed():
        if not is_sqlite():
            with database.atomic():
                yield
            return
        with _sqlite_turn(since), database.atomic("IMMEDIATE"):
            yield


@dataclass
class _Frame:
    """What hangs on one ``transaction()`` or savepoint of it: the channels to ``notify``
    before the commit, the ``after_commit`` callbacks after it."""

    channels: set[str] = field(default_factory=set)
    callbacks: list[Callable[[], None]] = field(default_factory=list)


_hung = threading.local()


def _frames() -> list[_Frame]:
    """This thread's frames, the transaction's first, then each savepoint's within it."""
    return _hung.__dict__.setdefault("frames", [])


def after_commit(callback: Callable[[], None]) -> None:
    """Call ``callback`` once the ``transaction()`` this thread is in has committed, and never
    if it (or the savepoint this is in) rolls back: for what may only follow a commit."""
    frames = _frames()
    if not frames:
        raise RuntimeError("after_commit is for use inside transaction()")
    frames[-1].callbacks.append(callback)


@contextlib.contextmanager
def _committed() -> Iterator[_Frame]:
    """A frame for this transaction or savepoint: a savepoint's goes to its transaction's
    once it is released, the transaction's callbacks run once it committed; a rollback drops
    it."""
    frames = _frames()
    frame = _Frame()
    frames.append(frame)
    try:
        yield frame
    except BaseException:
        frames.pop()
        raise
    frames.pop()
    if frames:
        frames[-1].channels |= frame.channels
        frames[-1].callbacks += frame.callbacks
        return
    for channel in frame.channels:
        _notify_committed(channel)
    for callback in frame.callbacks:
        callback()


@contextlib.contextmanager
def joined() -> Iterator[None]:
    """The caller's transaction if one is open, else a new one: for a write that must commit
    with whatever the caller writes, and needs no savepoint of its own (two statements)."""
    if database.in_transaction():
        yield
        return
    with transaction():
        yield


@contextlib.contextmanager
def single() -> Iterator[None]:
    """For a write of one statement: the caller's transaction if one is open; else, on
    PostgreSQL, none (the statement commits by itself: one round trip, where ``BEGIN`` and
    ``COMMIT`` made three), and on SQLite a ``transaction()`` (its write lock taken in turn
    with this process's other writers). Nothing hangs on its commit: no ``notify``, no
    ``after_commit``."""
    if database.in_transaction() or not is_sqlite():
        yield
        return
    with transaction():
        yield


def _locked_out() -> peewee.OperationalError:
    return peewee.OperationalError(f"database is locked: no turn to write in {BUSY_TIMEOUT:g} s")


@contextlib.contextmanager
def _sqlite_turn(since: float | None = None) -> Iterator[None]:
    """This thread's turn to write, waited for ``BUSY_TIMEOUT`` in all: the wait behind this
    process's other writers and SQLite's busy handler (behind other processes) share one
    deadline. Otherwise each thread queued here would wait its own full busy timeout in
    turn, and a request would hang for minutes behind another process's lock. A wait of up
    to a tenth of it is not taken off: under load most writers wait some milliseconds, and
    two more statements each (setting the timeout and putting it back) cost more than the
    deadline would gain."""
    started = time.monotonic() if since is None else since
    if not _sqlite_writer.acquire(timeout=max(0.0, started + BUSY_TIMEOUT - time.monotonic())):
        raise _locked_out()
    waited = time.monotonic() - started
    shortened = waited > BUSY_TIMEOUT / 10 and not database.in_transaction()
    try:
        if shortened:
            left = max(1, int((BUSY_TIMEOUT - waited) * 1000))
            database.execute_sql(f"PRAGMA busy_timeout = {left}")
        yield
    finally:
        try:
            if shortened:
                database.execute_sql(f"PRAGMA busy_timeout = {SQLITE_PRAGMAS['busy_timeout']}")
        finally:
            _sqlite_writer.release()


class _Slot(peewee.Node):
    """Where a ``Prepared`` query's argument goes: compiled as a parameter, it keeps the
    converter to apply to each value it is later given: its own, or that of the field it is
    compared with (a foreign key's takes a model or its id)."""

    def __init__(self, index: int, convert: Callable[[Any], Any] | None):
        self.index = index
        self.convert = convert

    def __sql__(self, ctx: peewee.Context) -> peewee.Context:
        self.convert = self.convert or ctx.state.converter
        ctx._values.append(self)  # type: ignore[attr-defined]  # the statement's parameters
        return ctx.literal(ctx.state.param or "?")


# What a peewee cursor wrapper holds of one run; the rest, its layout (which column goes to
# which model and field, and their converters), its ``initialize`` works out again from the
# statement's columns on every run, at more cost than reading the row: a Prepared keeps it.
_PER_RUN = frozenset({"cursor", "count", "index", "populated", "row_cache"})


class Prepared:
    """A query whose SQL is built once per kind of database, then run with new values.

    Peewee builds a query's SQL again on every run, and for a select of a few joined tables
    or an insert of a dozen columns that costs several times what the database takes to run
    it: the API's and the workers' hot statements are written once with this. ``build`` takes
    one placeholder per argument, to use only as a value: compared with a field (whose
    converter it then takes), or inserted or set (``prepared_insert`` and ``prepared_update``
    give those their fields' converters). Every column an insert leaves out must have no
    default, or a constant one.
    """

    def __init__(
        self,
        build: Callable[..., peewee.BaseQuery],
        arity: int,
        converters: Sequence[Callable[[Any], Any] | None] = (),
    ):
        self._build = build
        self._converters = list(converters) or [None] * arity
        self._compiled: dict[type, tuple[peewee.BaseQuery, str, list[Any]]] = {}
        self._layouts: dict[type, dict[str, Any]] = {}

    def first(self, *args: Any) -> Any:
        """The first row as the query gives it (a model with its joins, or a tuple), or None."""
        kind, rows = self._rows(args)
        row = next(iter(rows), None)
        rows.cursor.close()  # done with: an INSERT's RETURNING, say, is not left half-read
        self._learn(kind, rows)
        return row

    def all(self, *args: Any) -> list[Any]:
        """Every row, as the query gives them."""
        kind, rows = self._rows(args)
        found = list(rows)
        self._learn(kind, rows)
        return found

    def changed(self, *args: Any) -> int:
        """Run an UPDATE or DELETE; how many rows it changed."""
        _query, cursor = self._execute(type(database.obj), args)
        return cursor.rowcount

    def _execute(self, kind: type, args: tuple[Any, ...]) -> tuple[peewee.BaseQuery, Any]:
        query, sql, params = self._compile(kind)
        values = [
            (p.convert(args[p.index]) if p.convert else args[p.index])
            if isinstance(p, _Slot)
            else p
            for p in params
        ]
        return query, database.execute_sql(sql, values)

    def _rows(self, args: tuple[Any, ...]) -> tuple[type, Any]:
        kind = type(database.obj)
        query, cursor = self._execute(kind, args)
        rows = query._get_cursor_wrapper(cursor)  # type: ignore[attr-defined]
        layout = self._layouts.get(kind)
        if layout is not None:
            vars(rows).update(layout)
        return kind, rows

    def _learn(self, kind: type, rows: Any) -> None:
        if kind not in self._layouts and rows.initialized:
            self._layouts[kind] = {k: v for k, v in vars(rows).items() if k not in _PER_RUN}

    def _compile(self, kind: type) -> tuple[peewee.BaseQuery, str, list[Any]]:
        compiled = self._compiled.get(kind)
        if compiled is None:
            query = self._build(*(_Slot(i, c) for i, c in enumerate(self._converters)))
            sql, params = query.sql()
            compiled = self._compiled[kind] = (query, sql, params)
        return compiled


class PreparedInsert(Prepared):
    """A ``Prepared`` INSERT of one row (``prepared_insert``); ``first`` is its ``(id,)``."""

    def __init__(self, build: Callable[..., peewee.BaseQuery], fields: Sequence[peewee.Field]):
        super().__init__(build, len(fields), converters=[field.db_value for field in fields])
        self.fields = fields

    def add(self, row: peewee.Model) -> None:
        """Insert ``row``'s values of these fields, and give it the id it got. Read from the
        row's data: a foreign key given as an id would otherwise load its row, a query each."""
        data = row.__data__
        (row.id,) = self.first(*(data.get(f.name) for f in self.fields))  # type: ignore[attr-defined]  # every table's key is id


def prepared_insert(
    fields: Sequence[peewee.Field],
    *,
    fixed: Mapping[peewee.Field, Any] | None = None,
    ignore_conflicts: bool = False,
) -> PreparedInsert:
    """A prepared INSERT of one row: ``fields`` given in that order, ``fixed`` the same every
    time. With ``ignore_conflicts`` a row a unique index already holds is not added, and
    ``first`` is None."""
    model = fields[0].model

    def build(*values: Any) -> peewee.BaseQuery:
        query = model.insert({**dict(zip(fields, values, strict=True)), **(fixed or {})})
        if ignore_conflicts:
            query = query.on_conflict_ignore()
        return query.returning(model._meta.primary_key).tuples()

    return PreparedInsert(build, fields)


def prepared_update(
    fields: Sequence[peewee.Field],
    where: Callable[[Any], peewee.Expression],
    *,
    fixed: Mapping[peewee.Field, Any] | None = None,
) -> Prepared:
    """A ``Prepared`` UPDATE: ``changed(*values, key)`` sets ``fields`` to ``values`` (and
    ``fixed``, the same every time) in the rows ``where(key)`` picks."""
    model = fields[0].model

    def build(*values: Any) -> peewee.BaseQuery:
        *changes, key = values
        return model.update({**dict(zip(fields, changes, strict=True)), **(fixed or {})}).where(
            where(key)
        )

    return Prepared(build, len(fields) + 1, converters=[*(f.db_value for f in fields), None])


def locked(query: peewee.Select) -> peewee.Select:
    """``query`` taking row locks until the transaction ends: ``FOR UPDATE`` on Postgres;
    SQLite needs none, as ``transaction()`` already holds its one write lock."""
    return query if is_sqlite() else query.for_update()


def serialize(key: int) -> None:
    """Take a lock on ``key`` (a 64-bit integer) until the transaction ends, so transactions
    taking it run one after another: an advisory lock on Postgres; SQLite needs none, as
    ``transaction()`` already holds its one write lock. Call it inside ``transaction()``."""
    if not is_sqlite():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


def reset() -> None:
    """Drop this thread's connection after an error, so its next query opens a fresh one:
    a long-lived thread would otherwise keep a connection the server has closed. A pooled one
    is closed, not given back: the pool would hand it out again unchecked within
    ``CHECKED_AFTER``."""
    with contextlib.suppress(Exception):
        if isinstance(database.obj, _Pool):
            database.obj.manual_close()
        else:
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
    """Postgres ``NOTIFY``, once what the caller wrote is committed: at once outside a
    transaction; inside ``transaction()``, once a channel after it commits, and never if it
    rolls back. A no-op on SQLite, whose readers poll.

    Not inside the transaction: PostgreSQL holds the lock that puts notifications in commit
    order from a notifying transaction's commit until its commit record is flushed, so every
    such commit waits for the flush of the one before (with its notification inside, intake
    at 16 clients ran at half the rate, waiting on that lock). A notification by itself
    writes nothing and holds the lock for a moment."""
    if is_sqlite():
        return
    frames = _frames()
    if frames:
        frames[-1].channels.add(channel)
    else:
        _notify_committed(channel)


def _notify_committed(channel: str) -> None:
    """What is committed stays so if this fails: listeners then find it at their next poll."""
    try:
        database.execute_sql("SELECT pg_notify(%s, '')", (channel,))
    except DRIVER_ERRORS as exc:
        logger.warning("could not notify %s: %s", channel, exc, extra={"action": "notify_failed"})


def listen(channel: str, *, timeout: float) -> Generator[bool, None, None]:
    """Postgres ``LISTEN``: yields True for each notification, or False after ``timeout``
    seconds of quiet, so the caller can check whether to stop. Waiting sends no query; closing
    the generator unlistens and hands the connection back.

    It listens on a session of its own at ``listen_url`` when ``connect`` was given one, else
    on this thread's pooled connection. Through a pooler that is no session of its own: in
    transaction mode the pooler hands the next client whatever the server sends, so
    notifications would be lost without a word. There it does not listen, warns, and only
    yields False: the caller's polling finds the work."""
    try:
        with _listening_session() as connection:
            if connection is None:
                while True:
                    time.sleep(timeout)
                    yield False
            connection.execute(f'LISTEN "{channel}"')
            try:
                while True:
                    got = False
                    for _ in connection.notifies(timeout=timeout, stop_after=1):
                        got = True
                    yield got
            finally:
                with contextlib.suppress(psycopg.Error):
                    connection.execute("UNLISTEN *")
    except psycopg.Error as exc:
        raise peewee.OperationalError(str(exc)) from exc


@contextlib.contextmanager
def _listening_session() -> Iterator[psycopg.Connection | None]:
    """The session to LISTEN on, or None when there is only a pooler's."""
    if _listen_url is not None:
        with psycopg.connect(_listen_url, autocommit=True, connect_timeout=15) as direct:
            if behind_pooler(direct):
                logger.warning(
                    "database.listen_url reaches PostgreSQL through a connection pooler: "
                    "LISTEN works there only in session pooling mode",
                    extra={"action": "listen_pooled"},
                )
            yield direct
        return
    try:
        pooled = database.connection()
        if behind_pooler(pooled):
            logger.warning(
                "database.url reaches PostgreSQL through a connection pooler and "
                "database.listen_url is not set: no LISTEN, so new work is found by polling, "
                "a few seconds late; set database.listen_url to a direct PostgreSQL URL",
                extra={"action": "listen_pooled"},
            )
            database.close()  # the pool's connection back: the caller only sleeps
            yield None
        else:
            yield pooled
    finally:
        database.close()


def behind_pooler(connection: psycopg.Connection | None = None) -> bool:
    """Whether ``connection`` (this thread's pooled one by default) reaches PostgreSQL through
    a pooler such as PgBouncer: the server process answering is not the one the connection
    was told of when it opened, as a pooler sends a key of its own."""
    connection = connection if connection is not None else database.connection()
    try:
        row = connection.execute("SELECT pg_backend_pid()").fetchone()
    except psycopg.Error as exc:
        raise peewee.OperationalError(str(exc)) from exc
    return row is not None and row[0] != connection.info.backend_pid
