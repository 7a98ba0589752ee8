"""Webhook deliveries and whole orders per second, to a receiver in another process.

    python3 bench/delivery.py [--deliveries 2000] [--concurrency N]

needs the PostgreSQL of the test suite (``T2_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``); it creates and drops its own databases.

``measure(url, deliveries)`` on one database, in sandbox mode (the receiver is on loopback,
which the SSRF guard would refuse outside it), with the daemon's worker pool at
``worker.concurrency`` threads (or ``concurrency``), the receiver being
``bench/receiver.py`` in a process of its own (so it takes no share of the workers'
GIL):
- ``deliveries_per_s``: ``deliveries`` order.fulfilled events put in the outbox beforehand,
  then from starting the pool to the last of them signed, POSTed, answered 204 and recorded
  with its attempt (its job done or about to be, in the next claim's commit);
- ``orders_per_s``: ``deliveries`` sandbox orders stored by ``intake.submit`` beforehand (each
  with its ``process_order`` job, provisioning delay 0 s), then from starting the pool to the
  last one's ``order.fulfilled`` delivered: each order's processing job (sandbox sales order,
  FULFILLED, subscription, outbox event) and then its ``deliver`` job;
- ``fulfilled_per_s``: in that same run, to the last order FULFILLED (deliveries of the first
  ones run meanwhile);
- ``cpu_ms_per_delivery``, ``cpu_ms_per_order``: this process's CPU time (all its threads,
  the polling of the counts included) over each run, per delivery or order: steadier than the
  rates on a machine shared with other work, and blind to the database server's share.
"""

import sys
from pathlib import Path

# This folder holds queue.py, which must not shadow the standard library's ``queue``; the
# shared helpers come from the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests
from rich.console import Console
from rich.table import Table

from bench.common import backend, fresh, on_both, run_pool
from t2ctl import clock, db, partners, products, wiring
from t2ctl.config import Settings
from t2ctl.db.models import Order, Partner, WebhookDelivery
from t2ctl.jobs import tasks
from t2ctl.jobs.worker import Pool
from t2ctl.orders import intake
from t2ctl.security.crypto import SecretBox
from t2ctl.values import Money
from t2ctl.webhooks import delivery, outbox

PRICE = Money.parse("15000.00", "NGN")


@contextmanager
def receiver() -> Iterator[str]:
    """``bench/receiver.py`` in a process of its own; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver"],
        cwd=Path(__file__).resolve().parent.parent,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        yield process.stderr.readline().split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def received(base: str) -> int:
    return int(requests.get(f"{base}/count", timeout=10).json()["received"])


def measure(url: str, deliveries: int, *, concurrency: int | None = None) -> dict[str, float]:
    """Deliveries alone, then whole orders, per second on the database at ``url`` (see the
    module's docstring)."""
    settings = fresh(url)
    threads = concurrency or settings.worker.concurrency
    _reconnect(url, 2 * (threads + Pool.HELPER_THREADS) + 2)
    box = SecretBox(settings.security.master_keys)
    products.upsert([products.ProductData("M365", "M365", "", PRICE, 12, True)])
    with receiver() as base:
        partner = partners.add("bench", f"{base}/hooks", box=box, sandbox=True).partner
        delivered = WebhookDelivery.select().where(WebhookDelivery.status == "delivered")

        _record(partner.id, deliveries)
        hooks_only = tasks.Registry()
        delivery.register(hooks_only, settings, box=box)
        cpu = time.process_time()
        seconds = _drain(settings, hooks_only, threads, lambda: delivered.count() == deliveries)
        rates = {
            "deliveries_per_s": deliveries / seconds,
            "cpu_ms_per_delivery": (time.process_time() - cpu) * 1000 / deliveries,
        }

        _submit(partner, deliveries, box)
        everything = wiring.registry(settings, box=box, schedule=wiring.scheduler(settings))
        fulfilled = Order.select().where(Order.status == "FULFILLED")
        moments: list[float] = []

        def done() -> bool:
            if not moments and fulfilled.count() == deliveries:
                moments.append(time.perf_counter())
            return bool(moments) and delivered.count() == 2 * deliveries

        started, cpu = time.perf_counter(), time.process_time()
        seconds = _drain(settings, everything, threads, done)
        rates["cpu_ms_per_order"] = (time.process_time() - cpu) * 1000 / deliveries
        rates["fulfilled_per_s"] = deliveries / (moments[0] - started)
        rates["orders_per_s"] = deliveries / seconds
        assert received(base) == 2 * deliveries, "the receiver got every delivery once"
    return rates


def _reconnect(url: str, connections: int) -> None:
    """A PostgreSQL pool for both runs' threads: a pool thread that ends keeps its
    connection, so the second run cannot count on the first's."""
    closing = getattr(db.database.obj, "close_all", None)
    if closing is not None:
        closing()
    db.connect(url, max_connections=connections)


def _record(partner_id: int, count: int) -> None:
    for n in range(count):
        data = {"orderId": f"EV-{n:06d}", "status": "FULFILLED"}
        outbox.record(
            partner_id, "order.fulfilled", data, occurred_at=clock.now(), order_ref=data["orderId"]
        )


def _submit(partner: Partner, count: int, box: SecretBox) -> None:
    for n in range(count):
        request = intake.FulfilmentRequest(
            f"T2-{n:06d}", "M365", 1, "C1", "Ada Obi", "ada@example.ng", None, PRICE
        )
        intake.submit(partner, request, box=box)


def _drain(
    settings: Settings, registry: tasks.Registry, concurrency: int, done: Callable[[], bool]
) -> float:
    """Seconds for the daemon's pool of ``concurrency`` threads to make ``done()`` true."""
    try:
        return run_pool(settings, registry, done, concurrency)
    finally:
        db.database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def run(url: str) -> tuple[str, dict[str, float]]:
        return backend(url), measure(url, args.deliveries, concurrency=args.concurrency)

    show(on_both("delivery", run), args.deliveries)


def show(rows: list[tuple[str, dict[str, float]]], deliveries: int) -> None:
    table = Table(title=f"{deliveries} deliveries, then {deliveries} orders, this machine")
    names = (
        "deliveries_per_s",
        "orders_per_s",
        "fulfilled_per_s",
        "cpu_ms_per_delivery",
        "cpu_ms_per_order",
    )
    table.add_column("database")
    for name in names:
        table.add_column(name.replace("_per_s", " /s").replace("_", " "), justify="right")
    for database, rates in rows:
        table.add_row(database, *(f"{rates[name]:,.1f}" for name in names))
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
