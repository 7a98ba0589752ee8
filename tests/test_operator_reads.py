"""The operators' reads walk an index (migration 0008), so that they stay quick over a million
orders: ``orders list`` newest first, whole or by status, and ``t2ctl status``'s counts."""

import peewee

from t2ctl import clock, db
from t2ctl.orders import records
from t2ctl.webhooks import deliveries
from tests.conftest import Cli
from tests.plans import assert_walked, plan, statements


def _listed(sql: str) -> bool:
    return 'FROM "order"' in sql and "ORDER BY" in sql


def _unsorted_plan(sql: str, params: tuple) -> str:
    """The plan with sorting priced out as well as table scans: on an empty table PostgreSQL
    rightly sorts 40 guessed rows; the question is whether an index gives them in order."""
    handle = db.database.obj
    if isinstance(handle, peewee.SqliteDatabase):
        return plan(sql, params)
    with handle.connection_context(), handle.atomic():
        handle.execute_sql("SET LOCAL enable_seqscan = off")
        handle.execute_sql("SET LOCAL enable_sort = off")
        rows = handle.execute_sql(f"EXPLAIN {sql}", params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_orders_list_reads_newest_first_from_an_index(cli: Cli) -> None:
    with statements() as ran:
        assert cli("orders", "list").exit_code == 0
        assert cli("orders", "list", "--status", "FAILED").exit_code == 0
    listed = [(sql, params) for sql, params in ran if _listed(sql)]
    assert len(listed) == 2
    for (sql, params), index in zip(
        listed, ("order_created_at_id", "order_status_created_at_id"), strict=True
    ):
        found = _unsorted_plan(sql, params)
        assert index in found and "Sort" not in found and "TEMP B-TREE" not in found, found


def test_status_counts_read_index_ranges(cli: Cli) -> None:
    with statements() as ran:
        assert cli("status").exit_code == 0
    assert_walked(
        ran, lambda sql: 'FROM "order"' in sql and "updated_at" in sql, 1, "order_failed_updated_at"
    )
    counted = [s for s in ran if 'FROM "webhook_delivery"' in s[0] and "GROUP BY" in s[0]]
    assert len(counted) == 1 and "webhook_delivery_status_created_at" in plan(*counted[0])
    assert set(deliveries.counts(("pending", "dead"))) == {"pending", "dead"}
    assert records.failed_since(clock.now()) == 0
