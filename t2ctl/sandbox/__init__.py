"""`t2ctl sandbox`: a Zoho Inventory stand-in and a verifying webhook receiver on one port,
to try the whole flow without credentials. The project's own tests use the same pieces."""

import threading
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from waitress.channel import ClientDisconnected

from t2ctl import httpserver
from t2ctl.config import ServerSettings
from t2ctl.sandbox.receiver import Receiver
from t2ctl.sandbox.zoho import CLOSE_CONNECTION, ZohoStandIn


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
    """Serve ``app`` from a thread on the daemon's HTTP server with the default ``server.*``
    settings; ``stop()`` closes its sockets and threads."""
    server = httpserver.build(_closing(app), ServerSettings(threads=8), host=host, port=port)
    stopping = threading.Event()
    thread = threading.Thread(
        target=server.serve_until,
        args=(stopping,),
        daemon=True,
        name=f"http-{server.effective_port}",
    )
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()

    return Running(f"http://{host}:{server.effective_port}", stop)


def _closing(app: Flask):
    """``app``, except that a request whose view set ``CLOSE_CONNECTION`` gets no answer at
    all: waitress closes a connection whose client it believes gone without writing to it."""

    def wsgi(environ, start_response):
        body = app(environ, start_response)
        if environ.get(CLOSE_CONNECTION):
            if hasattr(body, "close"):
                body.close()
            raise ClientDisconnected("closed without an answer (a rehearsed connection reset)")
        return body

    return wsgi
