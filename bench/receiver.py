"""A partner's webhook receiver for the bench, in a process of its own: answers 204 to every
POST, and counts the orders whose ``order.fulfilled`` arrived (each once, whatever the
retries), with the ``time.monotonic()`` of the first and of the latest new one, which other
processes on this machine can compare with their own (CLOCK_MONOTONIC is system-wide).

    python -m bench.receiver [THREADS]

``GET /count`` answers ``{"count", "received", "first", "last"}``. Plain WSGI on waitress with
threads, so that the receiver is never what a delivery waits for.
"""

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress.server import create_server

Respond = Callable[[str, list[tuple[str, str]]], Any]


class Receiver:
    def __init__(self) -> None:
        self.orders: set[str] = set()
        self.received = 0
        self.first: float | None = None
        self.last: float | None = None
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], respond: Respond) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "GET":
            body = json.dumps(self.counts()).encode()
            respond("200 OK", [("Content-Type", "application/json")])
            return [body]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.note(environ["wsgi.input"].read(length))
        respond("204 No Content", [])
        return []

    def note(self, raw: bytes) -> None:
        now = time.monotonic()
        try:
            event = json.loads(raw)
            order = event["data"]["orderId"] if event["type"] == "order.fulfilled" else None
        except (ValueError, KeyError, TypeError):
            order = None
        with self.lock:
            self.received += 1
            if order is not None and order not in self.orders:
                self.orders.add(order)
                self.first = now if self.first is None else self.first
                self.last = now

    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {
                "count": len(self.orders),
                "received": self.received,
                "first": self.first,
                "last": self.last,
            }


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    server = create_server(Receiver(), host="127.0.0.1", port=0, threads=threads)
    print(f"listening on http://127.0.0.1:{server.effective_port}", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
