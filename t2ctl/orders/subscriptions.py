"""Subscriptions: a term counted in calendar months, started by an order or extended by a
renewal of it."""

import calendar
from datetime import datetime

from t2ctl import db
from t2ctl.db.models import Order, Subscription


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months: 31 January plus one month is the last day of February."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def fulfil(order: Order, *, now: datetime) -> tuple[int, datetime, datetime]:
    """Start the subscription this order buys, or extend the one it renews; call inside the
    transaction that records the order FULFILLED. Returns the subscription's id and the
    period this order paid for: a renewal runs on from the subscription's current expiry, or
    from now if that has passed."""
    term = order.product.term_months
    renewed = (
        Order.get_or_none(
            (Order.partner == order.partner_id) & (Order.order_id == order.renewal_of)
        )
        if order.renewal_of is not None
        else None
    )
    if renewed is not None and renewed.subscription_id is not None:
        # Locked: two renewals of one subscription finishing at once extend it twice, in turn.
        held = db.locked(Subscription.select().where(Subscription.id == renewed.subscription_id))
        subscription = held.get()
        starts = max(subscription.expires_at, now)
        expires = add_months(starts, term)
        Subscription.update(expires_at=expires, updated_at=now).where(
            Subscription.id == subscription.id
        ).execute()
        return subscription.id, starts, expires
    expires = add_months(now, term)
    subscription = Subscription.create(
        partner=order.partner_id,
        product=order.product_id,
        customer_id=order.customer_id,
        starts_at=now,
        expires_at=expires,
        created_at=now,
        updated_at=now,
    )
    return subscription.id, now, expires


def revoke(order: Order, *, now: datetime) -> None:
    """Take back what a cancelled order bought; call inside the transaction that records it
    CANCELLED. A first order ends its subscription now (it expires, and its expiry is
    announced as any other); a renewal takes its term back off the expiry, and the orders
    bought after it move back by as much, so their dates stay what they paid for. A
    renewal built on the order is refused before this is reached."""
    if order.subscription_id is None:
        return
    held = db.locked(Subscription.select().where(Subscription.id == order.subscription_id))
    subscription = held.get()
    if order.renewal_of is None:
        expires = min(subscription.expires_at, now)
    else:
        bought = order.expires_at - order.starts_at
        expires = subscription.expires_at - bought
        later = Order.select().where(
            (Order.subscription == subscription.id)
            & (Order.id != order.id)
            & (Order.starts_at >= order.expires_at)
        )
        for moved in later:
            Order.update(
                starts_at=moved.starts_at - bought, expires_at=moved.expires_at - bought
            ).where(Order.id == moved.id).execute()
    Subscription.update(expires_at=expires, updated_at=now).where(
        Subscription.id == subscription.id
    ).execute()
