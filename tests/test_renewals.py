"""Subscriptions and renewals: a fulfilled order starts a subscription, a renewal extends it
by the term from its current expiry (or from now once it has lapsed), in calendar months.
Each test runs on SQLite and on PostgreSQL, with orders sent over HTTP."""

import calendar
from datetime import UTC, datetime, timedelta

import pytest
import requests

from t2ctl import clock, products
from t2ctl.db.models import Order, Subscription
from t2ctl.orders import expiry, subscriptions
from t2ctl.values import Money
from tests.conftest import LiveServer, at_once, daemon_worker, drain, order_body, submit

MONTHLY = products.ProductData(
    "VPN-1M", "Secure VPN", "One month", Money.parse("1500.00", "NGN"), 1, True
)


def monthly(order_id: str, **changes) -> dict:
    return order_body(
        order_id, productId="VPN-1M", amount={"value": "1500.00", "currency": "NGN"}, **changes
    )


def subscription_of(order_id: str) -> Subscription:
    return Subscription.get_by_id(Order.get(Order.order_id == order_id).subscription_id)


def set_expiry(order_id: str, moment: datetime) -> None:
    Subscription.update(expires_at=moment).where(
        Subscription.id == subscription_of(order_id).id
    ).execute()


def renew(server: LiveServer, http: requests.Session, body: dict) -> dict:
    assert http.post(server.endpoint("/fulfilment"), json=body).status_code == 202
    drain(daemon_worker(server))
    return http.get(server.endpoint(f"/orders/{body['orderId']}")).json()


def test_a_renewal_extends_the_subscription_from_its_current_expiry(
    server: LiveServer, catalogue
) -> None:
    http = submit(server, order_body("T2-FIRST"))
    drain(daemon_worker(server))
    later = clock.now() + timedelta(days=40)
    set_expiry("T2-FIRST", later)

    renewal = renew(server, http, order_body("T2-RENEW", renewalOf="T2-FIRST"))

    assert renewal["status"] == "FULFILLED"
    assert renewal["fulfilment"]["startsAt"] == clock.rfc3339(later)
    assert renewal["fulfilment"]["expiresAt"] == clock.rfc3339(subscriptions.add_months(later, 12))
    held = subscription_of("T2-FIRST")
    assert subscription_of("T2-RENEW").id == held.id, "one subscription, extended"
    assert held.expires_at == subscriptions.add_months(later, 12)
    assert Subscription.select().count() == 1
    # The renewed subscription is no longer due at the first order's expiry.
    assert expiry.reminders(later - timedelta(days=1), days=7).startswith("0 subscription")


def test_a_renewal_of_an_expired_subscription_starts_now(server: LiveServer, catalogue) -> None:
    http = submit(server, order_body("T2-FIRST"))
    drain(daemon_worker(server))
    set_expiry("T2-FIRST", clock.now() - timedelta(days=3))
    before = clock.now().replace(microsecond=0)

    renewal = renew(server, http, order_body("T2-RENEW", renewalOf="T2-FIRST"))

    starts = datetime.fromisoformat(renewal["fulfilment"]["startsAt"])
    assert before <= starts <= clock.now()
    expires = datetime.fromisoformat(renewal["fulfilment"]["expiresAt"])
    assert expires == subscriptions.add_months(starts, 12)
    assert subscription_of("T2-FIRST").expires_at > clock.now() + timedelta(days=360)


def test_month_end_renewals_land_on_the_last_day_of_a_shorter_month(
    server: LiveServer, catalogue
) -> None:
    products.upsert([MONTHLY])
    http = submit(server, monthly("T2-JAN"))
    drain(daemon_worker(server))
    year = clock.now().year + 1  # the next 31 January is always ahead
    last = 29 if calendar.isleap(year) else 28
    set_expiry("T2-JAN", datetime(year, 1, 31, 10, 0, tzinfo=UTC))

    february = renew(server, http, monthly("T2-FEB", renewalOf="T2-JAN"))
    assert february["fulfilment"]["expiresAt"] == f"{year}-02-{last}T10:00:00Z"
    # Renewing the renewal runs on from the end of February, not from 31 January.
    march = renew(server, http, monthly("T2-MAR", renewalOf="T2-FEB"))
    assert march["fulfilment"]["startsAt"] == f"{year}-02-{last}T10:00:00Z"
    assert march["fulfilment"]["expiresAt"] == f"{year}-03-{last}T10:00:00Z"
    assert subscription_of("T2-JAN").expires_at == datetime(year, 3, last, 10, tzinfo=UTC)


def test_two_renewals_finishing_at_once_each_extend_the_subscription(
    server: LiveServer, catalogue
) -> None:
    products.upsert([MONTHLY])
    http = submit(server, monthly("T2-FIRST"))
    drain(daemon_worker(server))
    start = clock.now() + timedelta(days=10)
    set_expiry("T2-FIRST", start)
    for order_id in ("T2-R1", "T2-R2"):
        body = monthly(order_id, renewalOf="T2-FIRST")
        assert http.post(server.endpoint("/fulfilment"), json=body).status_code == 202

    workers = [daemon_worker(server), daemon_worker(server)]
    at_once(2, lambda: workers.pop().run_once())

    assert {o.status for o in Order.select()} == {"FULFILLED"}
    assert subscription_of("T2-FIRST").expires_at == subscriptions.add_months(start, 2)
    periods = sorted(
        (o.starts_at, o.expires_at) for o in Order.select().where(Order.renewal_of.is_null(False))
    )
    assert periods[0][1] == periods[1][0], "the second renewal runs on from the first"


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        ("2026-01-31", 1, "2026-02-28"),
        ("2028-01-31", 1, "2028-02-29"),
        ("2026-03-31", 1, "2026-04-30"),
        ("2026-11-27", 12, "2027-11-27"),
        ("2026-12-15", 1, "2027-01-15"),
        ("2026-08-31", 6, "2027-02-28"),
    ],
)
def test_terms_are_calendar_months(start: str, months: int, end: str) -> None:
    moment = datetime.fromisoformat(start).replace(hour=9, tzinfo=UTC)
    assert subscriptions.add_months(moment, months) == datetime.fromisoformat(end).replace(
        hour=9, tzinfo=UTC
    )
