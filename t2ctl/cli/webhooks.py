"""``t2ctl webhooks``: deliveries to partners, their attempts, and resending them."""

import json as jsonlib
from typing import Annotated, Any

import typer

from t2ctl import clock, db
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, SinceOption, session, since_moment
from t2ctl.db.models import DELIVERY_STATUSES, WebhookAttempt, WebhookDelivery
from t2ctl.errors import Conflict
from t2ctl.security import audit
from t2ctl.webhooks import deliveries

app = typer.Typer(no_args_is_help=True)
SHOWN = 60  # characters of an error or excerpt in a table cell


def _public(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhookId": delivery.webhook_id,
        "event": delivery.event,
        "partner": delivery.partner.name,
        "orderId": delivery.order_ref,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "nextAttemptAt": clock.rfc3339(delivery.next_attempt_at),
        "lastStatus": delivery.last_status,
        "lastError": delivery.last_error,
        "createdAt": clock.rfc3339(delivery.created_at),
        "updatedAt": clock.rfc3339(delivery.updated_at),
        "finishedAt": clock.rfc3339(delivery.finished_at),
    }


def _attempt(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "attemptedAt": clock.rfc3339(attempt.attempted_at),
        "trigger": attempt.trigger,
        "url": attempt.url,
        "outcome": attempt.outcome,
        "statusCode": attempt.status_code,
        "latencyMs": attempt.latency_ms,
        "error": attempt.error,
        "excerpt": attempt.excerpt,
    }


def _last(delivery: WebhookDelivery) -> str:
    if delivery.last_error:
        return delivery.last_error
    return f"HTTP {delivery.last_status}" if delivery.last_status else ""


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help=", ".join(DELIVERY_STATUSES))
    ] = None,
    partner: Annotated[str | None, typer.Option("--partner", help="Only this partner's.")] = None,
    order: Annotated[
        str | None, typer.Option("--order", help="Only those about this orderId.")
    ] = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """List webhook deliveries, newest first."""
    status = status.lower() if status else None
    if status is not None and status not in DELIVERY_STATUSES:
        raise typer.BadParameter(
            f"must be one of {', '.join(DELIVERY_STATUSES)}", param_hint="--status"
        )
    moment = since_moment(since)
    session(ctx, config).connect()
    found = deliveries.listing(
        status=status, partner_name=partner, order_ref=order, since=moment, limit=limit
    )
    if json:
        output.emit_json([_public(d) for d in found])
        return
    table(found)


def table(
    found: list[WebhookDelivery], *, title: str | None = None, empty: str = "no deliveries match"
) -> None:
    """Deliveries as a table for people (also under ``orders show``)."""
    output.table(
        ["id", "event", "order", "partner", "status", "tries", "next try", "last", "created"],
        [
            (
                d.id,
                d.event,
                d.order_ref,
                d.partner.name,
                d.status,
                d.attempts,
                clock.rfc3339(d.next_attempt_at),
                _last(d)[:SHOWN],
                clock.rfc3339(d.created_at),
            )
            for d in found
        ],
        title=title,
        empty=empty,
    )


@app.command()
def show(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="The delivery's id (`webhooks list`).")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Show one delivery: its event, state, and every attempt with what came back."""
    session(ctx, config).connect()
    delivery = deliveries.get(delivery_id)
    tries = [_attempt(a) for a in deliveries.attempts(delivery)]
    if json:
        output.emit_json(
            {**_public(delivery), "body": jsonlib.loads(delivery.body), "history": tries}
        )
        return
    output.fields(list(_public(delivery).items()))
    output.table(
        ["time", "trigger", "outcome", "status", "latency ms", "error", "response excerpt"],
        [
            (
                a["attemptedAt"],
                a["trigger"],
                a["outcome"],
                a["statusCode"],
                a["latencyMs"],
                a["error"],
                (a["excerpt"] or "")[:SHOWN],
            )
            for a in tries
        ],
        title="attempts",
        empty="no attempt yet",
    )


@app.command()
def resend(
    ctx: typer.Context,
    delivery_id: Annotated[int | None, typer.Argument(help="One delivery's id.")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead delivery.")] = False,
    since: SinceOption = None,
    config: ConfigOption = None,
) -> None:
    """Send deliveries again now, each under the webhook-id it was first sent with, so
    receivers can drop what they already have. With --dead, every dead delivery (of events
    since --since)."""
    if (delivery_id is None) == (not dead):
        raise typer.BadParameter("give either a DELIVERY_ID or --dead")
    if since is not None and not dead:
        raise typer.BadParameter("--since goes with --dead", param_hint="--since")
    moment = since_moment(since)
    session(ctx, config).connect()
    if delivery_id is not None:  # the same as not --dead, checked above
        delivery = _resend(delivery_id)
        output.note(f"delivery {delivery.id} ({delivery.webhook_id}) queued to be sent again")
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # --dead only

    ids = deliveries.dead_ids(since=moment)
    refused = []
    with Progress(
        TextColumn("resending"),
        BarColumn(),
        MofNCompleteColumn(),
        console=output.stderr(),
        transient=True,
    ) as progress:
        task = progress.add_task("deliveries", total=len(ids))
        for one in ids:
            try:
                _resend(one)
            except Conflict as exc:
                refused.append(str(exc))
            progress.advance(task)
    for reason in refused:
        output.note(reason)
    output.note(f"{len(ids) - len(refused)} dead delivery(ies) queued to be sent again")
    if refused:
        raise typer.Exit(1)


def _resend(delivery_id: int) -> WebhookDelivery:
    with db.transaction():
        delivery = deliveries.resend(delivery_id)
        audit.record(
            "webhooks.resend",
            f"delivery {delivery.id}",
            webhookId=delivery.webhook_id,
            event=delivery.event,
        )
    return delivery
