"""The subscription-expiry periodic tasks and their webhook events.

``expiry-reminders`` records ``subscription.expiring`` for each subscription that expires
within ``schedule.reminder_days``; ``expiry-check`` records ``subscription.expired`` for each
that has expired. Each is recorded once per expiry: the subscription row notes the expiry it
announced, and the note and the event commit together, conditionally on the note not being
there yet, so repeated and concurrent runs (several daemons, an operator's ``schedule run``)
add nothing. A renewal moves the expiry on, and the new one is announced in its turn.
"""

from datetime import datetime, timedelta

import peewee

from t2ctl import clock, db
from t2ctl.db.models import Order, Product, Subscription
from t2ctl.webhooks import outbox


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
    its current expiry; return how many were recorded by this run."""
    found = list(
        Subscription.select(Subscription, Product)
        .join(Product)
        .where(due & _unannounced(note))
        .order_by(Subscription.expires_at, Subscription.id)
    )
    return sum(_announce_one(subscription, note, event) for subscription in found)


def _announce_one(subscription: Subscription, note: peewee.Field, event: str) -> bool:
    with db.transaction():
        claimed = (
            Subscription.update({note: Subscription.expires_at})
            .where(
                (Subscription.id == subscription.id)
                & (Subscription.expires_at == subscription.expires_at)
                & _unannounced(note)
            )
            .execute()
        )
        if not claimed:
            return False  # another run announced it, or a renewal just moved its expiry
        latest = _latest_order(subscription)
        data = {
            "orderId": latest,
            "productId": subscription.product.product_id,
            "customer": {"id": subscription.customer_id},
            "expiresAt": clock.rfc3339(subscription.expires_at),
        }
        outbox.record(
            subscription.partner_id, event, data, occurred_at=clock.now(), order_ref=latest
        )
    return True


def _unannounced(note: peewee.Field) -> peewee.Expression:
    """The subscription's current expiry is not the one ``note`` says was announced."""
    return note.is_null() | (note != Subscription.expires_at)


def _latest_order(subscription: Subscription) -> str | None:
    """The orderId whose term ends the subscription: the one to name in ``renewalOf``; for
    a subscription its cancelled first order ended, that order."""
    order = (
        Order.select(Order.order_id)
        .where((Order.subscription == subscription.id) & (Order.status == "FULFILLED"))
        .order_by(Order.expires_at.desc(), Order.id.desc())
        .first()
    ) or (
        Order.select(Order.order_id)
        .where(Order.subscription == subscription.id)
        .order_by(Order.id)
        .first()
    )
    return order.order_id if order else None
