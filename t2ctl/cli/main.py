"""The root ``t2ctl`` app: the ``--config`` option, the command groups, and exit codes.

Exit codes: 0 success, 1 failure, 2 usage error (Click's), 3 not found.

A command's module is imported only when that command runs: importing them all (Flask, the
sandbox, the Zoho client...) took most of the time of every command, ``--help`` included.
``COMMANDS`` names each command's module and holds its one-line help, which is all that
``t2ctl --help`` and shell completion read of a command they do not run.
"""

import importlib
import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final

import click
import typer
from typer.core import TyperGroup

import t2ctl
from t2ctl import errors
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, session
from t2ctl.monitoring import logs

logger = logging.getLogger("t2ctl")

# How help text is rendered, by the root and by every command under it.
MARKUP: Final = "markdown"


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3


@dataclass(frozen=True)
class Entry:
    """Where a command is defined: ``attribute`` of ``t2ctl.cli.<module>``, a ``typer.Typer``
    (a group) or a function (a command); ``summary`` is its one-line help: a group's help, or
    the first paragraph of a command's docstring (a test holds the two together)."""

    module: str
    attribute: str
    summary: str


# In the order --help lists them: commands, then groups.
COMMANDS = {
    "serve": Entry(
        "serve",
        "serve",
        "Run the daemon: the partner API on waitress, job workers and the scheduler.",
    ),
    "reconcile": Entry(
        "reconcile",
        "reconcile",
        "Compare the orders created from --since (default: 30 days ago) up to --until "
        "(default: now) with Zoho's sales orders (the sandbox's, in sandbox mode), by reference "
        "number = orderId. Exit 0 when they agree, 1 when they drift.",
    ),
    "sandbox": Entry(
        "sandbox",
        "run",
        "Serve a Zoho Inventory stand-in (OAuth, contacts, items, sales orders, 429s) and a "
        "webhook receiver at /hooks that verifies Standard Webhooks signatures; Ctrl-C stops.",
    ),
    "status": Entry(
        "status",
        "status",
        "The gateway on one screen: mode, database, queue, failures, dead deliveries.",
    ),
    "help": Entry(
        "manual",
        "help_page",
        "Show a command's help page (`t2ctl help orders list`), or every page with --all.",
    ),
    "db": Entry("db", "app", "Schema migrations and backups."),
    "config": Entry("config", "app", "Check and show the configuration."),
    "partners": Entry("partners", "app", "Partners and their settings."),
    "keys": Entry("keys", "app", "Partners' API keys."),
    "products": Entry("products", "app", "The product catalogue."),
    "orders": Entry("orders", "app", "Orders from partners."),
    "report": Entry("report", "app", "Reports for finance."),
    "queue": Entry("queue", "app", "The job queue."),
    "schedule": Entry("schedule", "app", "Periodic tasks."),
    "secrets": Entry("secrets", "app", "Master keys and secrets."),
    "webhooks": Entry("webhooks", "app", "Webhook deliveries to partners."),
    "audit": Entry("audit", "app", "Who changed what, from the CLI, and when."),
}


class Unloaded(click.Command):
    """A command whose module is not imported yet: its name and one-line help, what a list
    of commands shows. ``load()`` imports the module and builds the command itself."""

    def __init__(self, name: str, entry: Entry) -> None:
        super().__init__(name, help=entry.summary)
        self.entry = entry

    def load(self) -> click.Command:
        """The command as Typer builds it under the root, with the root's settings."""
        module = importlib.import_module(f"t2ctl.cli.{self.entry.module}")
        target = getattr(module, self.entry.attribute)
        name = self.name or ""
        holder = typer.Typer(rich_markup_mode=MARKUP)
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name, help=self.entry.summary)
        else:
            holder.command(name)(target)
        return typer.main.get_group(holder).commands[name]


class _Group(TyperGroup):
    """Holds the commands as ``Unloaded`` until one runs (``resolve_command``, which Click
    calls to run a command, to complete its arguments, and ``t2ctl help`` to show its page);
    turns every t2ctl error into a one-line message on stderr and its exit code."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, entry in COMMANDS.items():
            self.add_command(Unloaded(name, entry))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, Unloaded):
            command = self.commands[command.name or ""] = command.load()
        return name, command, rest

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
        except Exception as exc:
            if not _from_the_driver(exc):
                raise
            output.error(f"the database cannot be used: {str(exc).strip()}")
            raise typer.Exit(ExitCode.FAILURE) from None


def _from_the_driver(exc: Exception) -> bool:
    """Whether the database driver raised ``exc``. The database module is imported here, not
    with this module: a command that raises a driver error has imported it already, and one
    that never touches the database (``--help``) should not wait for peewee and its drivers."""
    from t2ctl import db

    return isinstance(exc, db.DRIVER_ERRORS)


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Operate the T2Mobile partner gateway.",
    rich_markup_mode=MARKUP,
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


def main() -> None:
    logs.install()
    try:
        app(prog_name="t2ctl")
    except Exception:  # Click has handled usage errors and exits: this is a bug
        # Its traceback goes through the log, whose filter masks any secret in it.
        logger.exception("unexpected error; please report it with this traceback")
        raise SystemExit(ExitCode.FAILURE) from None


__all__ = ["COMMANDS", "ExitCode", "app", "main"]
