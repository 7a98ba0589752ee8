"""The query plans of the SQL a request really ran: which index the database walks for it."""

import contextlib
import logging
from collections.abc import Callable, Iterator

import peewee

from t2ctl import db


class _Statements(logging.Handler):
    """peewee logs every statement it runs as ``(sql, params)`` at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.ran: list[tuple[str, tuple]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):
            sql, params = record.msg
            self.ran.append((sql, tuple(params or ())))


@contextlib.contextmanager
def statements() -> Iterator[list[tuple[str, tuple]]]:
    """Every statement run (by any thread: the server's too) inside the block."""
    logger = logging.getLogger("peewee")
    handler, level = _Statements(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.ran
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def plan(sql: str, params: tuple) -> str:
    """The plan of ``sql`` as text. PostgreSQL is told not to scan tables sequentially: a test's
    few rows would make a scan cheapest, and the question is whether an index serves the query."""
    handle = db.database.obj
    if isinstance(handle, peewee.SqliteDatabase):
        rows = handle.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return "\n".join(str(row[-1]) for row in rows)
    with handle.connection_context(), handle.atomic():
        handle.execute_sql("SET LOCAL enable_seqscan = off")
        rows = handle.execute_sql(f"EXPLAIN {sql}", params).fetchall()
    return "\n".join(row[0] for row in rows)


def assert_walked(
    ran: list[tuple[str, tuple]], picked: Callable[[str], bool], count: int, *indexes: str
) -> None:
    """The ``count`` statements of ``ran`` that ``picked`` selects each walk one of
    ``indexes`` in its order: nothing sorted apart."""
    chosen = [(sql, params) for sql, params in ran if picked(sql)]
    assert len(chosen) == count, chosen
    for sql, params in chosen:
        found = plan(sql, params)
        assert any(index in found for index in indexes), found
        assert "TEMP B-TREE" not in found and "Sort" not in found, f"sorted apart: {found}"
