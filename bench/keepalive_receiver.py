"""A webhook receiver for bench/delivery.py, run in a process of its own so that it never
shares the GIL of the workers it is timing: 204 to every POST over kept-alive HTTP/1.1, and its
count of POSTs at ``GET /count``. Unlike waitress (bench/receiver.py), which closes the
connection after every 204, it keeps it, as a partner's server would: a delivery then costs no
new connection (nor, outside sandbox mode, a new check by the SSRF guard).

    python3 bench/keepalive_receiver.py [PORT]

prints ``http://127.0.0.1:<port>`` on its first line once it listens (PORT 0, the default,
picks a free one). Standard library only: it starts in a moment and, measured alone with wrk
(POST, 4 connections), answers some 18,000 requests a second on the 2-core machine of
docs/benchmarks.md, far above what it is asked to take.
"""

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a partner's server would
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Handler.lock:
            Handler.received += 1
        self.send_response_only(204)
        self.end_headers()

    def do_GET(self) -> None:
        body = str(Handler.received).encode()
        self.send_response_only(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a line per request would cost more than the answer."""


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
