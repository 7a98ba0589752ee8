"""Fewer index entries an order, written at intake and kept for its life.

Every new order went into twelve indexes. Two only repeated a prefix another index has:
``order_partner_id`` (``(partner_id, order_id)`` and the partner's listings lead with it) and
``order_product_id`` (no read looks orders up by product, and products are never deleted).
Four held mostly nulls: a new order has no subscription, fulfilment or cancellation yet, and
few orders renew another. Those four are now partial, holding only the rows with a value,
which is all their readers ask for (a comparison with a column implies that it is not null,
and both databases use a partial index on that ground). Same names, so plans read the same.

A frozen copy of the schema change, independent of ``t2ctl.db.models``.
"""

DROPPED = ("order_partner_id", "order_product_id")
# name: (columns, the one that is null until there is something to index)
PARTIAL = {
    "order_subscription_id": (("subscription_id",), "subscription_id"),
    "order_partner_id_renewal_of": (("partner_id", "renewal_of"), "renewal_of"),
    "order_partner_id_fulfilled_at": (("partner_id", "fulfilled_at"), "fulfilled_at"),
    "order_partner_id_cancelled_at": (("partner_id", "cancelled_at"), "cancelled_at"),
}


def up(migrator, db):
    for name in DROPPED:
        migrator.drop_index("order", name).run()
    for name, (columns, present) in PARTIAL.items():
        migrator.drop_index("order", name).run()
        db.execute_sql(
            f'CREATE INDEX {name} ON "order" ({", ".join(columns)}) WHERE {present} IS NOT NULL'
        )


def down(migrator, db):
    for name, (columns, _present) in PARTIAL.items():
        migrator.drop_index("order", name).run()
        db.execute_sql(f'CREATE INDEX {name} ON "order" ({", ".join(columns)})')
    migrator.add_index("order", ("partner_id",)).run()
    migrator.add_index("order", ("product_id",)).run()
