"""The subscription-expiry periodic tasks.

For now they count what is due; the webhooks issue gives them their events
(``subscription.expiring`` once per subscription, ``subscription.expired`` once, at expiry).
A renewal moves its subscription's expiry, so a renewed subscription is not due at the
expiry of the order it started from.
"""

from datetime import datetime, timedelta

from t2ctl.db.models import Subscription


def reminders(as_of: datetime, *, days: int) -> str:
    due = Subscription.select().where(
        (Subscription.expires_at > as_of)
        & (Subscription.expires_at <= as_of + timedelta(days=days))
    )
    return f"{due.count()} subscription(s) expire within {days} days (reminders: not yet sent)"


def check(as_of: datetime) -> str:
    expired = Subscription.select().where(Subscription.expires_at <= as_of)
    return f"{expired.count()} subscription(s) have expired (events: not yet sent)"
