"""Subscription dates: a term counted in calendar months, and where a renewal starts."""

import calendar
from datetime import datetime

from t2ctl.db.models import Order


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months: 31 January plus one month is the last day of February."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period(order: Order, *, now: datetime) -> tuple[datetime, datetime]:
    """(starts, expires) of the subscription this order buys. A renewal runs on from the
    renewed subscription's expiry, or from now if that has already passed."""
    starts = now
    if order.renewal_of is not None:
        renewed = Order.get_or_none(
            (Order.partner == order.partner_id) & (Order.order_id == order.renewal_of)
        )
        if renewed is not None and renewed.expires_at is not None:
            starts = max(renewed.expires_at, now)
    return starts, add_months(starts, order.product.term_months)
