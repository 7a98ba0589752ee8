"""``t2ctl partners``: add, list, set."""

from typing import Annotated

import typer

from t2ctl import clock, db, partners, urls
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.db.models import Partner
from t2ctl.security import audit

app = typer.Typer(no_args_is_help=True)


def _public(partner: Partner, default_rate: int) -> dict:
    return {
        "name": partner.name,
        "webhookUrl": partner.webhook_url,
        "allowedIps": partner.allowed_ips,
        "rateLimitPerMinute": partner.rate_limit_per_minute or default_rate,
        "createdAt": clock.rfc3339(partner.created_at),
    }


@app.command()
def add(
    ctx: typer.Context,
    name: str,
    webhook_url: Annotated[str, typer.Option("--webhook-url", help="Where webhooks go.")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Create a partner; prints its first API key and webhook secret, once."""
    current = session(ctx, config)
    current.connect()
    with db.transaction():
        created = partners.add(
            name, webhook_url, box=current.box(), sandbox=current.settings.sandbox_mode
        )
        audit.record(
            "partners.add", name, webhookUrl=urls.scrubbed(webhook_url), keyId=created.key.key_id
        )
    if json:
        output.emit_json(
            {
                "partner": created.partner.name,
                "apiKey": created.key.api_key,
                "webhookSecret": created.webhook_secret,
            }
        )
        return
    output.fields(
        [
            ("partner", created.partner.name),
            ("key id", created.key.key_id),
            ("API key", created.key.api_key),
            ("webhook secret", created.webhook_secret),
        ]
    )
    output.note("store the API key and webhook secret now: they are not shown again")


@app.command("list")
def list_(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """List partners."""
    current = session(ctx, config)
    current.connect()
    default_rate = current.settings.server.rate_limit_per_minute
    rows = [_public(p, default_rate) for p in partners.listing()]
    if json:
        output.emit_json(rows)
        return
    output.table(
        ["name", "webhook URL", "allowed IPs", "rate limit", "created"],
        [
            (
                r["name"],
                r["webhookUrl"],
                ", ".join(r["allowedIps"]) or "any",
                f"{r['rateLimitPerMinute']}/minute",
                r["createdAt"],
            )
            for r in rows
        ],
        empty="no partners yet: add one with `t2ctl partners add NAME --webhook-url URL`",
    )


@app.command("set")
def set_(
    ctx: typer.Context,
    name: str,
    webhook_url: Annotated[str | None, typer.Option("--webhook-url")] = None,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-ip", help="A CIDR the partner may call from; repeat it. Replaces the list."
        ),
    ] = None,
    allow_any_ip: Annotated[
        bool, typer.Option("--allow-any-ip", help="Clear the allow-list: any address may call.")
    ] = False,
    rate_limit: Annotated[
        str | None,
        typer.Option("--rate-limit", help="Like 100/minute, or default (the server's)."),
    ] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Change a partner's webhook URL, allowed addresses or rate limit."""
    if allow_ip and allow_any_ip:
        raise typer.BadParameter("give --allow-ip or --allow-any-ip, not both")
    current = session(ctx, config)
    current.connect()
    allow_ips = [] if allow_any_ip else (allow_ip or None)
    with db.transaction():
        partner = partners.update(
            name,
            sandbox=current.settings.sandbox_mode,
            webhook_url=webhook_url,
            allow_ips=allow_ips,
            rate_limit=rate_limit,
        )
        changed = {
            "webhookUrl": urls.scrubbed(webhook_url) if webhook_url is not None else None,
            "allowedIps": partner.allowed_ips if allow_ips is not None else None,
            "rateLimit": rate_limit,
        }
        audit.record("partners.set", name, **{k: v for k, v in changed.items() if v is not None})
    data = _public(partner, current.settings.server.rate_limit_per_minute)
    if json:
        output.emit_json(data)
        return
    output.fields(list(data.items()))
