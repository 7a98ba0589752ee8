"""Subscriptions: a term counted in calendar months, started by an order or extended by a
renewal of it."""

import calendar
from datetime import datetime

from t2ctl import db
from t2ctl.db.models import Order, Product, Subscription


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
    (subscription_id,) = _NEW.first(
        order.partner_id, order.product_id, order.customer_id, now, expires, now, now
    )
    return subscription_id, now, expires


_NEW = db.prepared_insert(
    (
        Subscription.partner,
        Subscription.product,
        Subscription.customer_id,
        Subscription.starts_at,
        Subscription.expires_at,
        Subscription.created_at,
        Subscription.updated_at,
    )
)


def hold(subscription_id: int | None) -> None:
    """Lock the subscription until the transaction ends, before any of its orders' rows:
    cancellations of two orders of one subscription then queue here, in one order, instead
    of each holding an order the other's revoke moves."""
    if subscription_id is not None:
        list(
            db.locked(
                Subscription.select(Subscription.id).where(Subscription.id == subscription_id)
            )
        )


def revoke(order_pk: int, *, now: datetime) -> None:
    """Take back what a cancelled order bought; call inside the transaction that records it
    CANCELLED, after ``hold``. The order is read here, under that lock: a revoke committed
    meanwhile may have moved its dates.

    A first order ends its subscription now (it expires, and its expiry is announced as any
    other). A renewal's term comes off: the orders bought after it (not cancelled ones) move
    back into its place (``_move_back``), and the subscription expires with the last of its
    fulfilled orders, which, for a renewal of a lapsed subscription, is the expiry it had
    lapsed at. A live renewal built on the order is refused before this is reached."""
    order = Order.get_by_id(order_pk)
    if order.subscription_id is None:
        return
    if order.renewal_of is None:
        subscription = Subscription.get_by_id(order.subscription_id)
        expires = min(subscription.expires_at, now)
    else:
        _move_back(order, now=now)
        last = (
            Order.select(Order.expires_at)
            .where((Order.subscription == order.subscription_id) & (Order.status == "FULFILLED"))
            .order_by(Order.expires_at.desc())
            .first()
        )
        expires = last.expires_at if last is not None else order.starts_at
    Subscription.update(expires_at=expires, updated_at=now).where(
        Subscription.id == order.subscription_id
    ).execute()


def _move_back(order: Order, *, now: datetime) -> None:
    """Lay the subscription's orders bought after ``order`` out again without its term: each
    starts where the one before it now ends (never before it was fulfilled: time before then
    was not bought) and runs its own term in calendar months."""
    later = list(
        Order.select(Order, Product)
        .join(Product)
        .where(
            (Order.subscription == order.subscription_id)
            & (Order.id != order.id)
            & (Order.status != "CANCELLED")
            & (Order.starts_at >= order.expires_at)
        )
        .order_by(Order.starts_at, Order.id)
    )
    starts = order.starts_at
    for moved in later:
        starts = max(starts, moved.fulfilled_at or starts)
        expires = add_months(starts, moved.product.term_months)
        Order.update(starts_at=starts, expires_at=expires, updated_at=now).where(
            Order.id == moved.id
        ).execute()
        starts = expires
