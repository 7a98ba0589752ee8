"""What every table is built from: the model base bound to the one database handle, and
the column types that mean the same on SQLite and PostgreSQL.

Each capability declares its own tables on ``BaseModel`` (the engine's in ``t2ctl.jobs.models``,
the domain's in ``t2ctl.db.models``); schema changes are made only by ``migrations/``.
"""

import json
from datetime import UTC, datetime
from typing import Any

import peewee

from t2ctl.db import database


class UTCDateTimeField(peewee.DateTimeField):
    """Stores naive UTC, hands out aware UTC: one meaning on SQLite and Postgres alike."""

    def db_value(self, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value: Any) -> datetime | None:
        if isinstance(value, str):  # SQLite's text: parsed in C, not by trying each format
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                value = super().python_value(value)
        else:
            value = super().python_value(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class JSONTextField(peewee.TextField):
    """JSON kept as text, so both databases store it the same way."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    # Annotations for the type checker only (quoted: peewee's fields are not generic at run
    # time), of what peewee makes itself. ``id``: the auto-increment key peewee adds to a
    # model that declares none (some declare a BigAutoField). ``x_id`` beside a foreign key
    # ``x``: the raw key on a row, read without a query, and the ForeignKeyField on the class.
    id: "peewee.AutoField[int]"

    class Meta:
        database = database
        legacy_table_names = False
