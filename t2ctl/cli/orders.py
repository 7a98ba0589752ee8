"""``t2ctl orders``: list, show, retry, cancel, and submit test orders."""

from datetime import timedelta
from typing import Annotated

import typer

from t2ctl import clock, db, partners, products
from t2ctl.cli import output, webhooks
from t2ctl.cli.context import (
    ConfigOption,
    JsonOption,
    SinceOption,
    duration,
    session,
    since_moment,
)
from t2ctl.config import Settings
from t2ctl.db.models import ORDER_STATUSES, Partner, Product
from t2ctl.errors import T2Error
from t2ctl.orders import intake, pipeline, records
from t2ctl.security import apikeys, audit, masking
from t2ctl.webhooks import deliveries

app = typer.Typer(no_args_is_help=True)
PartnerOption = Annotated[str | None, typer.Option("--partner", help="Only this partner's.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help=", ".join(ORDER_STATUSES) + ".")
    ] = None,
    partner: PartnerOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """List orders, newest first."""
    status = status.upper() if status else None
    if status is not None and status not in ORDER_STATUSES:
        raise typer.BadParameter(
            f"must be one of {', '.join(ORDER_STATUSES)}", param_hint="--status"
        )
    moment = since_moment(since)
    session(ctx, config).connect()
    found = records.listing(status=status, partner_name=partner, since=moment, limit=limit)
    if json:
        output.emit_json([{"partner": o.partner.name, **records.public(o)} for o in found])
        return
    output.table(
        ["order id", "partner", "status", "product", "qty", "amount", "customer", "created"],
        [
            (
                o.order_id,
                o.partner.name,
                o.status,
                o.product.product_id,
                o.quantity,
                str(records.amount(o)),
                o.customer_id,
                clock.rfc3339(o.created_at),
            )
            for o in found
        ],
        empty="no orders match",
    )


@app.command()
def show(
    ctx: typer.Context,
    order_id: str,
    partner: PartnerOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Show one order, with the customer's contact details masked."""
    current = session(ctx, config)
    current.connect()
    order = records.get_by_order_id(order_id, partner)
    data = {"partner": order.partner.name, **records.public(order)}
    if json:
        output.emit_json(data)
        return
    request = intake.stored_request(order, current.box())
    fulfilment = data["fulfilment"] or {}
    output.fields(
        [
            ("order id", order.order_id),
            ("partner", order.partner.name),
            ("status", order.status),
            ("product", f"{order.product.product_id} × {order.quantity}"),
            ("amount", str(request.amount)),
            ("customer", f"{order.customer_id} ({order.customer_name})"),
            ("email", masking.email(request.customer_email)),
            ("phone", masking.phone(request.customer_phone) or "-"),
            ("renewal of", order.renewal_of or "-"),
            ("created", data["createdAt"]),
            ("updated", data["updatedAt"]),
            ("activation ref", fulfilment.get("activationReference") or "-"),
            ("expires", fulfilment.get("expiresAt") or "-"),
            ("error", f"{order.error_code}: {order.error_message}" if order.error_code else "-"),
            ("cancellation", _cancellation(data["cancellation"])),
        ]
    )
    sent = deliveries.listing(partner_name=order.partner.name, order_ref=order.order_id)
    webhooks.table(sent, title="webhooks", empty="no webhook for this order yet")


@app.command()
def retry(
    ctx: typer.Context,
    order_id: str,
    partner: PartnerOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Run a FAILED order again: it goes back to PENDING and a worker picks it up."""
    session(ctx, config).connect()
    with db.transaction():
        order = pipeline.retry(order_id, partner)
        audit.record("orders.retry", order.order_id, partner=order.partner.name)
    if json:
        output.emit_json({"partner": order.partner.name, **records.public(order)})
        return
    output.note(f"order {order_id} is {order.status} again; a worker will process it")


@app.command()
def cancel(
    ctx: typer.Context,
    order_id: str,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (a refund, a reversed payment): kept and shown.")
    ],
    partner: PartnerOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Cancel an order, as the partner API does: PENDING at once; PROCESSING once its
    provisioning ends; FULFILLED within orders.cancel_window by voiding its sales order."""
    from t2ctl.orders import cancellation  # with the job engine and metrics: only cancel needs them

    current = session(ctx, config)
    current.connect()
    with db.transaction():
        order = records.get_by_order_id(order_id, partner)
        outcome = cancellation.request(order, reason, window=current.settings.orders.cancel_window)
        audit.record("orders.cancel", order.order_id, partner=order.partner.name, reason=reason)
    shown = outcome.order
    if json:
        output.emit_json({"partner": shown.partner.name, **records.public(shown)})
        return
    if outcome.done:
        output.note(f"order {order_id} is CANCELLED")
    else:
        output.note(
            f"order {order_id}: cancellation under way; a worker voids its sales order "
            "and the order becomes CANCELLED (see `t2ctl orders show`)"
        )


def _cancellation(shown: dict | None) -> str:
    if shown is None:
        return "-"
    state = f"cancelled {shown['cancelledAt']}" if shown["cancelledAt"] else "under way"
    return f"{state} (asked {shown['requestedAt']}: {shown['reason']})"


@app.command()
def submit(
    ctx: typer.Context,
    test: Annotated[bool, typer.Option("--test", help="Required: these are test orders.")] = False,
    partner: Annotated[
        str | None, typer.Option("--partner", help="Default: the only partner.")
    ] = None,
    product: Annotated[
        str | None, typer.Option("--product", help="Default: the first active product.")
    ] = None,
    count: Annotated[int, typer.Option("--count", min=1, max=100)] = 1,
    url: Annotated[
        str | None, typer.Option("--url", help="The server (default: server.host and .port).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="The partner's key; default: a key minted now that expires within minutes.",
        ),
    ] = None,
    wait: Annotated[
        str, typer.Option("--wait", help="How long to wait for the outcomes (30s, 5m).")
    ] = "2m",
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Send test orders through the real HTTP API of a running server and print each one's
    outcome; exits 1 unless every one is FULFILLED. In Zoho mode each is a real sales order."""
    from t2ctl.orders import smoke  # with an HTTP client: only submit needs it

    if not test:
        raise typer.BadParameter("the CLI submits test orders only: add --test")
    patience = duration(wait, "--wait")
    current = session(ctx, config)
    current.connect()
    owner = partners.get(partner) if partner else _only_partner()
    item = products.get(product) if product else _first_active_product()
    orders = smoke.bodies(item, count)
    with db.transaction():
        key = api_key or _minted_key(owner, patience)
        audit.record(
            "orders.submit-test",
            owner.name,
            keyId=apikeys.key_id(key),
            minted=api_key is None,
            product=item.product_id,
            orderIds=[o["orderId"] for o in orders],
        )
    if current.settings.zoho.enabled:
        output.note("Zoho mode: each test order becomes a real, confirmed sales order in Zoho")
    api = smoke.Api(url or _server_url(current.settings), key)
    smoke.send(api, orders)
    shown = smoke.follow(api, [o["orderId"] for o in orders], wait=patience)
    _report(shown, json=json)
    if any(o["status"] != "FULFILLED" for o in shown):
        raise typer.Exit(1)


def _only_partner() -> Partner:
    found = partners.listing()
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none yet"
        raise T2Error(f"choose the partner with --partner (partners: {names})")
    return found[0]


def _first_active_product() -> Product:
    active = products.listing(active_only=True)
    if not active:
        raise T2Error("the catalogue has no active product: load one with `t2ctl products import`")
    return active[0]


def _minted_key(owner: Partner, patience: timedelta) -> str:
    """A key just for this run: it outlives the wait by a few minutes, then expires."""
    return apikeys.issue(
        owner, expires_at=clock.now() + patience + apikeys.TEST_KEY_LIFETIME
    ).api_key


def _server_url(settings: Settings) -> str:
    host = settings.server.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.server.port}"


def _report(shown: list[dict], *, json: bool) -> None:
    if json:
        output.emit_json(shown)
        return
    output.table(
        ["order id", "status", "activation ref", "error"],
        [
            (
                o["orderId"],
                o["status"],
                (o.get("fulfilment") or {}).get("activationReference") or "-",
                (o.get("error") or {}).get("message") or "-",
            )
            for o in shown
        ],
        title="test orders",
    )
