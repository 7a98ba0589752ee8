"""What a command needs from its surroundings, resolved lazily and once per invocation.

The root imports this module for every command, ``--help`` too, so the settings, the database
and the secrets are imported by the methods that open them, when a command first asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from click.core import ParameterSource

from t2ctl import clock
from t2ctl.errors import T2Error
from t2ctl.monitoring import logs
from t2ctl.security import redaction

if TYPE_CHECKING:
    from t2ctl.config import Settings
    from t2ctl.security.crypto import SecretBox

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="T2CTL_CONFIG",
        help="Config file (default: ./config.toml, else the user's, else /etc/t2ctl's; "
        "`t2ctl config show` says which).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print plain JSON for scripts.")]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="A date-time (2026-11-27T09:00:00Z) or a duration ago (2h, 7d)."),
]


def since_moment(text: str | None) -> datetime | None:
    """``--since`` as a moment, or a usage error naming the forms it takes."""
    try:
        return clock.parse_moment(text) if text else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def moment(text: str, option: str, *, day: Callable[[date], datetime]) -> datetime:
    """An option naming a moment: a date, as ``day`` places it (a task's time that day, a
    day's start), else a date-time or a duration ago; a usage error naming ``option``."""
    try:
        return day(date.fromisoformat(text))
    except ValueError:
        pass
    try:
        return clock.parse_moment(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def duration(text: str, option: str) -> timedelta:
    """A duration option (``--grace 7d``) as a timedelta, or a usage error naming it."""
    try:
        return clock.parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


# The command's own thread and the few a command runs beside it (sandbox servers, progress).
CONNECTIONS = 4


@dataclass
class Session:
    config_path: Path | None
    _settings: Settings | None = field(default=None, init=False)
    _box: SecretBox | None = field(default=None, init=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from t2ctl import config

            self._settings = config.load(self.config_path)
            redaction.protect(self._settings.secret_values())
            logs.configure(self._settings.log.format, self._settings.log.level)
        return self._settings

    def connect(self, *, require_current: bool = True, create: bool = False) -> None:
        """Open the database and the master key, as the daemon does; refuse a schema that
        needs ``db migrate`` unless told not to. Only a command that builds the schema may
        ``create`` a missing SQLite file: any other, run in the wrong directory, would make an
        empty database (and a master key beside it) and report on that."""
        from t2ctl import startup
        from t2ctl.db import schema

        if not create:
            _require_database(self.settings)
        self._box = startup.connect(self.settings, connections=CONNECTIONS)
        if require_current:
            schema.require_current()

    def box(self) -> SecretBox:
        """The master key opened by ``connect()``, which every command that needs it calls."""
        if self._box is None:
            raise RuntimeError("Session.connect() opens the secrets; call it first")
        return self._box


def _require_database(settings: Settings) -> None:
    """The SQLite file, and in sandbox mode the key file beside it, must be there already: a
    new key would not open what the database holds."""
    from t2ctl.security.crypto import sandbox_key_file

    path = settings.database.sqlite_path
    if path is None:
        return
    if not path.exists():
        raise T2Error(
            f"no database at {path.absolute()} (database.url = {settings.database.url}, from "
            f"{settings.origin('database.url')}; a relative path is read from the working "
            "directory). Run t2ctl in the directory `t2ctl serve` runs in, or name its config "
            "with --config or T2CTL_CONFIG; `t2ctl db migrate` or `t2ctl serve` creates a new "
            "database"
        )
    key = sandbox_key_file(settings)
    if key is not None and not key.exists():
        raise T2Error(
            f"no master key: security.master_key is not set and there is no key file at "
            f"{key.absolute()}, beside the database. Put the key file back, or set "
            "security.master_key (T2CTL_SECURITY__MASTER_KEY) to the key it was written with"
        )


def session(ctx: typer.Context, config_path: Path | None = None) -> Session:
    """The session for this invocation; a command's own ``--config`` beats the root one, and
    either beats ``T2CTL_CONFIG``."""
    root = ctx.find_root()
    typed = ctx.get_parameter_source("config") is ParameterSource.COMMANDLINE
    if root.obj is None or (config_path is not None and typed):
        root.obj = Session(config_path)
    return root.obj
