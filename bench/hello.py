"""A bare Flask "hello" on the daemon's HTTP server, built by ``httpserver.build`` with the
``server.*`` settings of the config file given: the ceiling intake's throughput is held to.

    python -m bench.hello CONFIG [DATABASE_URL]

Given a database, it also serves the floor of a durable write and of a keyed read on this
stack, with none of t2ctl's work (no authentication, validation, encryption, ORM, job, log
line or metric): ``POST /floor/orders`` stores the JSON body's ``orderId`` and body by one
``INSERT`` that is its own transaction (autocommit: one statement, one round trip, committed
before the 202), on SQLite with t2ctl's pragmas in a file of its own beside the database;
``GET /floor/orders/<id>`` reads one back by its primary key, one statement too.

Logs ``listening on http://HOST:PORT`` on stderr once it accepts; SIGTERM ends it.
"""

import json
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, Response, abort, request

from t2ctl import config, db, httpserver

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


def app(database: str | None = None) -> Flask:
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
            return Response(json.dumps({"orderId": order_id}), 202, mimetype="application/json")

        @hello.get("/floor/orders/<order_id>")
        def read(order_id: str) -> Response:
            found = floor.read(order_id)
            if found is None:
                abort(404)
            return Response(found, 200, mimetype="application/json")

    return hello


def main() -> None:
    settings = config.load(Path(sys.argv[1]))
    database = sys.argv[2] if len(sys.argv) > 2 else None
    server = httpserver.build(app(database), settings.server, host="127.0.0.1", port=0)
    print(f"listening on http://127.0.0.1:{server.effective_port}", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
