"""``t2ctl config``: check and show the effective configuration."""

import contextlib
import json as json_text
from typing import Any
from urllib.parse import urlsplit

import typer

from t2ctl import config as config_file
from t2ctl import db, wiring
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.config import Settings
from t2ctl.db import schema
from t2ctl.errors import T2Error, Unavailable
from t2ctl.security import atrest
from t2ctl.security.crypto import SecretBox, sandbox_key_file

app = typer.Typer(no_args_is_help=True)


@app.command()
def check(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Validate the configuration, reach the database, and with Zoho enabled mint a token
    and read the organization."""
    current = session(ctx, config)
    settings = current.settings
    current.connect(require_current=False)
    box = current.box()
    waiting = schema.pending()
    output.note(f"configuration is valid; config: {settings.source or _no_file()}")
    output.note(f"database reachable: {settings.database.redacted_url()}")
    _check_pooling(settings)
    if waiting:
        output.note(f"{len(waiting)} migration(s) pending: run `t2ctl db migrate`")
    output.note(
        f"mode: {settings.mode}" + (" (provisioning is simulated)" if settings.sandbox_mode else "")
    )
    if not waiting:
        atrest.check(box)
        output.note(f"stored secrets open with security.master_key ({box.key_count} key(s))")
    if not settings.sandbox_mode:
        if waiting:
            raise T2Error("Zoho is checked once the schema is current: run `t2ctl db migrate`")
        _check_zoho(settings, box)
    db.database.close()


def _check_pooling(settings: Settings) -> None:
    """Say whether the database is reached through a pooler, and reach the LISTEN session."""
    database = settings.database
    if database.is_sqlite:
        return
    if db.behind_pooler():
        prepared = "true" if database.prepared_statements else "false"
        output.note(
            "database.url goes through a connection pooler (PgBouncer?): in transaction mode "
            f"set database.prepared_statements = false (it is {prepared}) and database.listen_url"
        )
    if database.listen_url:
        try:
            with contextlib.closing(db.listen("t2ctl_config_check", timeout=0)) as probe:
                next(probe)
        except db.DRIVER_ERRORS as exc:
            raise Unavailable("database.listen_url cannot be reached.") from exc  # cause shown
        output.note(f"LISTEN session reachable: {database.redacted_listen_url()}")


def _check_zoho(settings: Settings, box: SecretBox) -> None:
    """Mint a token (the refresh token, client and data centre are right) and list the
    organizations it can see (the scope and organization_id are right)."""
    client = wiring.zoho_client(settings, box)
    token = client.tokens.refresh()
    output.note(f"Zoho token minted by {settings.zoho.accounts_url}; API at {client.base(token)}")
    configured = urlsplit(settings.zoho.api_url).netloc
    if token.api_domain and urlsplit(token.api_domain).netloc != configured:
        output.note(
            f"Zoho puts this account's data at {token.api_domain}, not {configured} "
            "(zoho.api_url): t2ctl follows Zoho"
        )
    organizations = client.call("GET", "/organizations", organization=False)["organizations"]
    names = {str(o["organization_id"]): o.get("name", "") for o in organizations}
    wanted = settings.zoho.organization_id
    if wanted not in names:
        seen = ", ".join(f"{k} ({v})" for k, v in names.items()) or "none"
        raise T2Error(
            f"zoho.organization_id {wanted} is not an organization this token can see; "
            f"it sees: {seen}"
        )
    output.note(f"Zoho organization {wanted} ({names[wanted]}) is reachable")


@app.command()
def show(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Print the effective configuration, secrets redacted."""
    settings = session(ctx, config).settings
    data = settings.redacted()
    generated = sandbox_key_file(settings)
    if generated is not None:
        generated = generated.absolute()
        data["security"]["master_key"] = (
            f"generated: {generated}"
            if generated.exists()
            else f"none yet: serve or db migrate generates {generated}"
        )
    source = str(settings.source) if settings.source else None
    if json:
        output.emit_json({"mode": settings.mode, "source": source, **data})
        return
    output.note(f"mode: {settings.mode}; config: {source or _no_file()}")
    output.table(
        ["key", "value"],
        [
            (f"{section}.{key}", _shown(value))
            for section, values in data.items()
            for key, value in values.items()
        ],
    )


def _no_file() -> str:
    looked = ", ".join(str(path) for path in config_file.search_path())
    return f"none found (looked for {looked}): built-in defaults and T2CTL_* variables"


def _shown(value: Any) -> str:
    """A value as it is written in config.toml: TOML's true/false, lists in brackets."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"  # 30, as it is written, not 30.0
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json_text.dumps(value)
    return str(value)
