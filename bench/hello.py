"""A bare Flask "hello" on the daemon's HTTP server, built by ``httpserver.build`` with the
``server.*`` settings of the config file given: the ceiling intake's throughput is held to.

    python -m bench.hello CONFIG [DATABASE_URL [API_KEY]]

Given a database, it also serves the floor of a durable write and of a keyed read on this
stack, with none of t2ctl's work (no authentication, validation, encryption, ORM, job, log
line or metric): ``POST /floor/orders`` stores the JSON body's ``orderId`` and body by one
``INSERT`` that is its own transaction (autocommit: one statement, one round trip, committed
before the 202), on SQLite with t2ctl's pragmas in a file of its own beside the database;
``GET /floor/orders/<id>`` reads one back by its primary key, one statement too.

Given the API key too, ``POST /floor/intake`` is the least an intake must do, written by hand:
the key found by its SHA-256, the body's fields checked and its amount against the product's
price (read), the customer's name and email encrypted (Fernet), the order and its job inserted
in one transaction (on SQLite this process's writers take turns on a lock, as t2ctl's do),
one JSON log line on stderr, a JSON answer with its ``Location``: none of Flask's hooks,
pydantic, an ORM, a rate limit or metrics. ``POST /floor/contracted`` adds to it, still by
hand, what the contract asks beyond that (``Contracted``): a request id, a rate limit, the
API's pydantic model, a metric, t2ctl's access line and the Order's whole shape.

Logs ``listening on http://HOST:PORT`` on stderr once it accepts; SIGTERM ends it.
"""

import json
import re
import sqlite3
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet
from flask import Flask, Response, abort, request
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Histogram

from bench.harness import PRICE_MINOR, PRODUCT, UNLIMITED
from t2ctl import config, db, httpserver
from t2ctl.api import observe, schemas
from t2ctl.api.orders import parse_body
from t2ctl.errors import ValidationFailed
from t2ctl.monitoring import logs
from t2ctl.orders.intake import FulfilmentRequest
from t2ctl.security import apikeys
from t2ctl.values import Money

TABLE = "bench_floor"


class Floor:
    """One connection a thread, as the daemon keeps them, to a table of its own; every
    statement its own transaction."""

    def __init__(self, url: str):
        self.url = url
        self.local = threading.local()
        self.postgres = url.startswith("postgresql")
        self.mark = "%s" if self.postgres else "?"
        self.connection().execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (order_id TEXT PRIMARY KEY, body TEXT NOT NULL)"
        )

    def connection(self) -> Any:
        found = getattr(self.local, "connection", None)
        if found is None:
            found = self.local.connection = self._connect()
        return found

    def _connect(self) -> Any:
        if self.postgres:
            return psycopg.connect(self.url, autocommit=True)
        path = self.url.removeprefix("sqlite:///")
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for name, value in db.SQLITE_PRAGMAS.items():
            connection.execute(f"PRAGMA {name} = {value}")
        return connection

    def write(self, order_id: str, body: str) -> None:
        insert = f"INSERT INTO {TABLE} VALUES ({self.mark}, {self.mark})"
        self.connection().execute(insert, (order_id, body))

    def read(self, order_id: str) -> str | None:
        query = f"SELECT body FROM {TABLE} WHERE order_id = {self.mark}"
        row = self.connection().execute(query, (order_id,)).fetchone()
        return None if row is None else str(row[0])


INTAKE_TABLES = (
    "CREATE TABLE IF NOT EXISTS bench_key (key_hash TEXT PRIMARY KEY, partner INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_product (product_id TEXT PRIMARY KEY, price BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_order (id {key}, partner INTEGER NOT NULL, "
    "order_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL, "
    "amount BIGINT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL, metadata TEXT, "
    "status TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (partner, order_id))",
    "CREATE TABLE IF NOT EXISTS bench_job (id {key}, task TEXT NOT NULL, payload TEXT NOT NULL, "
    "state TEXT NOT NULL, run_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bench_job_due ON bench_job (state, run_at)",
)
MONEY = re.compile(r"[0-9]{1,15}(\.[0-9]{1,2})?")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Intake:
    """The least an intake must do, on a ``Floor``'s connections (see the module's doc)."""

    def __init__(self, floor: Floor, api_key: str):
        self.floor = floor
        self.fernet = Fernet(Fernet.generate_key())
        self.writer = threading.Lock()
        self.log = threading.Lock()
        key = "BIGSERIAL PRIMARY KEY" if floor.postgres else "INTEGER PRIMARY KEY"
        connection, mark = floor.connection(), floor.mark
        for statement in INTAKE_TABLES:
            connection.execute(statement.format(key=key))
        for table, row in (
            ("bench_key", (apikeys.digest(api_key), 1)),
            ("bench_product", (PRODUCT, PRICE_MINOR)),
        ):
            connection.execute(
                f"INSERT INTO {table} VALUES ({mark}, {mark}) ON CONFLICT DO NOTHING", row
            )

    def take(self, token: str, raw: bytes) -> Response:
        started, mark = time.monotonic(), self.floor.mark
        connection = self.floor.connection()
        found = connection.execute(
            f"SELECT partner FROM bench_key WHERE key_hash = {mark}", (apikeys.digest(token),)
        ).fetchone()
        if found is None:
            return _answer(401, {"error": "unauthorized"})
        wanted = self.wanted(raw)
        if isinstance(wanted, str):
            return _answer(422, {"error": wanted})
        price = connection.execute(
            f"SELECT price FROM bench_product WHERE product_id = {mark}", (wanted.product_id,)
        ).fetchone()
        if price is None or wanted.amount.minor != price[0] * wanted.quantity:
            return _answer(422, {"error": "amount"})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        order = (
            found[0],
            wanted.order_id,
            wanted.product_id,
            wanted.quantity,
            wanted.amount.minor,
            self.fernet.encrypt(wanted.customer_name.encode()).decode(),
            self.fernet.encrypt(wanted.customer_email.encode()).decode(),
            json.dumps(wanted.metadata),
            "PENDING",
            now,
        )
        try:
            self._store(connection, order, now)
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation):
            return _answer(409, {"error": "conflict"})
        self.logged(started, now, wanted.order_id)
        return self.accepted(wanted, now)

    def wanted(self, raw: bytes) -> FulfilmentRequest | str:
        """The body's order, or the first field found wrong: checked by hand."""
        body = json.loads(raw)
        problem = _checked(body)
        if problem:
            return problem
        customer = body["customer"]
        return FulfilmentRequest(
            order_id=body["orderId"],
            product_id=body["productId"],
            quantity=body["quantity"],
            customer_id=customer.get("id", ""),
            customer_name=customer["name"],
            customer_email=customer["email"],
            customer_phone=None,
            amount=Money(int(Decimal(body["amount"]["value"]) * 100), "NGN"),
            metadata=body.get("metadata"),
        )

    def logged(self, started: float, now: str, order_id: str) -> None:
        """One JSON line on stderr, by hand."""
        line = {
            "time": now,
            "level": "info",
            "request_id": uuid.uuid4().hex,
            "action": "http_request",
            "path": request.path,
            "status": 202,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "order_id": order_id,
        }
        with self.log:
            sys.stderr.write(json.dumps(line) + "\n")
            sys.stderr.flush()

    def accepted(self, wanted: FulfilmentRequest, now: str) -> Response:
        answer = _answer(202, {"orderId": wanted.order_id, "status": "PENDING", "createdAt": now})
        answer.headers["Location"] = f"/floor/orders/{wanted.order_id}"
        return answer

    def _store(self, connection: Any, order: tuple[Any, ...], now: str) -> None:
        marks = ", ".join([self.floor.mark] * len(order))
        insert = (
            "INSERT INTO bench_order (partner, order_id, product_id, quantity, amount, name, "
            f"email, metadata, status, created_at) VALUES ({marks}) RETURNING id"
        )
        job = (
            "INSERT INTO bench_job (task, payload, state, run_at) "
            f"VALUES ('process_order', {self.floor.mark}, 'queued', {self.floor.mark})"
        )
        if self.floor.postgres:
            with connection.transaction():
                (order_id,) = connection.execute(insert, order).fetchone()
                connection.execute(job, (json.dumps({"order": order_id}), now))
            return
        with self.writer:
            connection.execute("BEGIN IMMEDIATE")
            try:
                (order_id,) = connection.execute(insert, order).fetchone()
                connection.execute(job, (json.dumps({"order": order_id}), now))
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")


class Contracted(Intake):
    """The intake floor with what the contract adds to it, still by hand: a request id, the
    rate limit (the ``limits`` library's moving window, as the API counts; here per key
    before the key is looked up), the API's own pydantic model checking the body (its 422
    names every field), a duration metric, the access line through t2ctl's logging (JSON,
    redacted) and the Order's whole shape in the answer: what an intake written by hand
    beside the API's models would keep of the hello."""

    def __init__(self, floor: Floor, api_key: str):
        super().__init__(floor, api_key)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.limit = RateLimitItemPerMinute(UNLIMITED)
        self.durations = Histogram(
            "bench_floor_request_seconds", "", ["route", "method", "status"], registry=None
        )
        logs.install()
        logs.configure("json", "INFO")

    def take(self, token: str, raw: bytes) -> Response:
        started, request_id = time.monotonic(), uuid.uuid4().hex
        bound = logs.push(request_id=request_id)
        try:
            allowed = self.limiter.hit(self.limit, token)  # in memory: the key as given
            self.limiter.get_window_stats(self.limit, token)  # for the headers, as the API
            answer = super().take(token, raw) if allowed else _answer(429, {"error": "limit"})
        finally:
            logs.pop(bound)
        answer.headers["X-Request-ID"] = request_id
        self.durations.labels(request.path, request.method, str(answer.status_code)).observe(
            time.monotonic() - started
        )
        return answer

    def wanted(self, raw: bytes) -> FulfilmentRequest | str:
        try:
            return parse_body(raw, schemas.FulfilmentRequest).to_request()
        except ValidationFailed as exc:
            return str(exc)

    def logged(self, started: float, now: str, order_id: str) -> None:
        logs.push(order_id=order_id)  # as the API's view binds it; undone with the request's
        observe.log_access(request.path, 202, time.monotonic() - started, "bench")

    def accepted(self, wanted: FulfilmentRequest, now: str) -> Response:
        order = {
            "orderId": wanted.order_id,
            "status": "PENDING",
            "productId": wanted.product_id,
            "quantity": wanted.quantity,
            "customer": {"id": wanted.customer_id},
            "amount": wanted.amount.public(),
            "renewalOf": wanted.renewal_of,
            "createdAt": now,
            "updatedAt": now,
            "fulfilment": None,
            "error": None,
            "cancellation": None,
        }
        answer = _answer(202, order)
        answer.headers["Location"] = f"/floor/orders/{wanted.order_id}"
        return answer


def _checked(body: Any) -> str | None:
    """What is wrong with a fulfilment body, by hand: the fields an intake must check."""
    if not isinstance(body, dict):
        return "body"
    customer, amount = body.get("customer"), body.get("amount")
    checks = {
        "orderId": isinstance(body.get("orderId"), str) and 0 < len(body["orderId"]) <= 64,
        "productId": isinstance(body.get("productId"), str),
        "quantity": type(body.get("quantity")) is int and 0 < body["quantity"] <= 1000,
        "customer": isinstance(customer, dict)
        and isinstance(customer.get("name"), str)
        and isinstance(customer.get("email"), str)
        and EMAIL.fullmatch(customer["email"]) is not None,
        "amount": isinstance(amount, dict)
        and isinstance(amount.get("value"), str)
        and MONEY.fullmatch(amount["value"]) is not None
        and amount.get("currency") == "NGN",
    }
    return next((field for field, ok in checks.items() if not ok), None)


def _token() -> str:
    _scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip()


def _answer(status: int, data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), status, mimetype="application/json")


def app(database: str | None = None, api_key: str | None = None) -> Flask:
    hello = Flask("hello")

    @hello.get("/hello")
    def answer() -> str:
        return "hello"

    if database is not None:
        floor = Floor(database)

        @hello.post("/floor/orders")
        def write() -> Response:
            body = request.get_data()
            order_id = str(json.loads(body)["orderId"])
            floor.write(order_id, body.decode())
            return _answer(202, {"orderId": order_id})

        @hello.get("/floor/orders/<order_id>")
        def read(order_id: str) -> Response:
            found = floor.read(order_id)
            if found is None:
                abort(404)
            return Response(found, 200, mimetype="application/json")

        if api_key is not None:
            intake = Intake(floor, api_key)

            contracted = Contracted(floor, api_key)

            @hello.post("/floor/intake")
            def take() -> Response:
                return intake.take(_token(), request.get_data())

            @hello.post("/floor/contracted")
            def take_contracted() -> Response:
                return contracted.take(_token(), request.get_data())

    return hello


def main() -> None:
    settings = config.load(Path(sys.argv[1]))
    database = sys.argv[2] if len(sys.argv) > 2 else None
    api_key = sys.argv[3] if len(sys.argv) > 3 else None
    server = httpserver.build(app(database, api_key), settings.server, host="127.0.0.1", port=0)
    print(f"listening on http://127.0.0.1:{server.effective_port}", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
