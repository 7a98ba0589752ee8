"""``t2ctl serve``: migrate, then serve the partner API on waitress until SIGTERM.

SIGTERM and SIGINT raise SystemExit in the main thread; waitress's loop catches it and lets
the requests in flight finish (up to its dispatcher's grace) before the process exits 0.
"""

import logging
import signal

import waitress

from t2ctl.api import create_app
from t2ctl.config import Settings
from t2ctl.db import schema
from t2ctl.errors import T2Error

logger = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int) -> None:
    app = create_app(settings)
    applied = schema.migrate()
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied), extra={"action": "migrate"})
    try:
        server = waitress.create_server(
            app,
            host=host,
            port=port,
            threads=settings.server.threads,
            ident="t2ctl",
            max_request_body_size=1024 * 1024,
        )
    except OSError as exc:
        raise T2Error(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    if settings.sandbox:
        logger.warning("SANDBOX MODE: provisioning is simulated and no Zoho call is made")
    logger.info(
        "listening on http://%s:%s (%s mode, database %s)",
        host,
        server.effective_port,
        settings.mode,
        settings.database.redacted_url(),
        extra={"action": "listening"},
    )
    server.run()
    logger.info("stopped", extra={"action": "stopped"})


def _stop(signum: int, _frame) -> None:
    logger.info("%s received: finishing requests in flight", signal.Signals(signum).name)
    raise SystemExit(0)
