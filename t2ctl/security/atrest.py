"""Every column that holds a Fernet token, re-encrypted together and checked at start-up.

``rotate`` re-encrypts them all under the first master key in one transaction, so the old key
can be removed as soon as it commits. ``check`` proves the configured keys still open what is
stored, so a daemon with the wrong key refuses to start instead of failing order by order.
"""

from collections.abc import Iterator

import peewee

from t2ctl import db
from t2ctl.db.models import Order, Partner, RetiredWebhookSecret, ZohoToken
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
FIX = (
    "configure the key it was encrypted with in security.master_key. During a key change, list "
    "the new key first and keep the old one after it until `t2ctl secrets rotate-master-key` "
    "has finished"
)


def rotate(box: SecretBox) -> dict[str, int]:
    """Re-encrypt every stored secret under the first key; how many of each, by label.

    Concurrent writers wait (SQLite's write lock; table locks on Postgres), so no row
    written meanwhile under another key is missed.
    """
    counts = {}
    with db.transaction():
        if not db.is_sqlite():
            tables = ", ".join(f'"{column.model._meta.table_name}"' for _, column in ENCRYPTED)
            db.database.execute_sql(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
        for label, column in ENCRYPTED:
            counts[label] = 0
            for pk, token in _tokens(column):
                fresh = _opened(box.rotate, token, label, pk)
                column.model.update({column: fresh}).where(column.model.id == pk).execute()
                counts[label] += 1
    return counts


def check(box: SecretBox) -> None:
    """Decrypt every partner and Zoho secret and the oldest and newest order's contact;
    T2Error naming the first that fails and the fix. Orders are sampled: a start-up must not
    read a table that grows without end."""
    for label, column in ENCRYPTED:
        rows = column.model.select(column.model.id, column).where(column.is_null(False))
        if column.model is Order:
            ends = Order.select(peewee.fn.MIN(Order.id), peewee.fn.MAX(Order.id)).tuples()
            rows = rows.where(Order.id.in_(list(ends.get())))
        for row in rows.tuples().iterator():
            _opened(box.decrypt, row[1], label, row[0])


def _tokens(column: peewee.Field) -> Iterator[tuple[int, str]]:
    """(id, token) of every row with a value, in id order, a batch at a time."""
    model = column.model
    last = 0
    while True:
        batch = list(
            model.select(model.id, column)
            .where(column.is_null(False) & (model.id > last))
            .order_by(model.id)
            .limit(BATCH)
            .tuples()
        )
        if not batch:
            return
        yield from batch
        last = batch[-1][0]


def _opened(operation, token: str, label: str, pk: int) -> str:
    try:
        return operation(token)
    except Undecryptable:
        raise T2Error(f"the {label} of row {pk} cannot be decrypted: {FIX}") from None
