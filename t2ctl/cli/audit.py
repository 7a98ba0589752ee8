"""``t2ctl audit``: who changed what from the command line, and when."""

from typing import Annotated

import typer

from t2ctl import clock
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, SinceOption, session, since_moment
from t2ctl.security import audit

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    since: SinceOption = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="A command (keys.rotate) or a group of them (keys)."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Only this OS user's (or sudo login's) actions.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 50,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """List audited actions, newest first."""
    moment = since_moment(since)
    session(ctx, config).connect()
    events = audit.listing(since=moment, action=action, user=user, limit=limit)
    if json:
        output.emit_json(
            [
                {
                    "id": e.id,
                    "at": clock.rfc3339(e.at),
                    "user": e.os_user,
                    "loginUser": e.login_user,
                    "host": e.host,
                    "action": e.action,
                    "target": e.target,
                    "details": e.details,
                }
                for e in events
            ]
        )
        return
    output.table(
        ["when", "who", "host", "action", "target", "details"],
        [
            (
                clock.rfc3339(e.at),
                audit.who(e),
                e.host,
                e.action,
                e.target,
                " ".join(f"{k}={v}" for k, v in e.details.items()),
            )
            for e in events
        ],
        empty="no audited action matches",
    )
