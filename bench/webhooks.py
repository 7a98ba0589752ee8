"""Webhook deliveries per second to a local receiver, and SQL statements per delivery.

    python3 bench/webhooks.py [--deliveries 1000] [--sequential 200]

needs the PostgreSQL of the test suite (``T2_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``); it creates and drops its own databases.

On each database, in sandbox mode (the receiver is on loopback, which the SSRF guard would
refuse; the guard costs a name lookup, not a query):
- recorded /s: events added to the outbox, one transaction each (the delivery row and its
  ``deliver`` job), as an order's outcome adds them;
- delivered /s: from starting 4 worker threads to the last of ``--deliveries`` deliveries
  signed, sent over HTTP and answered 204 by ``bench/receiver.py`` in a process of
  its own, and recorded with its attempt;
- statements / delivery: every SQL statement one worker sends while it takes
  ``--sequential`` deliveries one by one (its claim, the handler's reads, the commit of the
  attempt, the completion), and the same over the timed pool run (idle polls included).
"""

import sys
from pathlib import Path

# This folder holds queue.py, which must not shadow the standard library's ``queue``; the
# shared helpers come from the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import logging
import time

from rich.console import Console
from rich.table import Table

from bench.common import CONCURRENCY, backend, fresh, on_both, run_pool, statements
from bench.delivery import received, receiver
from t2ctl import clock, db, partners, wiring
from t2ctl.db.models import WebhookDelivery
from t2ctl.jobs import tasks
from t2ctl.security.crypto import SecretBox
from t2ctl.webhooks import delivery, outbox

Row = tuple[str, int, float, float, float, float]


def record(partner_id: int, count: int, offset: int = 0) -> float:
    """Add ``count`` order.fulfilled events; return how many a second."""
    started = time.perf_counter()
    for n in range(offset, offset + count):
        data = {"orderId": f"T2-{n:06d}", "status": "FULFILLED"}
        with db.transaction():
            outbox.record(
                partner_id,
                "order.fulfilled",
                data,
                occurred_at=clock.now(),
                order_ref=data["orderId"],
            )
    return count / (time.perf_counter() - started)


def bench(url: str, deliveries: int, sequential: int) -> Row:
    settings = fresh(url)
    box = SecretBox(settings.security.master_keys)
    with receiver() as base:
        partner = partners.add("bench", f"{base}/hooks", box=box, sandbox=True).partner
        registry = tasks.Registry()
        delivery.register(registry, settings, box=box)
        delivered = WebhookDelivery.select().where(WebhookDelivery.status == "delivered")

        record(partner.id, sequential)
        worker = wiring.worker(settings, registry, name="bench-one")
        with statements() as counted:
            while worker.run_once():
                pass
        assert delivered.count() == sequential, "every delivery answered"
        per_delivery = counted.count / sequential

        recorded_rate = record(partner.id, deliveries, offset=sequential)
        total = sequential + deliveries
        with statements() as counted:
            seconds = run_pool(settings, registry, lambda: delivered.count() == total)
        pool_per_delivery = counted.count / deliveries
        assert received(base) == total, received(base)
    return (
        backend(url),
        deliveries,
        recorded_rate,
        deliveries / seconds,
        per_delivery,
        pool_per_delivery,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    show(on_both("webhooks", lambda url: bench(url, args.deliveries, args.sequential)))


def show(rows: list[Row]) -> None:
    table = Table(title=f"webhook deliveries, {CONCURRENCY} worker threads, this machine")
    for column in (
        "database",
        "deliveries",
        "recorded /s",
        "delivered /s",
        "statements/delivery, 1 worker",
        "statements/delivery, pool",
    ):
        table.add_column(column, justify="left" if column == "database" else "right")
    for database, count, recorded, delivered_rate, one, pool in rows:
        table.add_row(
            database,
            str(count),
            f"{recorded:,.0f}",
            f"{delivered_rate:,.1f}",
            f"{one:.1f}",
            f"{pool:.1f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
