"""The partner's event feed: every event its webhooks carry, oldest first, so a partner that
missed deliveries catches up by reading what it has not handled.

An event is its delivery as recorded in the outbox, whatever that delivery's status (pending,
delivered or dead): ``id`` is its ``webhook-id`` and the rest is the very body that was signed
and sent.

The feed is read in ``feed_seq`` order, a place each event is given once it has committed:
every read first places the partner's committed events that have none yet, after all that
have one, under a lock (one reader of a partner at a time). Row ids come from a sequence in
the order of the inserts, not of the commits, so an event committed late may have a smaller
id than one already read: placed at its commit, it still comes after everything read before.
Writers pay nothing for this; a read places what committed since the last one.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from t2ctl import db, values
from t2ctl.db.models import Partner, WebhookDelivery


@dataclass(frozen=True)
class Page:
    events: list[dict[str, Any]]
    more: bool  # later events exist beyond this page


def event(delivery: WebhookDelivery) -> dict[str, Any]:
    """``{"id", "type", "timestamp", "data"}``: the webhook-id, then the body as sent."""
    return {"id": delivery.webhook_id, **json.loads(delivery.body)}


def read(
    partner: Partner, *, after: str | None = None, event_type: str | None = None, limit: int = 50
) -> Page | None:
    """The partner's events after the event ``after`` (from the first when None), of one type
    or all, in feed order; one beyond ``limit`` is read to tell whether more exist. None when
    ``after`` names no event of the partner's (another partner's is as unknown as a missing
    one)."""
    _place(partner)
    query = WebhookDelivery.select(WebhookDelivery.webhook_id, WebhookDelivery.body).where(
        (WebhookDelivery.partner == partner) & WebhookDelivery.feed_seq.is_null(False)
    )
    if after is not None:
        seq = _seq(partner, after)
        if seq is None:
            return None
        query = query.where(WebhookDelivery.feed_seq > seq)
    if event_type is not None:
        query = query.where(WebhookDelivery.event == event_type)
    rows = list(query.order_by(WebhookDelivery.feed_seq).limit(limit + 1))
    return Page([event(row) for row in rows[:limit]], len(rows) > limit)


def _seq(partner: Partner, event_id: str) -> int | None:
    """The place of the partner's event ``event_id``, or None. An id no event can have is not
    looked up: PostgreSQL refuses a NUL in a query's text."""
    if not re.fullmatch(values.ID_PATTERN, event_id):
        return None
    row = (
        WebhookDelivery.select(WebhookDelivery.feed_seq)
        .where((WebhookDelivery.partner == partner) & (WebhookDelivery.webhook_id == event_id))
        .first()
    )
    return None if row is None else row.feed_seq


_LOCK_SPACE = 0x7432_6665 << 32  # "t2fe": a lock per partner on placing its events
_PLACE = """
UPDATE webhook_delivery SET feed_seq = (
    SELECT COALESCE(MAX(feed_seq), 0) FROM webhook_delivery WHERE partner_id = {p}
) + placed.n
FROM (
    SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM webhook_delivery
    WHERE partner_id = {p} AND feed_seq IS NULL
) AS placed
WHERE webhook_delivery.id = placed.id
"""


def _place(partner: Partner) -> None:
    """Give the partner's committed events that have no place one, after every placed one,
    in id order among themselves; one reader of a partner places at a time."""
    with db.transaction():
        db.serialize(_LOCK_SPACE | partner.id)
        db.database.execute_sql(_PLACE.format(p=db.database.param), (partner.id, partner.id))
