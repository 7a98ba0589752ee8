"""`t2ctl sandbox`: a Zoho Inventory stand-in and a verifying webhook receiver on one port,
to try the whole flow without credentials. The project's own tests use the same pieces."""

import threading
from collections.abc import Callable
from dataclasses import dataclass

import waitress
from flask import Flask

from t2ctl.sandbox.receiver import Receiver
from t2ctl.sandbox.zoho import ZohoStandIn


def build(standin: ZohoStandIn, receiver: Receiver | None = None) -> Flask:
    """One app: the stand-in's OAuth and ``/inventory/v1`` routes, and ``/hooks``."""
    app = standin.app()
    if receiver is not None:
        receiver.register(app)
    return app


@dataclass
class Running:
    url: str
    stop: Callable[[], None]


def in_background(app: Flask, *, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve ``app`` on waitress from a thread; ``stop()`` closes its sockets and threads."""
    # The partner API judges X-Forwarded-For itself (t2ctl.api.proxies), as the daemon does.
    server = waitress.create_server(
        app, host=host, port=port, threads=8, clear_untrusted_proxy_headers=False
    )
    stopping = threading.Event()

    def run() -> None:
        # waitress's own loop, a step at a time, so the sockets are closed by this thread.
        while not stopping.is_set():
            waitress.wasyncore.loop(timeout=0.05, map=server._map, count=1)
        waitress.wasyncore.close_all(server._map)

    thread = threading.Thread(target=run, daemon=True, name=f"http-{server.effective_port}")
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()

    return Running(f"http://{host}:{server.effective_port}", stop)
