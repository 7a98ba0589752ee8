"""The subscription-expiry periodic tasks and their webhook events.

``expiry-reminders`` records ``subscription.expiring`` for each subscription that expires
within ``schedule.reminder_days``; ``expiry-check`` records ``subscription.expired`` for each
that has expired. Each is recorded once per expiry: the subscription row notes the expiry it
announced, and the note and the event commit together, conditionally on the note not being
there yet, so repeated and concurrent runs (several daemons, an operator's ``schedule run``)
add nothing. A renewal moves the expiry on, and the new one is announced in its turn.
Subscriptions are claimed and announced in batches, one commit each: a day's expiries cost a
few commits, not one each.
"""

from datetime import datetime, timedelta

import peewee

from t2ctl import clock, db
from t2ctl.db.models import Order, Product, Subscription
from t2ctl.webhooks import outbox

BATCH = 500  # subscriptions announced in one commit


def reminders(as_of: datetime, *, days: int) -> str:
    window = (Subscription.expires_at > as_of) & (
        Subscription.expires_at <= as_of + timedelta(days=days)
    )
    sent = _announce(window, Subscription.reminded_for, "subscription.expiring")
    return f"{sent} subscription(s) expiring within {days} days announced"


def check(as_of: datetime) -> str:
    sent = _announce(
        Subscription.expires_at <= as_of, Subscription.expired_for, "subscription.expired"
    )
    return f"{sent} expired subscription(s) announced"


def _announce(due: peewee.Expression, note: peewee.Field, event: str) -> int:
    """Record ``event`` for every subscription in ``due`` whose ``note`` does not yet name
    its current expiry, ``BATCH`` to a commit; return how many were recorded by this run.

    Each batch is claimed by one conditional ``UPDATE``: a subscription another run
    announced meanwhile, or a renewal moved out of ``due``, is not claimed again (on
    PostgreSQL the update waits for their row locks and re-reads the row)."""
    sent = 0
    while True:
        with db.transaction():
            picked = [
                row.id
                for row in Subscription.select(Subscription.id)
                .where(due & _unannounced(note))
                .order_by(Subscription.expires_at, Subscription.id)
                .limit(BATCH)
            ]
            if not picked:
                return sent
            claimed = list(
                Subscription.update({note: Subscription.expires_at})
                .where(Subscription.id.in_(picked) & due & _unannounced(note))
                .returning(Subscription)
                .objects()
            )
            _record(claimed, event)
        sent += len(claimed)


def _record(claimed: list[Subscription], event: str) -> None:
    """Each claimed subscription's event, in the order of their expiries."""
    latest = _latest_orders([subscription.id for subscription in claimed])
    names = {p.id: p.product_id for p in Product.select(Product.id, Product.product_id)}
    events = [
        outbox.Event(
            subscription.partner_id,
            event,
            {
                "orderId": latest.get(subscription.id),
                "productId": names[subscription.product_id],
                "customer": {"id": subscription.customer_id},
                "expiresAt": clock.rfc3339(subscription.expires_at),
            },
            latest.get(subscription.id),
        )
        for subscription in sorted(claimed, key=lambda s: (s.expires_at, s.id))
    ]
    outbox.record_many(events, occurred_at=clock.now())


def _unannounced(note: peewee.Field) -> peewee.Expression:
    """The subscription's current expiry is not the one ``note`` says was announced: for
    ``expired_for``, word for word the condition of the partial index expiry-check reads."""
    return note.is_null() | (note != Subscription.expires_at)


def _latest_orders(subscription_ids: list[int]) -> dict[int, str]:
    """Each subscription's orderId whose term ends it: the one to name in ``renewalOf``;
    for a subscription its cancelled first order ended, that order."""
    rank: dict[int, tuple] = {}
    latest: dict[int, str] = {}
    query = Order.select(
        Order.subscription, Order.order_id, Order.status, Order.expires_at, Order.id
    ).where(Order.subscription.in_(subscription_ids))
    for order in query:
        # The fulfilled order that expires last (the later one on a tie), else the first.
        key = (1, order.expires_at, order.id) if order.status == "FULFILLED" else (0, -order.id)
        held = order.subscription_id
        if held is not None and (held not in rank or key > rank[held]):
            rank[held], latest[held] = key, order.order_id
    return latest
