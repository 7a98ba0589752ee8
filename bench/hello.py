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
pydantic, an ORM, a rate limit or metrics.

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

from bench.harness import PRICE_MINOR, PRODUCT
from t2ctl import config, db, httpserver
from t2ctl.security import apikeys

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
        body = json.loads(raw)
        problem = _checked(body)
        if problem:
            return _answer(422, {"error": problem})
        price = connection.execute(
            f"SELECT price FROM bench_product WHERE product_id = {mark}", (body["productId"],)
        ).fetchone()
        amount = int(Decimal(body["amount"]["value"]) * 100)
        if price is None or amount != price[0] * body["quantity"]:
            return _answer(422, {"error": "amount"})
        customer, now = body["customer"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        order = (
            found[0],
            body["orderId"],
            body["productId"],
            body["quantity"],
            amount,
            self.fernet.encrypt(customer["name"].encode()).decode(),
            self.fernet.encrypt(customer["email"].encode()).decode(),
            json.dumps(body.get("metadata")),
            "PENDING",
            now,
        )
        try:
            self._store(connection, order, now)
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation):
            return _answer(409, {"error": "conflict"})
        line = {
            "time": now,
            "level": "info",
            "request_id": uuid.uuid4().hex,
            "action": "http_request",
            "path": request.path,
            "status": 202,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "order_id": body["orderId"],
        }
        with self.log:
            sys.stderr.write(json.dumps(line) + "\n")
            sys.stderr.flush()
        answer = _answer(202, {"orderId": body["orderId"], "status": "PENDING", "createdAt": now})
        answer.headers["Location"] = f"/floor/orders/{body['orderId']}"
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

            @hello.post("/floor/intake")
            def take() -> Response:
                _scheme, _, token = request.headers.get("Authorization", "").partition(" ")
                return intake.take(token.strip(), request.get_data())

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
