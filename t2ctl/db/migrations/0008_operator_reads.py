"""The operators' reads at scale: every order newest first, whole or by status (``orders
list`` with no filter sorted the whole table, and by status PostgreSQL sorted each page's
ties on ``created_at`` by id), the orders failed since a moment (``t2ctl status`` read
every FAILED order to count the last hour's), and the subscriptions whose expiry is not yet
announced as expired (``expiry-check`` read every subscription that ever expired, each run).
The last two are partial indexes, holding only the rows their readers ask for.

A frozen copy of the schema change, independent of ``t2ctl.db.models``. The index on
``(status, created_at, id)`` replaces the one on ``(status, created_at)``, its prefix.
"""

INDEXES = (
    ("order", ("created_at", "id")),
    ("order", ("status", "created_at", "id")),
)
REPLACED = ("order", ("status", "created_at"))
# Partial: only the rows their readers ask for, a few percent of all (an index of every
# order's status and update time cost 45-70 bytes an order, for one count).
FAILED = "order_failed_updated_at"
UNEXPIRED = "subscription_unexpired"


def up(migrator, db):
    for table, columns in INDEXES:
        migrator.add_index(table, columns).run()
    table, columns = REPLACED
    migrator.drop_index(table, "_".join((table, *columns))).run()
    # status leads, although it is always FAILED: SQLite, without statistics, prefers an
    # index whose first column is compared by equality.
    db.execute_sql(
        f"""CREATE INDEX {FAILED} ON "order" (status, updated_at) WHERE status = 'FAILED'"""
    )
    db.execute_sql(
        f"CREATE INDEX {UNEXPIRED} ON subscription (expires_at) "
        "WHERE expired_for IS NULL OR expired_for != expires_at"
    )


def down(migrator, db):
    migrator.drop_index("subscription", UNEXPIRED).run()
    migrator.drop_index("order", FAILED).run()
    migrator.add_index(*REPLACED).run()
    for table, columns in INDEXES:
        migrator.drop_index(table, "_".join((table, *columns))).run()
