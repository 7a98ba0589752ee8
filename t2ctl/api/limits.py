"""Per-key rate limits: ``server.rate_limit_per_minute`` unless the partner has its own, a
moving window per API key, with ``X-RateLimit-*`` on every limited answer and ``Retry-After``
on a 429.

The counting is the ``limits`` library's (the one flask-limiter is built on), called directly:
flask-limiter's resolution of which limits apply to a request cost more than the rest of a
read, and here one limit applies to every authenticated request.

``server.rate_limit_storage`` says where the counts live: ``memory://`` in this process, so
each daemon behind a balancer enforces the limit on its own share of the traffic; ``redis://``
in Redis, so every daemon pointed at it shares one count per key.

Redis down fails open, never with a 5xx: the request that finds it unreachable (refused, or
no answer in ``STORAGE_TIMEOUT``) is counted in this process's memory, as ``memory://``
would, and so is every request after it until Redis is tried again, on the back of a request,
after 1, 2, 4 … 32 s (then from 1 s again). A request already waiting on Redis when it went
away is counted in memory too. The switch is logged both ways, once, and counted in
``t2ctl_rate_limit_*`` (``monitoring.metrics``).
"""

import functools
import logging
import math
import threading
import time
from typing import Any

from flask import Flask, Response, g
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import TooManyRequests

from t2ctl.config import ServerSettings
from t2ctl.monitoring import metrics

logger = logging.getLogger(__name__)

# Redis on the LAN answers in a millisecond: a request waits at most this long on one that
# hangs, once when it goes down and once per retry (the URI's ?socket_timeout= overrides it).
STORAGE_TIMEOUT = 0.5
RETRY_FIRST, RETRY_MOST = 1.0, 32.0
# How often the in-process counts drop their expired entries.
EXPIRE_EVERY = 1.0


class _InProcessStorage(MemoryStorage):
    """The library's in-memory storage without a thread a hit. It drops expired entries on a
    timer thread it starts anew whenever the last one has ended, so under steady traffic a
    new thread every few requests, each start a stall of its caller. Here the request that
    finds the last sweep ``EXPIRE_EVERY`` old makes the next one, in passing."""

    _swept = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # the library's private hook
        now = time.monotonic()
        if now - self._swept >= EXPIRE_EVERY:
            self._swept = now
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


def init(app: Flask, server: ServerSettings) -> None:
    """Limit every authenticated request; must come after authentication, which sets
    ``g.api_key``."""
    counts = _Counts(server)

    def check() -> None:
        if "api_key" not in g:  # public, or refused already
            return
        item = _per_minute(g.partner.rate_limit_per_minute or server.rate_limit_per_minute)
        allowed, (reset, remaining) = counts.hit(item, g.api_key.key_id)
        g.rate_limit = (item.amount, reset, remaining)
        if not allowed:
            raise TooManyRequests(
                f"Over the rate limit of {item.amount} requests a minute for this API key.",
                retry_after=max(1, math.ceil(reset - time.time())),
            )

    app.before_request(check)
    app.after_request(_headers)


def describe(server: ServerSettings) -> str:
    """Where the limits are counted, for the daemon's start-up line; no password."""
    if server.shares_rate_limits:
        return (
            f"rate limits counted in {server.redacted_rate_limit_storage()}, "
            "shared by every daemon that uses it"
        )
    return "rate limits counted in this process's memory (memory://): each daemon counts alone"


@functools.lru_cache(maxsize=64)
def _per_minute(amount: int) -> RateLimitItem:
    return RateLimitItemPerMinute(amount)


def _headers(response: Response) -> Response:
    if "rate_limit" in g:
        amount, reset, remaining = g.rate_limit
        response.headers["X-RateLimit-Limit"] = str(amount)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(math.ceil(reset))
    return response


class _Counts:
    """The configured storage while it answers, this process's memory while it does not."""

    def __init__(self, server: ServerSettings):
        self.shown = server.redacted_rate_limit_storage()
        self.local = MovingWindowRateLimiter(_InProcessStorage())
        self.shared: MovingWindowRateLimiter | None = None
        if server.shares_rate_limits:
            storage = storage_from_string(
                server.rate_limit_storage, wrap_exceptions=True, **_redis_options()
            )
            assert isinstance(storage, Storage)  # the synchronous kind, for redis://
            self.shared = MovingWindowRateLimiter(storage)
        self.up = True
        self.retry_at = 0.0
        self.wait = RETRY_FIRST
        self.lock = threading.Lock()

    def hit(self, item: RateLimitItem, key: str) -> tuple[bool, tuple[float, int]]:
        """Count one request against ``item`` for ``key``: allowed, and the window's reset
        time (Unix) and what remains of it."""
        if self.shared is not None and (self.up or time.monotonic() >= self.retry_at):
            try:
                allowed = self.shared.hit(item, key)
                stats = self.shared.get_window_stats(item, key)
            except StorageError:
                self._down()
            else:
                self._up()
                return allowed, (stats.reset_time, stats.remaining)
        if self.shared is not None:
            metrics.RATE_LIMIT_FALLBACK.inc()
        allowed = self.local.hit(item, key)
        stats = self.local.get_window_stats(item, key)
        return allowed, (stats.reset_time, stats.remaining)

    def _down(self) -> None:
        with self.lock:
            was_up, self.up = self.up, False
            self.retry_at = time.monotonic() + self.wait
            self.wait = self.wait * 2 if self.wait < RETRY_MOST else RETRY_FIRST
        if was_up:
            metrics.RATE_LIMIT_STORAGE_UP.set(0)
            logger.warning(
                "rate limit storage %s unreachable (refused, or no answer in time): requests "
                "are served, each daemon counting every key's limit alone, until it answers "
                "again",
                self.shown,
                extra={"action": "rate_limit_storage_down"},
            )

    def _up(self) -> None:
        if self.up:
            return
        with self.lock:
            was_down, self.up, self.wait = not self.up, True, RETRY_FIRST
        if was_down:
            metrics.RATE_LIMIT_STORAGE_UP.set(1)
            logger.info(
                "rate limit storage %s answers again: the fleet shares one count per key again",
                self.shown,
                extra={"action": "rate_limit_storage_up"},
            )


def _redis_options() -> dict[str, Any]:
    """Short timeouts and no retries: redis-py's default retries thrice with a backoff of
    seconds, and has no timeout, so a Redis that hangs would hang requests with it."""
    return {
        "socket_connect_timeout": STORAGE_TIMEOUT,
        "socket_timeout": STORAGE_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
