"""Schema migrations (``playhouse.migrations``) and online backups.

``migrate()`` is safe to run from several daemons at once: the whole run holds the write lock
(SQLite) or an advisory lock (Postgres), and re-reads what is applied once it has the lock.
"""

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from playhouse.migrations import Runner

from t2ctl import db
from t2ctl.errors import T2Error

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x7432_6374  # "t2ct": any constant shared by every t2ctl daemon


@dataclass(frozen=True)
class MigrationState:
    name: str
    applied_at: datetime | None


def _runner() -> Runner:
    return Runner(db.database.obj, str(MIGRATIONS))


def status() -> list[MigrationState]:
    """Every migration known from files or history, in order, with when it was applied."""
    return [MigrationState(m.name, m.applied) for m in _runner().status()]


def pending() -> list[str]:
    return [m.name for m in status() if m.applied_at is None]


def migrate() -> list[str]:
    """Apply every pending migration in one locked transaction; return the names applied."""
    with db.transaction():
        db.serialize(_PG_LOCK_ID)
        return _runner().up()


def require_current() -> None:
    """Refuse to work on a schema that is behind the code, and say how to fix it."""
    waiting = pending()
    if waiting:
        raise T2Error(
            f"the database schema is not up to date ({len(waiting)} pending migration(s): "
            f"{', '.join(waiting)}); run `t2ctl db migrate`"
        )


def backup(target: Path) -> None:
    """Copy a live SQLite database to ``target`` with SQLite's online backup API."""
    source = db.sqlite_file()
    if source is None:
        raise T2Error("db backup copies SQLite databases; for PostgreSQL use pg_dump")
    if target.exists():
        raise T2Error(f"{target} already exists; choose a new file")
    partial = target.with_name(target.name + ".partial")
    try:
        # Created 0600 before any byte is copied: it holds encrypted secrets and customer data.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)
        partial.rename(target)
    except (OSError, sqlite3.Error) as exc:
        raise T2Error(f"backup to {target} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
