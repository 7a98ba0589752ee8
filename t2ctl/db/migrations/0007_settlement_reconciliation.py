"""Money and drift: the indexes a settlement report's one aggregate walks (each partner's
orders fulfilled, and cancelled, in a period), a sandbox sales order's total (what reconcile
compares with the order's amount) and the index its listing walks (made since), and the
record of each reconciliation.

A frozen copy of the schema change, independent of ``t2ctl.db.models``. Sandbox sales
orders made before it have no total: reconcile does not compare their amounts.
"""

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)

INDEXES = (
    ("order", ("partner_id", "fulfilled_at")),
    ("order", ("partner_id", "cancelled_at")),
    ("sandbox_sales_order", ("created_at",)),
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Reconciliation(Base):
        id = BigAutoField()
        started_at = DateTimeField()
        finished_at = DateTimeField(index=True)
        since = DateTimeField()
        until = DateTimeField()
        source = CharField(max_length=16)
        routine = BooleanField()
        checked = IntegerField()
        calls = IntegerField()
        counts = TextField()
        drift = TextField()

    for table, columns in INDEXES:
        migrator.add_index(table, columns).run()
    migrator.add_column("sandbox_sales_order", "total_minor", BigIntegerField(null=True)).run()
    migrator.add_column("sandbox_sales_order", "currency", CharField(max_length=3, null=True)).run()
    db.create_tables([Reconciliation])


def down(migrator, db):
    db.execute_sql('DROP TABLE IF EXISTS "reconciliation"')
    migrator.drop_column("sandbox_sales_order", "currency").run()
    migrator.drop_column("sandbox_sales_order", "total_minor").run()
    for table, columns in INDEXES:
        migrator.drop_index(table, "_".join((table, *columns))).run()
