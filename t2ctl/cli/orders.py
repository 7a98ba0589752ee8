"""``t2ctl orders``: list, show and retry."""

from typing import Annotated

import typer

from t2ctl import clock, db
from t2ctl.cli import output, webhooks
from t2ctl.cli.context import ConfigOption, JsonOption, SinceOption, session, since_moment
from t2ctl.db.models import ORDER_STATUSES
from t2ctl.orders import intake, pipeline, records
from t2ctl.security import audit, masking
from t2ctl.webhooks import deliveries

app = typer.Typer(no_args_is_help=True)
PartnerOption = Annotated[str | None, typer.Option("--partner", help="Only this partner's.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="PENDING, PROCESSING, FULFILLED or FAILED.")
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
    order = records.find(order_id, partner)
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
