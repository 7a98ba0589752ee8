"""The partner's side of an order's life: when an order was fulfilled (the cancellation
window counts from it), its cancellation, a sandbox sales order's void, an event's place in
its partner's feed, and the indexes the partner's listings walk (orders newest first, events
in feed order, an order's renewals).

A frozen copy of the schema change, independent of ``t2ctl.db.models``. Orders fulfilled
before it count as fulfilled at their last update, which for a FULFILLED order is the moment
it was fulfilled: nothing changes an order after that. Events recorded before it take their
row id as their place in the feed.
"""

from peewee import BigIntegerField, DateTimeField, TextField

INDEXES = (
    ("order", ("partner_id", "created_at", "id")),
    ("order", ("partner_id", "status", "created_at", "id")),
    ("order", ("partner_id", "renewal_of")),
    ("webhook_delivery", ("partner_id", "feed_seq")),
    ("webhook_delivery", ("partner_id", "event", "feed_seq")),
)
UNPLACED = "webhook_delivery_unplaced"
COLUMNS = (
    ("order", "fulfilled_at"),
    ("order", "cancel_requested_at"),
    ("order", "cancelled_at"),
    ("sandbox_sales_order", "voided_at"),
)


def up(migrator, db):
    for table, column in COLUMNS:
        migrator.add_column(table, column, DateTimeField(null=True)).run()
    migrator.add_column("order", "cancel_reason", TextField(null=True)).run()
    migrator.add_column("webhook_delivery", "feed_seq", BigIntegerField(null=True)).run()
    db.execute_sql("UPDATE webhook_delivery SET feed_seq = id")
    db.execute_sql("UPDATE \"order\" SET fulfilled_at = updated_at WHERE status = 'FULFILLED'")
    for table, columns in INDEXES:
        migrator.add_index(table, columns).run()
    # The events a feed read has still to place: few at any time, in id order.
    db.execute_sql(
        f"CREATE INDEX {UNPLACED} ON webhook_delivery (partner_id, id) WHERE feed_seq IS NULL"
    )


def down(migrator, db):
    migrator.drop_index("webhook_delivery", UNPLACED).run()
    for table, columns in INDEXES:
        migrator.drop_index(table, "_".join((table, *columns))).run()
    migrator.drop_column("order", "cancel_reason").run()
    migrator.drop_column("webhook_delivery", "feed_seq").run()
    for table, column in COLUMNS:
        migrator.drop_column(table, column).run()
