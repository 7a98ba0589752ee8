"""Migrations 0003 and 0004 on a database that already has orders: each FULFILLED order gets
its subscription, a fulfilled renewal joins (and extends) the one it renewed, and a
subscription that had already expired is not announced as news."""

from datetime import UTC, datetime

from playhouse.migrations import Runner

from t2ctl import db
from t2ctl.config import Settings
from t2ctl.db import schema
from t2ctl.db.base import BaseModel
from t2ctl.db.models import Order, Subscription
from t2ctl.jobs import models as _jobs  # noqa: F401  # its models are BaseModel's too


def test_fulfilled_orders_get_their_subscriptions(settings: Settings) -> None:
    handle = db.connect(settings.database.url)
    Runner(handle, str(schema.MIGRATIONS)).up("0002_jobs")
    p = handle.param
    moment = datetime(2026, 1, 1, 9, 0)
    handle.execute_sql(
        f"INSERT INTO partner (name, webhook_url, webhook_secret, allowed_ips, created_at, "
        f"updated_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
        ("t2mobile", "http://127.0.0.1:9/hook", "x", "[]", moment, moment),
    )
    handle.execute_sql(
        f"INSERT INTO product (product_id, name, description, price_minor, currency, "
        f"term_months, active, created_at, updated_at) VALUES "
        f"({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
        ("M365", "M365", "", 100, "NGN", 12, True, moment, moment),
    )
    rows = [  # orderId, status, renewalOf, expires
        ("T2-A", "FULFILLED", None, datetime(2027, 1, 1, 9)),
        ("T2-B", "FULFILLED", "T2-A", datetime(2028, 1, 1, 9)),
        ("T2-C", "FULFILLED", None, datetime(2027, 6, 1, 9)),
        ("T2-D", "FAILED", None, None),
        ("T2-E", "FULFILLED", None, datetime(2026, 6, 1, 9)),  # expired before the upgrade
    ]
    for order_id, status, renewal_of, expires in rows:
        handle.execute_sql(
            f'INSERT INTO "order" (partner_id, order_id, status, product_id, quantity, '
            f"customer_id, customer_name, customer_email, amount_minor, currency, renewal_of, "
            f"starts_at, expires_at, created_at, updated_at) VALUES "
            f"(1, {p}, {p}, 1, 1, 'CUST-1', 'Ada', 'x', 100, 'NGN', {p}, {p}, {p}, {p}, {p})",
            (order_id, status, renewal_of, moment if expires else None, expires, moment, moment),
        )

    assert schema.migrate() == [
        "0003_zoho_subscriptions",
        "0004_webhooks",
        "0005_audit",
        "0006_partner_reads_cancellation",
        "0007_settlement_reconciliation",
        "0008_operator_reads",
        "0009_lean_order_indexes",
    ]

    held = {o.order_id: o.subscription_id for o in Order.select()}
    assert held["T2-A"] == held["T2-B"] != held["T2-C"]
    assert held["T2-D"] is None
    assert Subscription.select().count() == 3
    lapsed = Subscription.get_by_id(held["T2-E"])
    assert lapsed.expired_for == lapsed.expires_at == lapsed.reminded_for, "not announced late"
    assert Subscription.get_by_id(held["T2-C"]).expired_for is None
    assert Subscription.get_by_id(held["T2-A"]).expires_at.year == 2028
    assert Subscription.get_by_id(held["T2-C"]).expires_at.month == 6
    fulfilled = {o.order_id: o.fulfilled_at for o in Order.select()}
    assert fulfilled["T2-A"] == moment.replace(tzinfo=UTC), "the window counts from then"
    assert fulfilled["T2-D"] is None


def test_the_migrated_schema_has_the_indexes_the_models_declare(migrated: Settings) -> None:
    """Migrations are frozen copies of each change: a model that declares an index the
    schema lacks (or lacks one it has) reads with plans nobody measured."""
    differ = {}
    for model in BaseModel.__subclasses__():
        table = model._meta.table_name
        declared = {index._name for index in model._meta.fields_to_index()}
        found = {
            index.name
            for index in db.database.get_indexes(table)
            if not index.name.endswith("_pkey") and not index.name.startswith("sqlite_")
        }
        if found != declared:
            differ[table] = {
                "only in the schema": found - declared,
                "only declared": declared - found,
            }
    assert not differ
