"""A partner's webhook receiver for the bench, in a process of its own (it never shares the GIL
of the workers it times): answers 204 to every POST over kept-alive HTTP/1.1, as a partner's
server would, so a delivery costs no new connection (waitress closes one after every 204 without
a body); and counts the orders whose ``order.fulfilled`` arrived (each once, whatever the
retries), with the ``time.monotonic()`` of the first and of the latest new one, which other
processes on this machine can compare with their own (CLOCK_MONOTONIC is system-wide).

    python -m bench.receiver

says ``listening on http://127.0.0.1:<port>`` on stderr once it listens. ``GET /count``
answers ``{"count", "received", "first", "last"}``. Standard library only: measured alone with
wrk it answers far more requests a second than any pipeline here asks of it.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Counts:
    def __init__(self) -> None:
        self.orders: set[str] = set()
        self.received = 0
        self.first: float | None = None
        self.last: float | None = None
        self.lock = threading.Lock()

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

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "count": len(self.orders),
                "received": self.received,
                "first": self.first,
                "last": self.last,
            }


COUNTS = Counts()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:
        COUNTS.note(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response_only(204)
        self.send_header("Content-Length", "0")  # wrk's parser waits for it
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps(COUNTS.snapshot()).encode()
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a line per request would cost more than the answer."""


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
