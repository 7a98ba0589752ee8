"""``t2ctl serve``: the daemon."""

from typing import Annotated

import typer

from t2ctl import daemon
from t2ctl.cli.context import ConfigOption, session


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Default: server.host.")] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Default: server.port; 0 picks a free one."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the daemon: the partner API on waitress. Works with no config (SQLite, sandbox)."""
    settings = session(ctx, config).settings
    daemon.serve(
        settings,
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
    )
