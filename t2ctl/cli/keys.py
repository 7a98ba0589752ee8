"""``t2ctl keys``: create, list, rotate and revoke partners' API keys."""

from typing import Annotated

import typer

from t2ctl import clock, db, partners
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, duration, session
from t2ctl.security import apikeys, audit

app = typer.Typer(no_args_is_help=True)
PartnerOption = Annotated[str, typer.Option("--partner", help="The partner's name.")]


@app.command()
def create(
    ctx: typer.Context,
    partner: PartnerOption,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Create another API key for a partner; prints it once. Older keys stay valid."""
    session(ctx, config).connect()
    with db.transaction():
        issued = apikeys.issue(partners.get(partner))
        audit.record("keys.create", partner, keyId=issued.key_id)
    _reveal(issued, None, json=json)


@app.command()
def rotate(
    ctx: typer.Context,
    partner: PartnerOption,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="How long the partner's current keys keep working beside the new one "
            "(1h, 7d; 0s ends them now).",
        ),
    ],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Issue a new API key for a partner and expire its current ones when the grace ends;
    prints the new key once. After a leak, revoke instead: that is immediate."""
    period = duration(grace, "--grace")
    session(ctx, config).connect()
    with db.transaction():
        rotation = apikeys.rotate(partners.get(partner), grace=period)
        audit.record(
            "keys.rotate",
            partner,
            keyId=rotation.issued.key_id,
            grace=grace,
            expiring=rotation.old_key_ids,
        )
    expires_old = clock.rfc3339(rotation.expires_old) if rotation.old_key_ids else None
    _reveal(rotation.issued, expires_old, json=json)
    if not json:
        old = ", ".join(rotation.old_key_ids) or "none"
        output.note(f"old key(s) {old} stop working at {expires_old or '-'}")


def _reveal(issued: apikeys.IssuedKey, expires_old: str | None, *, json: bool) -> None:
    """The one time a key is shown: CONTRACT's JSON for scripts, fields for people."""
    if json:
        output.emit_json(
            {"keyId": issued.key_id, "apiKey": issued.api_key, "expiresOld": expires_old}
        )
        return
    output.fields(
        [("partner", issued.partner), ("key id", issued.key_id), ("API key", issued.api_key)]
    )
    output.note("store the API key now: it is not shown again")


@app.command("list")
def list_(
    ctx: typer.Context,
    partner: Annotated[str | None, typer.Option("--partner")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """List API keys (ids and state, never the keys)."""
    session(ctx, config).connect()
    owner = partners.get(partner) if partner else None
    now = clock.now()
    rows = [
        {
            "keyId": k.key_id,
            "partner": k.partner.name,
            "state": apikeys.state(k, now),
            "createdAt": clock.rfc3339(k.created_at),
            "expiresAt": clock.rfc3339(k.expires_at),
            "revokedAt": clock.rfc3339(k.revoked_at),
            "lastUsedAt": clock.rfc3339(k.last_used_at),
        }
        for k in apikeys.listing(owner)
    ]
    if json:
        output.emit_json(rows)
        return
    output.table(
        ["key id", "partner", "state", "created", "expires", "last used"],
        [
            (
                r["keyId"],
                r["partner"],
                r["state"],
                r["createdAt"],
                r["expiresAt"] or "never",
                r["lastUsedAt"] or "never",
            )
            for r in rows
        ],
        empty="no API keys",
    )


@app.command()
def revoke(ctx: typer.Context, key_id: str, config: ConfigOption = None) -> None:
    """Revoke an API key at once."""
    session(ctx, config).connect()
    with db.transaction():
        key = apikeys.revoke(key_id)
        audit.record("keys.revoke", key.partner.name, keyId=key.key_id)
    output.note(f"revoked key {key.key_id} of {key.partner.name}")
