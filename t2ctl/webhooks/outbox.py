"""The transactional outbox: an event is a delivery row and its ``deliver`` job, both written
in the caller's transaction, so an event exists exactly when the change that caused it
committed, and is never sent for a change that rolled back."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from t2ctl import clock, db
from t2ctl.db.models import WebhookDelivery
from t2ctl.jobs import queue
from t2ctl.webhooks import signing

TASK = "deliver"
# The handler declares a delivery dead after the retry schedule's last attempt; this only
# bounds a job that keeps failing in ways the handler cannot see (a worker killed each time).
MAX_ATTEMPTS = 100
EVENTS = (
    "order.fulfilled",
    "order.failed",
    "order.cancelled",
    "subscription.expiring",
    "subscription.expired",
)


def record(
    partner_id: int,
    event: str,
    data: dict[str, Any],
    *,
    occurred_at: datetime,
    order_ref: str | None = None,
) -> WebhookDelivery:
    """Add one event for one partner, with the job that delivers it."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    delivery = _pending(Event(partner_id, event, data, order_ref), occurred_at, clock.now())
    with db.joined():
        _INSERT.add(delivery)
        schedule(delivery.id, trigger="scheduled")
    return delivery


_RECORDED = (
    WebhookDelivery.webhook_id,
    WebhookDelivery.partner,
    WebhookDelivery.event,
    WebhookDelivery.order_ref,
    WebhookDelivery.body,
    WebhookDelivery.status,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.created_at,
    WebhookDelivery.updated_at,
)
_INSERT = db.prepared_insert(_RECORDED)


@dataclass(frozen=True)
class Event:
    """One event for one partner, as ``record`` takes it."""

    partner_id: int
    event: str
    data: dict[str, Any]
    order_ref: str | None = None


def record_many(events: Sequence[Event], *, occurred_at: datetime) -> int:
    """Add several events, each with the job that delivers it, in two statements: ``record``
    for a periodic task announcing a day's expiries at once. Returns how many were added."""
    unknown = {e.event for e in events} - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown webhook event(s) {sorted(unknown)!r}")
    if not events:
        return 0
    now = clock.now()
    rows = [
        {field: getattr(delivery, field.name) for field in _RECORDED}
        for delivery in (_pending(e, occurred_at, now) for e in events)
    ]
    with db.joined():
        query = WebhookDelivery.insert_many(rows).returning(WebhookDelivery.id).tuples()
        ids = [row[0] for row in query.execute()]
        queue.enqueue_many(
            TASK,
            [(job_payload(i, "scheduled"), job_key(i)) for i in ids],
            max_attempts=MAX_ATTEMPTS,
        )
    return len(ids)


def _pending(e: Event, occurred_at: datetime, now: datetime) -> WebhookDelivery:
    """A new delivery of ``e``, its body signed as every try will send it, due now."""
    return WebhookDelivery(
        webhook_id=signing.new_webhook_id(),
        partner=e.partner_id,
        event=e.event,
        order_ref=e.order_ref,
        body=signing.envelope(e.event, occurred_at, e.data),
        status="pending",
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


def schedule(delivery_id: int, *, trigger: str) -> int | None:
    """Queue the delivery's job now; None while one is already queued or running."""
    return queue.enqueue(
        TASK,
        job_payload(delivery_id, trigger),
        max_attempts=MAX_ATTEMPTS,
        unique_key=job_key(delivery_id),
    )


def job_payload(delivery_id: int, trigger: str) -> dict[str, Any]:
    """``trigger`` (scheduled or manual) is what the job's first try is recorded as."""
    return {"delivery": delivery_id, "trigger": trigger}


def job_key(delivery_id: int) -> str:
    return f"webhook:{delivery_id}"
