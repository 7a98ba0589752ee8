"""``t2ctl config``: check and show the effective configuration."""

import typer

from t2ctl import db
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.db import schema

app = typer.Typer(no_args_is_help=True)


@app.command()
def check(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Validate the configuration and reach the database."""
    current = session(ctx, config)
    settings = current.settings
    current.connect(require_current=False)
    current.box()
    waiting = schema.pending()
    output.note(f"configuration is valid ({settings.source or 'built-in defaults'})")
    output.note(f"database reachable: {settings.database.redacted_url()}")
    if waiting:
        output.note(f"{len(waiting)} migration(s) pending: run `t2ctl db migrate`")
    output.note(
        f"mode: {settings.mode}" + (" (provisioning is simulated)" if settings.sandbox_mode else "")
    )
    db.database.close()


@app.command()
def show(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Print the effective configuration, secrets redacted."""
    settings = session(ctx, config).settings
    data = settings.redacted()
    if json:
        output.emit_json({"mode": settings.mode, **data})
        return
    output.note(f"mode: {settings.mode}; source: {settings.source or 'built-in defaults'}")
    output.table(
        ["key", "value"],
        [
            (f"{section}.{key}", value)
            for section, values in data.items()
            for key, value in values.items()
        ],
    )
