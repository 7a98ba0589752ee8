"""Settlement and reconciliation at scale: t2ctl's settlement report and the local part of its
reconciliation over N orders.

    python3 bench/settlement.py [--orders 1000000] [--repeat 20]

needs the PostgreSQL of the test suite (``T2_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``); it creates and drops its own databases.

On each database (a temporary SQLite file, a throwaway PostgreSQL database), migrated by the
real schema with bench/listing.py's two partners and catalogue:
- seed: bench/listing.py's N orders and their events, then one sandbox sales order per
  FULFILLED or CANCELLED order (its partner, reference = orderId, the id the order knows it
  by, made 3 s after the order, void when the order was cancelled, the order's amount as its
  total), in bulk as the orders are, then ANALYZE on PostgreSQL as its autovacuum would;
- ``settlement.report`` in Africa/Lagos for a whole month, the last twelve whole months, and
  the month for one partner: ``--repeat`` calls after one untimed call, min, median and p95 in
  ms;
- ``reconciliation.reconcile`` against the sandbox's ledger over the last 30 days (orders read,
  sales orders listed, compared in Python), 3 calls after one untimed call, with the orders it
  checked and the drift it found (none: the seeded sales orders agree with their orders);
- the plan of each report's query, as ``report`` sends it (caught by a peewee query hook):
  ``EXPLAIN ANALYZE`` on PostgreSQL, ``EXPLAIN QUERY PLAN`` on SQLite, printed in full (the
  month first), and which indexes of ``order`` each reads (or that it scans the whole table).
"""

import sys
from pathlib import Path

# This folder holds queue.py, which must not shadow the standard library's ``queue``; the
# shared helpers come from the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from peewee import QueryEvent, fn
from rich.console import Console
from rich.table import Table

from bench.common import Timing, backend, fresh, on_both, timed
from bench.listing import BATCH, PARTNERS, insert, seed, setup
from t2ctl import clock, db
from t2ctl.db.models import Order, SandboxSalesOrder
from t2ctl.finance import reconciliation, settlement
from t2ctl.provisioning.sandbox import SandboxLedger
from t2ctl.security.crypto import SecretBox

TIMEZONE = "Africa/Lagos"
RECONCILE_REPEAT = 3
MADE_AFTER = timedelta(seconds=3)  # a sales order is made this long after its order
SETTLED = ("FULFILLED", "CANCELLED")  # the orders that have a sales order
SALES_COLUMNS = (
    "id",
    "partner",
    "reference_number",
    "created_at",
    "voided_at",
    "total_minor",
    "currency",
)


class Result:
    def __init__(self, database: str) -> None:
        self.database = database
        self.seed_seconds = 0.0
        self.sales_seconds = 0.0
        self.timings: dict[str, Timing] = {}
        self.plans: dict[str, list[str]] = {}  # each report's query plan, by timing name
        self.reads: dict[str, str] = {}  # what each of those plans reads of ``order``
        self.checked = 0
        self.drift: dict[str, int] = {}


def bench(url: str, orders: int, repeat: int) -> Result:
    settings = fresh(url)
    box = SecretBox(settings.security.master_keys)
    setup(box)
    result = Result(backend(url))
    started = time.perf_counter()
    seed(orders, box)
    result.seed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    seed_sales_orders()
    result.sales_seconds = time.perf_counter() - started
    if not db.is_sqlite():
        db.database.execute_sql('ANALYZE "order", webhook_delivery, sandbox_sales_order')
    for name, (start, end, partner) in periods().items():
        call = _reporter(start, end, partner)
        with sent() as statements:
            call()  # untimed: the first call warms the caches; its SQL is the one explained
        sql, params = _report_query(statements)
        result.plans[name] = plan(sql, params)
        result.reads[name] = reads(sql, result.plans[name])
        result.timings[name] = timed(call, repeat)
    reconcile_timed(result)
    return result


def seed_sales_orders() -> None:
    """One sandbox sales order per FULFILLED or CANCELLED order, read back from the orders a
    batch of ids at a time."""
    last = Order.select(fn.MAX(Order.id)).scalar() or 0
    naive = SandboxSalesOrder.created_at.db_value
    for low in range(1, last + 1, BATCH):
        found = (
            Order.select(
                Order.sales_order_id,
                Order.partner,
                Order.order_id,
                Order.created_at,
                Order.cancelled_at,
                Order.amount_minor,
                Order.currency,
            )
            .where(Order.id.between(low, low + BATCH - 1) & Order.status.in_(SETTLED))
            .order_by(Order.id)
            .tuples()
        )
        rows = [
            (int(so), partner, ref, naive(created + MADE_AFTER), naive(cancelled), minor, cur)
            for so, partner, ref, created, cancelled, minor, cur in found
        ]
        with db.transaction():
            insert("sandbox_sales_order", SALES_COLUMNS, rows)


def periods() -> dict[str, tuple[date, date, str | None]]:
    """The reports timed: a month half a year back, the last twelve whole months, and that
    month for the first partner alone."""
    this_month = clock.now().astimezone(ZoneInfo(TIMEZONE)).date().replace(day=1)
    month = _month_before(this_month, 6)
    year = _month_before(this_month, 12)
    after = _month_before(month, -1)
    return {
        f"report: a month ({month:%Y-%m})": (month, after, None),
        f"report: a year ({year:%Y-%m} to {_month_before(this_month, 1):%Y-%m})": (
            year,
            this_month,
            None,
        ),
        f"report: a month, partner={PARTNERS[0]}": (month, after, PARTNERS[0]),
    }


def _month_before(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _reporter(start: date, end: date, partner: str | None) -> Callable[[], Any]:
    return lambda: settlement.report(start, end, timezone=TIMEZONE, partner=partner)


@contextmanager
def sent() -> Iterator[list[QueryEvent]]:
    """The statements sent meanwhile, as peewee's query hooks see them."""
    events: list[QueryEvent] = []
    hooks = db.database.obj.query_hooks
    hooks.append(events.append)
    try:
        yield events
    finally:
        hooks.remove(events.append)


def _report_query(events: list[QueryEvent]) -> tuple[str, Any]:
    """The report's aggregate among the statements (the partner's look-up precedes it)."""
    (event,) = [e for e in events if "SUM(" in e.sql]
    return event.sql, event.params


def plan(sql: str, params: Any) -> list[str]:
    """The query's plan, one line per node, indented by depth."""
    if not db.is_sqlite():
        found = db.database.execute_sql(f"EXPLAIN ANALYZE {sql}", params).fetchall()
        return [line for (line,) in found]
    depth = {0: -1}
    lines = []
    for node, parent, _, detail in db.database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params):
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def reads(sql: str, lines: list[str]) -> str:
    """The indexes of ``order`` a plan reads (all are named order_...), or that it scans the
    whole table (SQLite names the table by its alias in the query)."""
    text = "\n".join(lines)
    used = list(dict.fromkeys(re.findall(r"(?:INDEX|Scan on|Scan using) (order_\w+)", text)))
    match = re.search(r'FROM "order" AS "(\w+)"', sql)
    alias = match.group(1) if match else "order"
    if re.search(rf'Seq Scan on "order"|^\s*SCAN {alias}\b', text, re.MULTILINE):
        used.insert(0, "full scan of order")
    return " + ".join(used) or "?"


def reconcile_timed(result: Result) -> None:
    """The local part of reconciliation over its default window, against the sandbox."""
    now = clock.now()

    def call() -> reconciliation.Result:
        return reconciliation.reconcile(
            SandboxLedger(), since=now - reconciliation.WINDOW, until=now
        )

    found = call()  # untimed, as the reports' first call
    result.checked = found.checked
    result.drift = {kind: n for kind, n in found.counts.items() if n}
    result.timings[f"reconcile: last {reconciliation.WINDOW.days} days"] = timed(
        call, RECONCILE_REPEAT
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    results = on_both("settlement", lambda url: bench(url, args.orders, args.repeat))
    show(results, args.orders, args.repeat)


def show(results: list[Result], orders: int, repeat: int) -> None:
    table = Table(
        title=f"settlement and reconciliation, {orders:,} orders, this machine",
        caption=(
            f"ms per call in process: min / median / p95 of {repeat} "
            f"(reconcile: of {RECONCILE_REPEAT})"
        ),
    )
    table.add_column("call")
    for result in results:
        table.add_column(result.database, justify="right")
    for name in results[0].timings:
        table.add_row(
            name, *(" / ".join(f"{ms:,.1f}" for ms in result.timings[name]) for result in results)
        )
    table.add_row("reconcile: orders checked", *(f"{r.checked:,}" for r in results))
    table.add_row(
        "reconcile: drift",
        *(", ".join(f"{n} {kind}" for kind, n in r.drift.items()) or "0" for r in results),
    )
    for name in results[0].reads:
        table.add_row(f"reads, {name[len('report: ') :]}", *(r.reads[name] for r in results))
    table.add_row("seed orders and events, s", *(f"{r.seed_seconds:,.0f}" for r in results))
    table.add_row("seed sales orders, s", *(f"{r.sales_seconds:,.0f}" for r in results))
    Console(width=120).print(table)
    for name in results[0].plans:
        for result in results:
            print(f"\n{result.database}, the plan of {name[len('report: ') :]}:")
            print("\n".join(result.plans[name]))


if __name__ == "__main__":
    main()
