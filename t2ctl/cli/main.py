"""The root ``t2ctl`` app: the ``--config`` option, the command groups, and exit codes.

Exit codes: 0 success, 1 failure, 2 usage error (Click's), 3 not found.
"""

import logging
from enum import IntEnum
from typing import Annotated

import typer
from typer.core import TyperGroup

import t2ctl
from t2ctl import db, errors
from t2ctl.cli import (
    audit,
    keys,
    manual,
    orders,
    output,
    partners,
    products,
    queue,
    reconcile,
    report,
    sandbox,
    schedule,
    secrets,
    serve,
    status,
    webhooks,
)
from t2ctl.cli import config as config_cmd
from t2ctl.cli import db as db_cmd
from t2ctl.cli.context import ConfigOption, session
from t2ctl.monitoring import logs

logger = logging.getLogger("t2ctl")


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3


class _Group(TyperGroup):
    """Turns every t2ctl error into a one-line message on stderr and its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except errors.NotFound as exc:
            output.error(str(exc))
            raise typer.Exit(ExitCode.NOT_FOUND) from None
        except errors.ValidationFailed as exc:
            output.error(str(exc), exc.errors)
            raise typer.Exit(ExitCode.FAILURE) from None
        except errors.ConfigError as exc:
            output.error(
                "the configuration is not valid:",
                [errors.FieldError("config", problem) for problem in exc.problems],
            )
            raise typer.Exit(ExitCode.FAILURE) from None
        except errors.Unavailable as exc:
            # Operators need the driver's reason; partners never see this text.
            output.error(f"{str(exc).rstrip('.')}: {str(exc.__cause__).strip()}")
            raise typer.Exit(ExitCode.FAILURE) from None
        except errors.T2Error as exc:
            output.error(str(exc))
            raise typer.Exit(ExitCode.FAILURE) from None
        except db.DRIVER_ERRORS as exc:
            output.error(f"the database cannot be used: {str(exc).strip()}")
            raise typer.Exit(ExitCode.FAILURE) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Operate the T2Mobile partner gateway.",
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"t2ctl {t2ctl.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: ConfigOption = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    session(ctx, config)


app.command("serve")(serve.serve)
app.add_typer(db_cmd.app, name="db", help="Schema migrations and backups.")
app.add_typer(config_cmd.app, name="config", help="Check and show the configuration.")
app.add_typer(partners.app, name="partners", help="Partners and their settings.")
app.add_typer(keys.app, name="keys", help="Partners' API keys.")
app.add_typer(products.app, name="products", help="The product catalogue.")
app.add_typer(orders.app, name="orders", help="Orders from partners.")
app.command("reconcile")(reconcile.reconcile)
app.add_typer(report.app, name="report", help="Reports for finance.")
app.add_typer(queue.app, name="queue", help="The job queue.")
app.add_typer(schedule.app, name="schedule", help="Periodic tasks.")
app.add_typer(secrets.app, name="secrets", help="Master keys and secrets.")
app.add_typer(webhooks.app, name="webhooks", help="Webhook deliveries to partners.")
app.add_typer(audit.app, name="audit", help="Who changed what, from the CLI, and when.")
app.command("sandbox")(sandbox.run)
app.command("status")(status.status)
app.command("help")(manual.help_page)


def main() -> None:
    logs.install()
    try:
        app(prog_name="t2ctl")
    except Exception:  # Click has handled usage errors and exits: this is a bug
        # Its traceback goes through the log, whose filter masks any secret in it.
        logger.exception("unexpected error; please report it with this traceback")
        raise SystemExit(ExitCode.FAILURE) from None


__all__ = ["ExitCode", "app", "main"]
