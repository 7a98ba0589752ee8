"""``t2ctl serve``: migrate, then run the partner API, the job workers and the scheduler.

``--role api`` serves HTTP only, ``--role worker`` runs workers and the scheduler only, and
``all`` (the default) runs everything in one process. SIGTERM and SIGINT raise SystemExit in
the main thread: the HTTP server stops accepting and finishes the requests in flight, the workers
stop claiming and get ``worker.shutdown_grace`` to finish their jobs (jobs not started go back
at once; jobs still running are retried elsewhere after a lease), and the process exits 0.
"""

import logging
import signal
import threading

import requests

from t2ctl import httpserver, startup, wiring
from t2ctl.api import create_app, limits
from t2ctl.config import Settings
from t2ctl.db import schema
from t2ctl.errors import T2Error
from t2ctl.jobs.worker import Pool
from t2ctl.monitoring import metrics, systemd
from t2ctl.security import atrest
from t2ctl.security.crypto import SecretBox

logger = logging.getLogger(__name__)

ROLES = ("all", "api", "worker")
METRICS_SCRAPES = 2  # scrapes served at once, each on a thread of its own


def serve(settings: Settings, *, host: str, port: int, role: str = "all") -> None:
    box = startup.connect(settings, connections=connections(settings, role))
    applied = schema.migrate()
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied), extra={"action": "migrate"})
    try:  # the wrong master key stops the start, not each order later
        atrest.check(box)
    except T2Error as exc:
        raise T2Error(f"refusing to start: {exc}") from None
    serves_http = role in ("all", "api")
    server = (
        httpserver.build(
            create_app(settings, box),
            settings.server,
            host=host,
            port=port,
            observer=metrics.connections_closed,
        )
        if serves_http
        else None
    )
    listener = metrics.serve(settings.metrics, wiring.gauges) if settings.metrics.enabled else None
    background = Background(settings, box) if role in ("all", "worker") else None
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    if settings.sandbox_mode:
        logger.warning("SANDBOX MODE: provisioning is simulated and no Zoho call is made")
    if background is not None:
        background.start()
    url = f"http://{_url_host(host)}:{server.effective_port}" if server is not None else None
    watchdog = Watchdog(url, background)
    try:
        if listener is not None:
            logger.info(
                "metrics on http://%s:%s/metrics",
                _url_host(settings.metrics.host),
                listener.port,
                extra={"action": "metrics_listening"},
            )
        if server is not None:
            logger.info(
                "listening on %s (%s mode, database %s)",
                url,
                settings.mode,
                settings.database.redacted_url(),
                extra={"action": "listening"},
            )
            logger.info(
                "%s", limits.describe(settings.server), extra={"action": "rate_limit_storage"}
            )
        systemd.notify("READY=1", f"STATUS={role} role, {settings.mode} mode, {url or 'no HTTP'}")
        watchdog.start()  # after READY: systemd arms its watchdog once the start is complete
        if server is not None:
            server.run()  # returns once SIGTERM's SystemExit has closed the listener
        else:
            threading.Event().wait()
    except SystemExit:
        pass
    finally:
        systemd.notify("STOPPING=1")
        watchdog.stop()
        if background is not None:
            background.stop()
        if listener is not None:
            listener.stop()
    logger.info("stopped", extra={"action": "stopped"})


def connections(settings: Settings, role: str) -> int:
    """The database pool this process needs: one connection for each thread that may query
    at once, of those the role runs."""
    count = 1  # the main thread: migrations and the master key's check
    if role in ("all", "api"):
        count += settings.server.threads
    if role in ("all", "worker"):
        count += settings.worker.concurrency + Pool.HELPER_THREADS + 1  # and the scheduler
    if settings.metrics.enabled:
        count += METRICS_SCRAPES
    return count


def _url_host(host: str) -> str:
    """The host to reach a listener on ``host`` from this machine, as a URL writes it."""
    loopback = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{loopback}]" if ":" in loopback else loopback


class Background:
    """The worker pool and the scheduler thread of one daemon."""

    def __init__(self, settings: Settings, box: SecretBox):
        self.settings = settings
        self.scheduler = wiring.scheduler(settings)
        registry = wiring.registry(settings, box=box, schedule=self.scheduler)
        self.worker = wiring.worker(settings, registry)
        self.pool = Pool(self.worker, concurrency=settings.worker.concurrency)
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self.scheduler.run, args=(self.stopping,), name="t2ctl-scheduler", daemon=True
        )

    def start(self) -> None:
        self.pool.start()
        self.thread.start()
        logger.info(
            "worker %s started: %d thread(s), lease %ss, tasks %s",
            self.worker.name,
            self.settings.worker.concurrency,
            self.settings.worker.lease_seconds,
            ", ".join(self.worker.registry.names()),
            extra={"action": "worker_started"},
        )

    def stop(self) -> None:
        self.stopping.set()
        self.pool.stop(self.settings.worker.shutdown_grace.total_seconds())

    def alive(self) -> bool:
        return self.pool.alive() and self.thread.is_alive()


class Watchdog:
    """Sends systemd ``WATCHDOG=1`` while the daemon does its work: its HTTP server answers
    ``/health/live`` and its worker and scheduler threads run. A hung daemon goes quiet, and
    systemd restarts it after ``WatchdogSec``. Idle when systemd asks for no watchdog.

    It checks five times per ``WatchdogSec``, each probe given a fifth of it: one slow or
    failed check withholds one ping and the next makes up for it; only a daemon that fails
    two checks running is restarted."""

    CHECKS_PER_TIMEOUT = 5

    def __init__(self, url: str | None, background: Background | None):
        self.probe = f"{url}/t2mobile/health/live" if url else None
        self.background = background
        timeout = systemd.watchdog_timeout()
        self.every = timeout.total_seconds() / self.CHECKS_PER_TIMEOUT if timeout else None
        self.http = requests.Session()
        self.http.trust_env = False  # a proxy set for outbound calls must not stand in between
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="t2ctl-watchdog", daemon=True)

    def start(self) -> None:
        if self.every is not None:
            self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        every = self.every
        assert every is not None  # start() runs this thread only under a systemd watchdog
        while not self.stopping.wait(every):
            trouble = self.trouble(timeout=every)
            if trouble is None:
                systemd.notify("WATCHDOG=1")
            else:
                logger.error("watchdog withheld: %s", trouble, extra={"action": "watchdog"})

    def trouble(self, *, timeout: float) -> str | None:
        """What is wrong, or None when all is well."""
        if self.background is not None and not self.background.alive():
            return "a worker or scheduler thread has stopped"
        if self.probe is None:
            return None
        try:
            self.http.get(self.probe, timeout=timeout).raise_for_status()
        except requests.RequestException as exc:
            return f"the HTTP server does not answer {self.probe}: {type(exc).__name__}"
        return None


def _stop(signum: int, _frame) -> None:
    # Once: a second signal must not cut the drain short (SIGKILL still does, if need be).
    for other in (signal.SIGTERM, signal.SIGINT):
        signal.signal(other, _already_stopping)
    logger.info("%s received: finishing work in flight", signal.Signals(signum).name)
    raise SystemExit(0)


def _already_stopping(signum: int, _frame) -> None:
    logger.warning("%s received: already stopping", signal.Signals(signum).name)
