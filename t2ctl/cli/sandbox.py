"""``t2ctl sandbox``: a Zoho Inventory stand-in and a verifying webhook receiver, to try the
whole flow without credentials."""

import signal
import threading
from typing import Annotated

import typer

from t2ctl import db, partners, products, sandbox
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, Session, session
from t2ctl.sandbox.receiver import Delivery, Receiver
from t2ctl.sandbox.zoho import ZohoStandIn
from t2ctl.security.escaping import printable

SAMPLE_ITEMS = [("M365-BASIC-12M", "Microsoft 365 Basic", 15000.00, 12)]


def run(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="0 picks a free one.")
    ] = 8090,
    partner: Annotated[
        str | None,
        typer.Option(
            "--partner", help="Verify webhooks with this partner's secret (from the database)."
        ),
    ] = None,
    webhook_secret: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook-secret", help="A whsec_ secret to verify webhooks with; repeatable."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve a Zoho Inventory stand-in (OAuth, contacts, items, sales orders, 429s) and a
    webhook receiver at /hooks that verifies Standard Webhooks signatures; Ctrl-C stops."""
    current = session(ctx, config)
    secrets = list(webhook_secret or [])
    if partner is not None:
        current.connect()
        secrets.append(current.box().decrypt(partners.get(partner).webhook_secret))
    standin = ZohoStandIn()
    for sku, name, rate, term in _seed(current):
        standin.add_item(sku, name, rate, term_months=term)
    receiver = Receiver(secrets, echo=_echo)
    running = sandbox.in_background(sandbox.build(standin, receiver), host=host, port=port)
    _explain(standin, running.url, verifying=bool(secrets))
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    running.stop()
    output.note("sandbox stopped")


def _seed(current: Session) -> list[tuple[str, str, float, int]]:
    """Items for the stand-in: the local catalogue's products when there are any."""
    database = current.settings.database
    if database.sqlite_path is not None and not database.sqlite_path.exists():
        return SAMPLE_ITEMS  # no catalogue here, and no empty database file left behind
    try:
        current.connect()
        known = products.listing()
    except Exception:  # no usable database: the sample is enough to try the flow
        known = []
    finally:
        if db.database.obj is not None:  # connect() may refuse before it opens the database
            db.database.close()
    if not known:
        return SAMPLE_ITEMS
    return [(p.product_id, p.name, float(products.price(p).value), p.term_months) for p in known]


def _explain(standin: ZohoStandIn, url: str, *, verifying: bool) -> None:
    output.note(f"Zoho Inventory stand-in and webhook receiver at {url}")
    output.note(f"items: {', '.join(i['sku'] for i in standin.items.values())}")
    output.note("point a t2ctl config at it (these credentials only work here):")
    typer.echo(
        "[zoho]\n"
        "enabled = true\n"
        f'client_id = "{standin.client_id}"\n'
        f'client_secret = "{standin.client_secret}"\n'
        f'refresh_token = "{standin.refresh_token}"\n'
        f'organization_id = "{standin.organization_id}"\n'
        f'accounts_url = "{url}"\n'
        f'api_url = "{url}/inventory/v1"\n'
    )
    output.note(f"webhook URL for `t2ctl partners set NAME --webhook-url`: {url}/hooks")
    if not verifying:
        output.note("no --partner or --webhook-secret: deliveries are shown but fail verification")


def _echo(delivery: Delivery) -> None:
    mark = "verified" if delivery.verified else "REJECTED (bad signature)"
    # Anyone who reaches the receiver chooses the id and the type, verified or not.
    typer.echo(printable(f"webhook {delivery.webhook_id} {delivery.event}: {mark}"))
