"""The partner's side of an order's life: when an order was fulfilled (the cancellation
window counts from it), its cancellation, a sandbox sales order's void, and the indexes the
partner's listings walk (orders newest first, events oldest first, an order's renewals).

A frozen copy of the schema change, independent of ``t2ctl.db.models``. Orders fulfilled
before it count as fulfilled at their last update, which for a FULFILLED order is the moment
it was fulfilled: nothing changes an order after that.
"""

from peewee import DateTimeField, TextField

INDEXES = (
    ("order", ("partner_id", "created_at", "id")),
    ("order", ("partner_id", "status", "created_at", "id")),
    ("order", ("partner_id", "renewal_of")),
    ("webhook_delivery", ("partner_id", "id")),
    ("webhook_delivery", ("partner_id", "event", "id")),
)
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
    db.execute_sql("UPDATE \"order\" SET fulfilled_at = updated_at WHERE status = 'FULFILLED'")
    for table, columns in INDEXES:
        migrator.add_index(table, columns).run()


def down(migrator, db):
    for table, columns in INDEXES:
        migrator.drop_index(table, "_".join((table, *columns))).run()
    migrator.drop_column("order", "cancel_reason").run()
    for table, column in COLUMNS:
        migrator.drop_column(table, column).run()
