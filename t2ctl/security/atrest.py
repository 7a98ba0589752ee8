"""Every column that holds a Fernet token, re-encrypted together and checked at start-up.

``rotate`` re-encrypts them all under the first master key in one transaction, so the old key
can be removed as soon as it commits. ``check`` proves the configured keys still open what is
stored, so a daemon with the wrong key refuses to start instead of failing order by order.
"""

import functools
import operator
from collections.abc import Iterable, Iterator
from typing import Any, cast

import peewee

from t2ctl import db
from t2ctl.db.models import BaseModel, Order, Partner, RetiredWebhookSecret, ZohoToken
from t2ctl.errors import T2Error
from t2ctl.security.crypto import SecretBox, Undecryptable

# (what it is, for messages; the column). A new encrypted column must be listed here.
ENCRYPTED: list[tuple[str, peewee.Field]] = [
    ("partner webhook secret", Partner.webhook_secret),
    ("retired webhook secret", RetiredWebhookSecret.secret),
    ("Zoho access token", ZohoToken.access_token),
    ("customer email", Order.customer_email),
    ("customer phone", Order.customer_phone),
]
BATCH = 500
LOCK_TIMEOUT = "10s"
FIX = (
    "configure the key it was encrypted with in security.master_key. During a key change, list "
    "the new key first and keep the old one after it until `t2ctl secrets rotate-master-key` "
    "has finished"
)


def rotate(box: SecretBox, *, batch: int = BATCH) -> dict[str, int]:
    """Re-encrypt every stored secret under the first key; how many of each, by label.

    Writers wait meanwhile (SQLite's one write lock; table locks on Postgres, taken within
    ``LOCK_TIMEOUT`` or not at all), so no row written under another key is missed. Each row
    is rewritten once, all its encrypted columns together.
    """
    counts = {label: 0 for label, _ in ENCRYPTED}
    with db.transaction():
        if not db.is_sqlite():
            _lock_tables()
        for model, columns in _by_model().items():
            for pk, *tokens in _rows(model, [column for _, column in columns], batch):
                fresh = {}
                for label, column, token in _present(columns, tokens):
                    fresh[column] = _opened(box.rotate, token, label, pk)
                    counts[label] += 1
                model.update(fresh).where(model.id == pk).execute()
    return counts


def _lock_tables() -> None:
    tables = ", ".join(f'"{model._meta.table_name}"' for model in _by_model())
    db.database.execute_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    try:
        db.database.execute_sql(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
    except peewee.OperationalError as exc:
        raise T2Error(
            f"the tables holding secrets could not be locked within {LOCK_TIMEOUT}: a long "
            "transaction holds them; nothing was changed, try again"
        ) from exc


def check(box: SecretBox) -> None:
    """Decrypt every partner and Zoho secret and the oldest and newest order's contact;
    T2Error naming the first that fails and the fix. Orders are sampled: a start-up must not
    read a table that grows without end."""
    for model, columns in _by_model().items():
        rows = model.select(model.id, *[column for _, column in columns])
        if model is Order:
            ends = Order.select(peewee.fn.MIN(Order.id), peewee.fn.MAX(Order.id)).tuples()
            # The stubs type a .tuples() query's rows as models.
            rows = rows.where(Order.id.in_(list(cast("tuple[int | None, ...]", ends.get()))))
        for pk, *tokens in rows.tuples().iterator():
            for label, _, token in _present(columns, tokens):
                _opened(box.decrypt, token, label, pk)


def _by_model() -> dict[type[BaseModel], list[tuple[str, peewee.Field]]]:
    grouped: dict[type[BaseModel], list[tuple[str, peewee.Field]]] = {}
    for label, column in ENCRYPTED:
        grouped.setdefault(column.model, []).append((label, column))
    return grouped


def _present(
    columns: list[tuple[str, peewee.Field]], tokens: list[str | None]
) -> Iterator[tuple[str, peewee.Field, str]]:
    """(label, column, token) for each of a row's encrypted columns that holds a value."""
    for (label, column), token in zip(columns, tokens, strict=True):
        if token is not None:
            yield label, column, token


def _rows(
    model: type[BaseModel], columns: list[peewee.Field], batch: int
) -> Iterator[tuple[Any, ...]]:
    """(id, *tokens) of every row holding any, in id order, ``batch`` rows at a time."""
    holding = functools.reduce(operator.or_, [column.is_null(False) for column in columns])
    last = 0
    while True:
        query = (
            model.select(model.id, *columns)
            .where(holding & (model.id > last))
            .order_by(model.id)
            .limit(batch)
            .tuples()
        )
        rows = list(cast("Iterable[tuple[Any, ...]]", query))  # the stubs say models
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def _opened(operation, token: str, label: str, pk: int) -> str:
    try:
        return operation(token)
    except Undecryptable:
        raise T2Error(f"the {label} of row {pk} cannot be decrypted: {FIX}") from None
