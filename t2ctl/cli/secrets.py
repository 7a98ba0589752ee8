"""``t2ctl secrets``: master-key material and partners' webhook secrets."""

from typing import Annotated

import typer

from t2ctl import clock, db, partners
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, duration, session
from t2ctl.errors import T2Error
from t2ctl.security import atrest, audit, crypto

app = typer.Typer(no_args_is_help=True)


@app.command("generate-master-key")
def generate_master_key() -> None:
    """Print a new master key (a Fernet key) for security.master_key; nothing is stored."""
    typer.echo(crypto.generate_key())


@app.command("rotate-webhook")
def rotate_webhook(
    ctx: typer.Context,
    partner: Annotated[str, typer.Option("--partner", help="The partner's name.")],
    grace: Annotated[
        str,
        typer.Option(
            "--grace", help="How long the old secret still signs beside the new one (24h, 7d)."
        ),
    ],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Give a partner a new webhook secret; prints it once. Until the grace ends, every
    delivery carries a signature by each, so the receiver can switch at its own pace."""
    period = duration(grace, "--grace")
    current = session(ctx, config)
    current.connect()
    with db.transaction():
        secret = partners.rotate_webhook_secret(partner, grace=period, box=current.box())
        audit.record("secrets.rotate-webhook", partner, grace=grace)
    if json:
        output.emit_json({"webhookSecret": secret})
        return
    until = clock.rfc3339(clock.now() + period)
    output.fields(
        [("partner", partner), ("webhook secret", secret), ("old secret signs until", until)]
    )
    output.note("store the webhook secret now: it is not shown again")


@app.command("rotate-master-key")
def rotate_master_key(
    ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False
) -> None:
    """Re-encrypt every stored secret under the first key of security.master_key, in one
    transaction. Put the new key first (NEW,OLD) on every host and restart the daemons, run
    this, then remove OLD and restart again."""
    current = session(ctx, config)
    current.connect()
    keys = current.settings.security.master_keys
    if len(keys) < 2:
        now = (
            "lists one key"
            if keys
            else f"is not set (sandbox mode uses {crypto.sandbox_key_file(current.settings)})"
        )
        raise T2Error(
            f"security.master_key {now}: put a new key in front of the current one (NEW,OLD; "
            "`t2ctl secrets generate-master-key` makes one), then run this again"
        )
    with db.transaction():
        counts = atrest.rotate(current.box())
        audit.record("secrets.rotate-master-key", "master key", **counts)
    if json:
        output.emit_json(counts)
        return
    output.table(["secret", "re-encrypted"], list(counts.items()), title="rotate-master-key")
    output.note(
        "everything is encrypted under the first key: remove the old key from "
        "security.master_key on every host and restart the daemons"
    )
