"""The expiry tasks announce in batches, one commit each: across batches and concurrent runs,
each subscription's expiry is still announced exactly once, naming the order whose term
ends it."""

import json
from datetime import timedelta

import pytest

from t2ctl import clock, partners
from t2ctl.config import Settings
from t2ctl.db.models import Order, Product, Subscription, WebhookDelivery
from t2ctl.jobs.models import Job
from t2ctl.orders import expiry
from t2ctl.security.crypto import SecretBox
from tests.conftest import at_once
from tests.plans import plan, statements

COUNT = 7  # subscriptions, over three batches of BATCH


def _subscriptions(settings: Settings) -> list[str]:
    """COUNT subscriptions expiring a day apart; the orderId each announcement must name:
    the renewal for the first (two fulfilled orders), the cancelled first order for the last
    (no fulfilled one left)."""
    box = SecretBox(settings.security.master_keys)
    partner = partners.add("t2mobile", "http://127.0.0.1:9/hook", box=box, sandbox=True).partner
    product = Product.get(Product.product_id == "M365-BASIC-12M")
    now = clock.now()
    expected = []
    for n in range(COUNT):
        expires = now + timedelta(days=10 + n)
        subscription = Subscription.create(
            partner=partner.id,
            product=product.id,
            customer_id=f"CUST-{n}",
            starts_at=now,
            expires_at=expires,
            created_at=now,
            updated_at=now,
        )
        orders = [(f"T2-{n}", expires - timedelta(days=365))]
        if n == 0:
            orders.append((f"T2-{n}-R", expires))
        for order_id, ends in orders:
            Order.create(
                partner=partner.id,
                order_id=order_id,
                status="CANCELLED" if n == COUNT - 1 else "FULFILLED",
                product=product.id,
                quantity=1,
                customer_id=f"CUST-{n}",
                customer_name="Ada",
                customer_email="x",
                amount_minor=product.price_minor,
                currency=product.currency,
                expires_at=ends,
                subscription=subscription.id,
                created_at=now,
                updated_at=now,
            )
        expected.append(orders[-1][0])
    return expected


def _announced(event: str) -> list[str]:
    query = WebhookDelivery.select().where(WebhookDelivery.event == event)
    return [json.loads(d.body)["data"]["orderId"] for d in query.order_by(WebhookDelivery.id)]


def test_batched_runs_announce_each_expiry_once(
    migrated: Settings, catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(expiry, "BATCH", 3)
    expected = _subscriptions(migrated)
    as_of = clock.now() + timedelta(days=9)  # every expiry within the next 7 days

    runs = at_once(4, lambda: expiry.reminders(as_of, days=7))
    runs.append(expiry.reminders(as_of, days=7))
    assert sum(int(run.split()[0]) for run in runs) == COUNT
    assert sorted(_announced("subscription.expiring")) == sorted(expected)

    later = as_of + timedelta(days=8)
    assert expiry.check(later).startswith(f"{COUNT} ")
    assert expiry.check(later).startswith("0 ")
    assert _announced("subscription.expired") == expected, "in the order of their expiries"
    assert all(s.expired_for == s.expires_at for s in Subscription.select())
    sent = {job.payload["delivery"] for job in Job.select().where(Job.task == "deliver")}
    assert sent == {d.id for d in WebhookDelivery.select()}, "each event with its job"


def test_expiry_check_reads_only_the_unannounced(migrated: Settings) -> None:
    """Its partial index holds the subscriptions not yet announced as expired (a few, in
    order of expiry; sorting them is cheap), not every one that ever expired."""
    with statements() as ran:
        expiry.check(clock.now())
    picked = [s for s in ran if s[0].startswith('SELECT "t1"."id" FROM "subscription"')]
    assert len(picked) == 1 and "subscription_unexpired" in plan(*picked[0])
