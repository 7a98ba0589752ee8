"""Per-key rate limits (flask-limiter): ``server.rate_limit_per_minute`` unless the partner
has its own, with ``Retry-After`` on 429.

``server.rate_limit_storage`` says where the counts live: ``memory://`` in this process, so
each daemon behind a balancer enforces the limit on its own share of the traffic; ``redis://``
in Redis, so every daemon pointed at it shares one count per key.

Redis down fails open, never with a 5xx: flask-limiter's in-memory fallback counts each key in
this process alone (as ``memory://`` would) and tries Redis again after 1, 2, 4 … 32 s (then
from 1 s again), on the back of a request, until it answers. That beats ``swallow_errors``
alone, which serves every request unlimited while Redis is down. ``swallow_errors`` is on as
well for the one gap the fallback leaves: a request already waiting on Redis when another
thread switched to memory re-raises instead of falling back, and would be a 500; swallowed, it
is served uncounted, and flask-limiter logs "Failed to rate limit. Swallowing error" with the
Redis error (at most ``server.threads`` - 1 such lines an outage, when it starts). This module
logs the switch both ways, once, and counts it in ``t2ctl_rate_limit_*``
(``monitoring.metrics``); flask-limiter's own, vaguer lines about the same switch are dropped.
"""

import logging
import threading
import time
from functools import partial
from typing import Any

from flask import Flask, Response, g
from flask_limiter import Limiter
from limits.storage import MemoryStorage
from redis.backoff import NoBackoff
from redis.retry import Retry

from t2ctl.config import ServerSettings
from t2ctl.monitoring import metrics

logger = logging.getLogger(__name__)

# How often the in-process counts drop their expired entries.
EXPIRE_EVERY = 1.0


class _InProcessStorage(MemoryStorage):
    """``memory://`` without a thread a hit. The library's storage drops expired entries on
    a timer thread it starts anew whenever the last one has ended, so under steady traffic a
    new thread every few requests, each start a stall of its caller. Here the request that
    finds the last sweep ``EXPIRE_EVERY`` old makes the next one, in passing."""

    STORAGE_SCHEME = "t2ctl-memory"  # type: ignore[assignment]  # the registry takes a str too
    _swept = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # the library's private hook
        now = time.monotonic()
        if now - self._swept >= EXPIRE_EVERY:
            self._swept = now
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


# Redis on the LAN answers in a millisecond: a request waits at most this long on one that
# hangs, once when it goes down and once per retry (the URI's ?socket_timeout= overrides it).
STORAGE_TIMEOUT = 0.5


def init(app: Flask, server: ServerSettings) -> Limiter:
    """Attach the limiter; must come after authentication, which sets ``g.api_key``."""

    def per_minute() -> str:
        own = g.partner.rate_limit_per_minute if "partner" in g else None
        return f"{own or server.rate_limit_per_minute}/minute"

    limiter = Limiter(
        key_func=lambda: g.api_key.key_id,
        default_limits=[per_minute],
        default_limits_exempt_when=lambda: "api_key" not in g,
        headers_enabled=True,
        storage_uri=server.rate_limit_storage if server.shares_rate_limits else "t2ctl-memory://",
        storage_options=_redis_options() if server.shares_rate_limits else {},
        strategy="moving-window",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    # after_request hooks run in reverse order: these run after the limiter's own.
    app.after_request(_retry_after_only_when_refused)
    app.after_request(partial(_Watch(server.redacted_rate_limit_storage()).observe, limiter))
    limiter.init_app(app)
    logging.getLogger("flask-limiter").addFilter(_library_switch_lines)
    return limiter


def describe(server: ServerSettings) -> str:
    """Where the limits are counted, for the daemon's start-up line; no password."""
    if server.shares_rate_limits:
        return (
            f"rate limits counted in {server.redacted_rate_limit_storage()}, "
            "shared by every daemon that uses it"
        )
    return "rate limits counted in this process's memory (memory://): each daemon counts alone"


def _redis_options() -> dict[str, Any]:
    """Short timeouts and no retries: redis-py's default retries thrice with a backoff of
    seconds, and has no timeout, so a Redis that hangs would hang requests with it."""
    return {
        "socket_connect_timeout": STORAGE_TIMEOUT,
        "socket_timeout": STORAGE_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }


class _Watch:
    """Notices the limiter leaving the configured storage for memory and coming back, from
    which storage counted each limited request."""

    def __init__(self, shown: str):
        self.shown = shown
        self.up = True
        self.lock = threading.Lock()

    def observe(self, limiter: Limiter, response: Response) -> Response:
        if "api_key" not in g:  # unauthenticated: not limited
            return response
        up = limiter.limiter.storage is limiter.storage  # else the in-memory fallback's
        if not up:
            metrics.RATE_LIMIT_FALLBACK.inc()
        with self.lock:
            changed, self.up = up != self.up, up
        if changed:
            metrics.RATE_LIMIT_STORAGE_UP.set(1 if up else 0)
            self._log(up)
        return response

    def _log(self, up: bool) -> None:
        if up:
            logger.info(
                "rate limit storage %s answers again: the fleet shares one count per key again",
                self.shown,
                extra={"action": "rate_limit_storage_up"},
            )
            return
        logger.warning(
            "rate limit storage %s unreachable (refused, or no answer in time): requests are "
            "served, each daemon counting every key's limit alone, until it answers again",
            self.shown,
            extra={"action": "rate_limit_storage_down"},
        )


def _library_switch_lines(record: logging.LogRecord) -> bool:
    """flask-limiter's "Rate limit storage unreachable/recovered": ``_Watch`` says it with the
    storage named."""
    return not record.getMessage().startswith("Rate limit storage ")


def _retry_after_only_when_refused(response: Response) -> Response:
    """flask-limiter sets Retry-After on every response; it means something only on a 429."""
    if response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response
