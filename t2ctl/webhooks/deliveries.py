"""What operators read and do with deliveries: list, show with attempts, resend, prune."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from peewee import fn

from t2ctl import clock, db
from t2ctl.db.models import DELIVERY_STATUSES, Partner, WebhookAttempt, WebhookDelivery
from t2ctl.errors import Conflict, NotFound
from t2ctl.jobs import admin
from t2ctl.webhooks import outbox


def _query():
    return WebhookDelivery.select(WebhookDelivery, Partner).join(Partner)


_BY_PK = db.Prepared(lambda pk: _query().where(WebhookDelivery.id == pk).limit(1), 1)


def find(delivery_id: int) -> WebhookDelivery | None:
    """The delivery with its partner, or None. Prepared: every try of a delivery reads it."""
    return _BY_PK.first(delivery_id)


def get(delivery_id: int) -> WebhookDelivery:
    delivery = find(delivery_id)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return delivery


def attempts(delivery: WebhookDelivery) -> list[WebhookAttempt]:
    """Oldest first: the story of the delivery as it happened."""
    query = WebhookAttempt.select().where(WebhookAttempt.delivery == delivery.id)
    return list(query.order_by(WebhookAttempt.attempted_at, WebhookAttempt.id))


def listing(
    *,
    status: str | None = None,
    partner_name: str | None = None,
    order_ref: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """Newest first."""
    query = _query().order_by(WebhookDelivery.id.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if partner_name is not None:
        query = query.where(Partner.name == partner_name)
    if order_ref is not None:
        query = query.where(WebhookDelivery.order_ref == order_ref)
    if since is not None:
        query = query.where(WebhookDelivery.created_at >= since)
    return list(query)


def dead_ids(*, since: datetime | None = None) -> list[int]:
    """Dead deliveries of events recorded since ``since``, oldest first."""
    query = WebhookDelivery.select(WebhookDelivery.id).where(WebhookDelivery.status == "dead")
    if since is not None:
        query = query.where(WebhookDelivery.created_at >= since)
    return [row.id for row in query.order_by(WebhookDelivery.id)]


def resend(delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now, under its own ``webhook-id`` and body, with the retry
    schedule from its start: a dead or delivered one is pending again; a pending one's next
    try is brought forward."""
    delivery = get(delivery_id)
    now = clock.now()
    with db.transaction():
        changed = (
            WebhookDelivery.update(
                status="pending", failures=0, next_attempt_at=now, finished_at=None, updated_at=now
            )
            .where(
                (WebhookDelivery.id == delivery.id) & (WebhookDelivery.status == delivery.status)
            )
            .execute()
        )
        if not changed:
            raise Conflict(f"delivery {delivery_id} changed while resending it; look again")
        if outbox.schedule(delivery.id, trigger="manual") is None and not admin.bring_forward(
            outbox.job_key(delivery.id), outbox.job_payload(delivery.id, "manual"), now=now
        ):
            raise Conflict(
                f"delivery {delivery_id} is being tried right now; look again in a few seconds"
            )
    return get(delivery_id)


def prune_attempts(*, before: datetime) -> int:
    """Delete attempts made before ``before``; the deliveries themselves stay."""
    with db.transaction():
        return WebhookAttempt.delete().where(WebhookAttempt.attempted_at < before).execute()


def counts(statuses: Sequence[str] = DELIVERY_STATUSES) -> dict[str, int]:
    """Deliveries by status, for each of ``statuses`` (zero included). Pending and dead
    deliveries are few, counted in their range of the ``(status, created_at)`` index;
    delivered is nearly every event ever recorded, which only a whole scan counts."""
    found = dict.fromkeys(statuses, 0)
    query = WebhookDelivery.select(WebhookDelivery.status, fn.COUNT(WebhookDelivery.id))
    rows = query.where(WebhookDelivery.status.in_(statuses)).group_by(WebhookDelivery.status)
    found.update(cast("Iterable[tuple[str, int]]", rows.tuples()))  # stubs: rows as models
    return found


def failed_attempts_since(moment: datetime) -> int:
    """Delivery attempts since ``moment`` that got no 2xx."""
    query = WebhookAttempt.select().where(
        (WebhookAttempt.attempted_at >= moment) & (WebhookAttempt.outcome != "delivered")
    )
    return query.count()
