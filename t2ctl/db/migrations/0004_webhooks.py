"""Webhooks: the outbox of deliveries with their attempts, webhook secrets still signing
through a rotation's grace, and which expiry each subscription was told about.

A frozen copy of the schema as it stood, independent of ``t2ctl.db.models``. Subscriptions
that had already expired count as announced: partners are not told of old news at once.
"""

from datetime import UTC, datetime

from peewee import (
    BigAutoField,
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

    class WebhookDelivery(Base):
        id = BigAutoField()
        webhook_id = CharField(max_length=64, unique=True)
        partner = ForeignKeyField(Partner, on_delete="RESTRICT")
        event = CharField(max_length=64)
        order_ref = CharField(max_length=64, null=True)
        body = TextField()
        status = CharField(max_length=16)
        attempts = IntegerField(default=0)
        failures = IntegerField(default=0)
        next_attempt_at = DateTimeField(null=True)
        last_status = IntegerField(null=True)
        last_error = TextField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        finished_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("status", "created_at"), False), (("partner", "created_at"), False))

    class WebhookAttempt(Base):
        id = BigAutoField()
        delivery = ForeignKeyField(WebhookDelivery, on_delete="CASCADE", index=True)
        attempted_at = DateTimeField(index=True)
        trigger = CharField(max_length=16)
        url = TextField()
        status_code = IntegerField(null=True)
        latency_ms = IntegerField(null=True)
        outcome = CharField(max_length=16)
        error = TextField(null=True)
        excerpt = TextField(null=True)

    class RetiredWebhookSecret(Base):
        partner = ForeignKeyField(Partner, on_delete="CASCADE", index=True)
        secret = TextField()
        retired_at = DateTimeField()
        signs_until = DateTimeField()

    db.create_tables([WebhookDelivery, WebhookAttempt, RetiredWebhookSecret])
    migrator.add_column("subscription", "reminded_for", DateTimeField(null=True)).run()
    migrator.add_column("subscription", "expired_for", DateTimeField(null=True)).run()
    db.execute_sql(
        f"UPDATE subscription SET reminded_for = expires_at, expired_for = expires_at "
        f"WHERE expires_at <= {db.param}",
        (datetime.now(UTC).replace(tzinfo=None),),
    )


def down(migrator, db):
    migrator.drop_column("subscription", "reminded_for").run()
    migrator.drop_column("subscription", "expired_for").run()
    for table in ("retired_webhook_secret", "webhook_attempt", "webhook_delivery"):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
