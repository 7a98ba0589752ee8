"""``t2ctl secrets``: master-key material and partners' webhook secrets."""

from typing import Annotated

import typer

from t2ctl import clock, partners
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.security import crypto

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
    try:
        period = clock.parse_duration(grace)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--grace") from None
    current = session(ctx, config)
    current.connect()
    secret = partners.rotate_webhook_secret(partner, grace=period, box=current.box())
    if json:
        output.emit_json({"webhookSecret": secret})
        return
    until = clock.rfc3339(clock.now() + period)
    output.fields(
        [("partner", partner), ("webhook secret", secret), ("old secret signs until", until)]
    )
    output.note("store the webhook secret now: it is not shown again")
