"""The partner's listings at scale: GET /t2mobile/orders and GET /t2mobile/events over N orders.

    python3 bench/listing.py [--orders 1000000] [--repeat 20]

needs the PostgreSQL of the test suite (``T2_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``); it creates and drops its own databases.

On each database (a temporary SQLite file, a throwaway PostgreSQL database), migrated by the
real schema with two partners and the catalogue:
- seed: N orders, alternately the two partners', over all five statuses, created over the
  year before now, oldest first (ids grow with ``created_at``, as they do in production),
  each with the customer's email and phone encrypted and the partner's metadata, a
  subscription for each fulfilled one (ended at its cancellation for a cancelled one), and
  one event per order in the outbox; bulk inserts (executemany on SQLite, COPY on
  PostgreSQL), then ANALYZE on PostgreSQL as its autovacuum would;
- each request below, sent ``--repeat`` times over HTTP (one kept-alive connection) to the
  real app on waitress in this process, after one untimed try: min, median and p95 in ms of
  the whole round trip (key check, rate limit, query, JSON);
- the database's size, per order (with its event and every index).
"""

import sys
from pathlib import Path

# This folder holds queue.py, which must not shadow the standard library's ``queue``; the
# shared helpers come from the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import logging
import random
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from bench.common import Timing, backend, fresh, on_both, timed
from t2ctl import clock, daemon, db, partners, products, sandbox, startup
from t2ctl.api import create_app
from t2ctl.db.models import Order, Partner, Product, WebhookDelivery
from t2ctl.orders import records
from t2ctl.security.crypto import SecretBox
from t2ctl.values import Money
from t2ctl.webhooks import signing

BATCH = 20_000
Row = tuple[Any, ...]  # one table row, in its columns' order
PARTNERS = ("t2mobile", "t2mobile-ke")
PAGE = 50
DEEP = 20  # the page the cursor case times, reached by following nextCursor
SPAN = timedelta(days=365)
FEE = Money.parse("15000.00", "NGN")
CATALOGUE = [
    products.ProductData("M365-BASIC-12M", "Microsoft 365 Basic", "", FEE, 12, True),
    products.ProductData("NORTON-1Y", "Norton 360", "", Money.parse("9999.99", "NGN"), 12, True),
]
# Most orders are fulfilled; the rest share the other statuses, as a year of trade leaves them.
STATUSES = ("FULFILLED", "FAILED", "CANCELLED", "PENDING", "PROCESSING")
WEIGHTS = (85, 6, 4, 3, 2)
# One event per order: its outcome's, and for an order without one yet (PENDING, PROCESSING)
# an expiry event of the customer's earlier term, so that every type is in the feed.
EVENT_OF = {
    "FULFILLED": "order.fulfilled",
    "FAILED": "order.failed",
    "CANCELLED": "order.cancelled",
    "PENDING": "subscription.expiring",
    "PROCESSING": "subscription.expired",
}
ORDER_COLUMNS = (
    "partner_id",
    "order_id",
    "status",
    "product_id",
    "quantity",
    "customer_id",
    "customer_name",
    "customer_email",
    "customer_phone",
    "amount_minor",
    "currency",
    "metadata",
    "sales_order_id",
    "sales_order_number",
    "activation_reference",
    "starts_at",
    "expires_at",
    "subscription_id",
    "error_code",
    "error_message",
    "fulfilled_at",
    "cancel_reason",
    "cancel_requested_at",
    "cancelled_at",
    "created_at",
    "updated_at",
)
SUBSCRIPTION_COLUMNS = (
    "partner_id",
    "product_id",
    "customer_id",
    "starts_at",
    "expires_at",
    "created_at",
    "updated_at",
)
METADATA = '{"channel": "ussd"}'  # as intake stores the partner's flat object
EVENT_COLUMNS = (
    "webhook_id",
    "partner_id",
    "event",
    "order_ref",
    "body",
    "status",
    "attempts",
    "failures",
    "last_status",
    "created_at",
    "updated_at",
    "finished_at",
    "feed_seq",
)


class Result:
    def __init__(self, database: str, seed_seconds: float, bytes_per_order: float) -> None:
        self.database = database
        self.seed_seconds = seed_seconds
        self.bytes_per_order = bytes_per_order
        self.timings: dict[str, Timing] = {}


def bench(url: str, orders: int, repeat: int) -> Result:
    settings = fresh(url)
    box = SecretBox(settings.security.master_keys)
    keys = setup(box)
    started = time.perf_counter()
    seed(orders, box)
    if not db.is_sqlite():
        db.database.execute_sql('ANALYZE "order", webhook_delivery')
    result = Result(backend(url), time.perf_counter() - started, size() / orders)
    running = sandbox.in_background(
        create_app(
            settings, startup.connect(settings, connections=daemon.connections(settings, "api"))
        )
    )
    try:
        result.timings = requests_timed(running.url, keys[0], repeat)
    finally:
        running.stop()
    return result


def setup(box: SecretBox) -> list[str]:
    """The catalogue and the two sandbox partners; their API keys."""
    products.upsert(CATALOGUE)
    keys = []
    for name in PARTNERS:
        keys.append(
            partners.add(name, "http://127.0.0.1:9/hooks", box=box, sandbox=True).key.api_key
        )
        # Above the requests this script sends in a minute: the limiter is timed, not hit.
        partners.update(name, sandbox=True, rate_limit="1000000/minute")
    return keys


def seed(orders: int, box: SecretBox) -> None:
    partner_ids = [p.id for p in Partner.select().order_by(Partner.id)]
    product = Product.get(Product.product_id == CATALOGUE[0].product_id)
    # One Fernet token for every order's email, one for every phone: the columns hold what
    # the app stores, without two million encryptions (their cost is intake's, not a read's).
    contacts = (box.encrypt("ada.obi@example.ng"), box.encrypt("+2348031234567"))
    templates = {status: _public(status, product) for status in STATUSES}
    rows = _rows(orders, partner_ids, product.id, contacts, templates)
    while True:
        batch = [row for _, row in zip(range(BATCH), rows, strict=False)]
        if not batch:
            return
        with db.transaction():
            insert("subscription", SUBSCRIPTION_COLUMNS, [s for s, _, _ in batch if s])
            insert("order", ORDER_COLUMNS, [order for _, order, _ in batch])
            insert("webhook_delivery", EVENT_COLUMNS, [event for _, _, event in batch])


def _rows(
    orders: int,
    partner_ids: list[int],
    product_id: int,
    contacts: tuple[str, str],
    templates: dict[str, dict[str, Any]],
) -> Iterator[tuple[Row | None, Row, Row]]:
    """Each order's subscription row (None unless it was fulfilled), its row and its
    event's, oldest first, in the columns' order. Row ids are given in insert order from 1,
    as in a fresh database, so an order names its subscription by counting them."""
    chance = random.Random(2026)
    start = clock.now() - SPAN
    step = SPAN / orders
    naive = Order.created_at.db_value
    subscriptions = 0
    for n, status in enumerate(chance.choices(STATUSES, WEIGHTS, k=orders)):
        created = start + step * n + step * chance.random()
        done = created + timedelta(seconds=chance.randrange(5, 600))
        fulfilled = status in ("FULFILLED", "CANCELLED")
        cancelled = done + timedelta(hours=1) if status == "CANCELLED" else None
        updated = cancelled or done
        partner_id = partner_ids[n % 2]
        order_id = f"T2-{n:09d}"
        customer_id = f"C{n % 200_000:06d}"
        subscription = None
        if fulfilled:
            subscriptions += 1
            # A cancelled first order ends its subscription at its cancellation (revoke).
            subscription = (
                partner_id,
                product_id,
                customer_id,
                naive(done),
                naive(cancelled or done + SPAN),
                naive(done),
                naive(updated),
            )
        # Its sales order as the sandbox names one (by its row's id): n + 1, the id of the
        # row bench/settlement.py seeds for it, so that reconciliation finds it.
        order = (
            partner_id,
            order_id,
            status,
            product_id,
            1,
            customer_id,
            "Ada Obi",
            *contacts,
            FEE.minor,
            FEE.currency,
            METADATA,
            str(n + 1) if fulfilled else None,
            f"SBX-{n + 1:08d}" if fulfilled else None,
            f"ACT-{n:09d}" if fulfilled else None,
            naive(done) if fulfilled else None,
            naive(done + SPAN) if fulfilled else None,
            subscriptions if fulfilled else None,
            "PROVISIONING_REJECTED" if status == "FAILED" else None,
            "Zoho refused the sales order." if status == "FAILED" else None,
            naive(done) if fulfilled else None,
            "customer changed their mind" if cancelled else None,
            naive(cancelled - timedelta(minutes=5)) if cancelled else None,
            naive(cancelled),
            naive(created),
            naive(updated),
        )
        # The body is the status's public Order with this order's id and times: the same
        # size and shape as the one the outbox signs.
        data = {
            **templates[status],
            "orderId": order_id,
            "createdAt": clock.rfc3339(created),
            "updatedAt": clock.rfc3339(updated),
        }
        event = EVENT_OF[status]
        event_row = (
            signing.new_webhook_id(),
            partner_id,
            event,
            order_id,
            signing.envelope(event, updated, data),
            "delivered",
            1,
            0,
            204,
            naive(updated),
            naive(updated),
            naive(updated),
            n + 1,  # placed in the feed, as a running system's are by the reads before
        )
        yield subscription, order, event_row


def _public(status: str, product: Product) -> dict[str, Any]:
    """The public shape of an order with ``status``, as ``records.public`` writes it."""
    now = clock.now()
    fulfilled = status in ("FULFILLED", "CANCELLED")
    order = Order(
        order_id="T2-000000000",
        status=status,
        product=product,
        quantity=1,
        customer_id="C000000",
        amount_minor=FEE.minor,
        currency=FEE.currency,
        sales_order_id="1" if fulfilled else None,
        sales_order_number="SBX-00000001" if fulfilled else None,
        activation_reference="ACT-000000000" if fulfilled else None,
        starts_at=now if fulfilled else None,
        expires_at=now + SPAN if fulfilled else None,
        fulfilled_at=now if fulfilled else None,
        error_code="PROVISIONING_REJECTED" if status == "FAILED" else None,
        error_message="Zoho refused the sales order." if status == "FAILED" else None,
        cancel_reason="customer changed their mind" if status == "CANCELLED" else None,
        cancel_requested_at=now if status == "CANCELLED" else None,
        cancelled_at=now if status == "CANCELLED" else None,
        created_at=now,
        updated_at=now,
    )
    return records.public(order)


def insert(table: str, columns: Sequence[str], rows: list[Row]) -> None:
    names = ", ".join(f'"{column}"' for column in columns)
    if db.is_sqlite():
        marks = ", ".join("?" for _ in columns)
        db.database.connection().executemany(
            f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows
        )
        return
    with (
        db.database.cursor() as cursor,
        cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy,
    ):
        for row in rows:
            copy.write_row(row)


def size() -> int:
    """The whole database's bytes: tables, indexes, and on SQLite what the WAL holds."""
    if db.is_sqlite():
        pages = db.database.execute_sql("PRAGMA page_count").fetchone()[0]
        return pages * db.database.execute_sql("PRAGMA page_size").fetchone()[0]
    return db.database.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]


def requests_timed(base: str, key: str, repeat: int) -> dict[str, Timing]:
    """Each listing request's round trips, for the first partner (half of all orders)."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    orders_url, events_url = f"{base}/t2mobile/orders", f"{base}/t2mobile/events"
    partner = Partner.get(Partner.name == "t2mobile")
    newest = Order.select().where(Order.partner == partner).order_by(Order.id.desc()).first()
    month = timedelta(days=30)
    middle = newest.created_at - SPAN / 2
    cursor = None
    for _ in range(DEEP - 1):
        cursor = _get(http, orders_url, {"limit": PAGE, "cursor": cursor})["nextCursor"]
    deep = WebhookDelivery.select().order_by(WebhookDelivery.id.desc()).first().id * 9 // 10
    late = (
        WebhookDelivery.select(WebhookDelivery.webhook_id)
        .where((WebhookDelivery.partner == partner) & (WebhookDelivery.id >= deep))
        .order_by(WebhookDelivery.id)
        .first()
    )
    cases = {
        "orders: first page": (orders_url, {"limit": PAGE}),
        f"orders: page {DEEP} (nextCursor)": (orders_url, {"limit": PAGE, "cursor": cursor}),
        "orders: status=FAILED": (orders_url, {"limit": PAGE, "status": "FAILED"}),
        "orders: since/until, a month": (
            orders_url,
            {
                "limit": PAGE,
                "since": clock.rfc3339(middle),
                "until": clock.rfc3339(middle + month),
            },
        ),
        "events: first page": (events_url, {"limit": PAGE}),
        "events: after, 90% into the feed": (events_url, {"limit": PAGE, "after": late.webhook_id}),
        "events: type=order.failed": (events_url, {"limit": PAGE, "type": "order.failed"}),
    }
    return {name: _timed(http, url, params, repeat) for name, (url, params) in cases.items()}


def _get(http: requests.Session, url: str, params: dict[str, Any]) -> dict[str, Any]:
    response = http.get(url, params=params, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert len(body["data"]) == PAGE, (url, params, len(body["data"]))
    return body


def _timed(http: requests.Session, url: str, params: dict[str, Any], repeat: int) -> Timing:
    _get(http, url, params)  # untimed: the first of a kind warms caches and the connection
    return timed(lambda: _get(http, url, params), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    results = on_both("listing", lambda url: bench(url, args.orders, args.repeat))
    show(results, args.orders, args.repeat)


def show(results: list[Result], orders: int, repeat: int) -> None:
    table = Table(
        title=f"partner listings, {orders:,} orders and events, limit {PAGE}, this machine",
        caption=f"ms per request over loopback HTTP: min / median / p95 of {repeat}",
    )
    table.add_column("request")
    for result in results:
        table.add_column(result.database, justify="right")
    for name in results[0].timings:
        table.add_row(
            name, *(" / ".join(f"{ms:.1f}" for ms in result.timings[name]) for result in results)
        )
    table.add_row("seed, s", *(f"{result.seed_seconds:,.0f}" for result in results))
    table.add_row(
        "database, bytes per order", *(f"{result.bytes_per_order:,.0f}" for result in results)
    )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
