"""``t2ctl serve``: the daemon."""

from enum import StrEnum
from typing import Annotated

import typer

from t2ctl import daemon
from t2ctl.cli.context import ConfigOption, session


class Role(StrEnum):
    """daemon.ROLES, as --role's choices (spelled out: a type checker cannot read them)."""

    all = "all"
    api = "api"
    worker = "worker"


assert tuple(Role) == daemon.ROLES


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Default: server.host.")] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Default: server.port; 0 picks a free one."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Default: metrics.port; 0 picks a free one. A second daemon on a host needs "
            "its own.",
        ),
    ] = None,
    role: Annotated[
        Role,
        typer.Option("--role", help="api: HTTP only; worker: jobs and schedule only; all: both."),
    ] = Role.all,
    config: ConfigOption = None,
) -> None:
    """Run the daemon: the partner API on waitress, job workers and the scheduler.

    Works with no config (SQLite, sandbox). SIGTERM drains and exits 0.
    """
    settings = session(ctx, config).settings
    if metrics_port is not None:
        if not settings.metrics.enabled:
            raise typer.BadParameter(
                "metrics are off (metrics.enabled = false)", param_hint="--metrics-port"
            )
        metrics = settings.metrics.model_copy(update={"port": metrics_port})
        settings = settings.model_copy(update={"metrics": metrics})
    daemon.serve(
        settings,
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        role=role.value,
    )
