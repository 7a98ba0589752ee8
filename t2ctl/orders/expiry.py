"""The subscription-expiry periodic tasks.

For now they count what is due; the webhooks issue gives them their events
(``subscription.expiring`` once per subscription, ``subscription.expired`` once, at expiry).
"""

from datetime import datetime, timedelta

from t2ctl.db.models import Order


def _fulfilled():
    return Order.select().where((Order.status == "FULFILLED") & Order.expires_at.is_null(False))


def reminders(as_of: datetime, *, days: int) -> str:
    due = _fulfilled().where(
        (Order.expires_at > as_of) & (Order.expires_at <= as_of + timedelta(days=days))
    )
    return f"{due.count()} subscription(s) expire within {days} days (reminders: not yet sent)"


def check(as_of: datetime) -> str:
    expired = _fulfilled().where(Order.expires_at <= as_of)
    return f"{expired.count()} subscription(s) have expired (events: not yet sent)"
