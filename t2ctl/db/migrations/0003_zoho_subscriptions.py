"""Subscriptions (what renewals extend), and Zoho provisioning's shared state: the access
token, the call pace, id caches and each sales order's progress.

A frozen copy of the schema as it stood, independent of ``t2ctl.db.models``. Orders already
FULFILLED get their subscriptions here, renewals joining the subscription they renewed.
"""

from datetime import UTC, datetime

from peewee import (
    AutoField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Partner(Base):  # referenced, not created here
        pass

    class Product(Base):
        pass

    class Subscription(Base):
        id: "AutoField[int]"  # peewee's implicit key, named for the type checker
        partner = ForeignKeyField(Partner, on_delete="RESTRICT")
        product = ForeignKeyField(Product, on_delete="RESTRICT")
        customer_id = CharField(max_length=64)
        starts_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class ZohoToken(Base):
        client = CharField(max_length=300, unique=True)
        access_token = TextField(null=True)
        api_domain = TextField(null=True)
        expires_at = DateTimeField(null=True)
        refreshed_at = DateTimeField(null=True)
        refresh_lease_until = DateTimeField(null=True)
        mints = TextField(default="[]")
        last_error = TextField(null=True)

    class RateSlot(Base):
        name = CharField(max_length=200, unique=True)
        next_at = DateTimeField()

    class ZohoContact(Base):
        organization_id = CharField(max_length=64)
        email_digest = CharField(max_length=64)
        contact_id = CharField(max_length=64)
        created_at = DateTimeField()

        class Meta:
            indexes = ((("organization_id", "email_digest"), True),)

    class ZohoItem(Base):
        organization_id = CharField(max_length=64)
        sku = CharField(max_length=64)
        item_id = CharField(max_length=64)
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("organization_id", "sku"), True),)

    class ZohoSalesOrder(Base):
        organization_id = CharField(max_length=64)
        partner = IntegerField()
        reference_number = CharField(max_length=64)
        state = CharField(max_length=16)
        attempt = CharField(max_length=32, null=True)
        contact_id = CharField(max_length=64, null=True)
        deadline = DateTimeField(null=True)
        salesorder_id = CharField(max_length=64, null=True)
        salesorder_number = CharField(max_length=64, null=True)
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("organization_id", "partner", "reference_number"), True),)

    db.create_tables([Subscription, ZohoToken, RateSlot, ZohoContact, ZohoItem, ZohoSalesOrder])
    migrator.add_column(
        "order",
        "subscription_id",
        ForeignKeyField(Subscription, null=True, field=Subscription.id, on_delete="RESTRICT"),
    ).run()
    # orderIds are unique per partner: sandbox sales orders are looked up by both.
    migrator.add_column("sandbox_sales_order", "partner", IntegerField(null=True)).run()
    _subscriptions_for_fulfilled_orders(db)


def _subscriptions_for_fulfilled_orders(db) -> None:
    """One subscription per fulfilled first order; a fulfilled renewal extends its target's."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = db.execute_sql(
        "SELECT id, partner_id, product_id, customer_id, order_id, renewal_of, starts_at, "
        "expires_at FROM \"order\" WHERE status = 'FULFILLED' AND expires_at IS NOT NULL "
        "ORDER BY id"
    ).fetchall()
    held: dict[tuple[int, str], int] = {}  # (partner, orderId) -> subscription id
    p = db.param
    for pk, partner, product, customer, order_id, renewal_of, starts, expires in rows:
        subscription = held.get((partner, renewal_of)) if renewal_of else None
        if subscription is None:
            cursor = db.execute_sql(
                f"INSERT INTO subscription (partner_id, product_id, customer_id, starts_at, "
                f"expires_at, created_at, updated_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) "
                "RETURNING id",
                (partner, product, customer, starts, expires, now, now),
            )
            subscription = cursor.fetchone()[0]
        else:
            db.execute_sql(
                f"UPDATE subscription SET expires_at = {p}, updated_at = {p} "
                f"WHERE id = {p} AND expires_at < {p}",
                (expires, now, subscription, expires),
            )
        held[(partner, order_id)] = subscription
        db.execute_sql(
            f'UPDATE "order" SET subscription_id = {p} WHERE id = {p}', (subscription, pk)
        )


def down(migrator, db):
    migrator.drop_column("order", "subscription_id").run()
    migrator.drop_column("sandbox_sales_order", "partner").run()
    for table in (
        "zoho_sales_order",
        "zoho_item",
        "zoho_contact",
        "rate_slot",
        "zoho_token",
        "subscription",
    ):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
