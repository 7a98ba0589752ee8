"""The partner's event feed: every event its webhooks carry, oldest first, so a partner that
missed deliveries catches up by reading what it has not handled.

An event is its delivery as recorded in the outbox, whatever that delivery's status (pending,
delivered or dead): ``id`` is its ``webhook-id`` and the rest is the very body that was signed
and sent. The outbox commits a partner's events in id order, so reading by id from the last
one handled never skips one that committed late.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from t2ctl import values
from t2ctl.db.models import Partner, WebhookDelivery


@dataclass(frozen=True)
class Page:
    events: list[dict[str, Any]]
    more: bool  # later events exist beyond this page


def event(delivery: WebhookDelivery) -> dict[str, Any]:
    """``{"id", "type", "timestamp", "data"}``: the webhook-id, then the body as sent."""
    return {"id": delivery.webhook_id, **json.loads(delivery.body)}


def position(partner: Partner, event_id: str) -> int | None:
    """Where the partner's event ``event_id`` stands in its feed; None if the partner has no
    such event (another partner's is as unknown as a missing one).

    An id no event can have is not looked up: PostgreSQL refuses a NUL in a query's text.
    """
    if not re.fullmatch(values.ID_PATTERN, event_id):
        return None
    row = (
        WebhookDelivery.select(WebhookDelivery.id)
        .where((WebhookDelivery.partner == partner) & (WebhookDelivery.webhook_id == event_id))
        .first()
    )
    return None if row is None else row.id


def page(
    partner: Partner, *, after: int | None = None, event_type: str | None = None, limit: int = 50
) -> Page:
    """The partner's events after the ``position`` ``after`` (from the first when None), of
    one type or all, oldest first; one beyond ``limit`` is read to tell whether more exist."""
    query = WebhookDelivery.select(WebhookDelivery.webhook_id, WebhookDelivery.body).where(
        WebhookDelivery.partner == partner
    )
    if event_type is not None:
        query = query.where(WebhookDelivery.event == event_type)
    if after is not None:
        query = query.where(WebhookDelivery.id > after)
    rows = list(query.order_by(WebhookDelivery.id).limit(limit + 1))
    return Page([event(row) for row in rows[:limit]], len(rows) > limit)
