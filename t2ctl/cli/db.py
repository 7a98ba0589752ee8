"""``t2ctl db``: migrate, status, backup."""

from pathlib import Path

import typer

from t2ctl import clock, db
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.db import schema
from t2ctl.security import audit

app = typer.Typer(no_args_is_help=True)


@app.command()
def migrate(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Apply pending schema migrations (safe while daemons run; they take a lock).

    Creates the database when there is none yet: say where with `database.url`.
    """
    session(ctx, config).connect(require_current=False, create=True)
    applied = schema.migrate()
    if applied:
        audit.record("db.migrate", "schema", applied=applied)
    output.note(f"applied {', '.join(applied)}" if applied else "the schema is up to date")


@app.command()
def status(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """List migrations, applied and pending."""
    session(ctx, config).connect(require_current=False)
    states = schema.status()
    if json:
        output.emit_json(
            [{"name": s.name, "appliedAt": clock.rfc3339(s.applied_at)} for s in states]
        )
        return
    output.table(
        ["migration", "state", "applied at"],
        [
            (s.name, "applied" if s.applied_at else "pending", clock.rfc3339(s.applied_at))
            for s in states
        ],
    )


@app.command()
def backup(ctx: typer.Context, path: Path, config: ConfigOption = None) -> None:
    """Copy the live SQLite database to PATH (online; the daemon may keep running)."""
    session(ctx, config).connect(require_current=False)
    schema.backup(path)
    with db.transaction():  # a copy of customer data: the auditor asks who took it
        audit.record("db.backup", str(path.resolve()))
    output.note(
        f"backed up to {path}; keep the master key apart from it (a copy of both reads "
        "everything), and safe: without it the copy cannot be read"
    )
