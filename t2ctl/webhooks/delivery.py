"""The ``deliver`` handler: one signed try of a delivery, recorded, and what comes next.

A 2xx within ``webhooks.timeout_seconds`` delivers it. Anything else (a 3xx included: redirects
are not followed) is tried again after the next step of ``webhooks.retry_schedule`` with ±20 %
jitter, or later if a 429 or 503 asked so with ``Retry-After``, under the same ``webhook-id``;
after the last step the delivery is dead. A 410 Gone ends it at once. Outside sandbox mode
only https is sent, and only to addresses the SSRF guard allows.
"""

import functools
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
import peewee
import urllib3
from urllib3.exceptions import NewConnectionError

from t2ctl import clock, db, urls
from t2ctl.config import Settings
from t2ctl.db.models import WebhookAttempt, WebhookDelivery
from t2ctl.jobs import tasks
from t2ctl.monitoring import logs, metrics
from t2ctl.security import redaction
from t2ctl.security.crypto import SecretBox
from t2ctl.webhooks import deliveries, outbox, signing
from t2ctl.webhooks.guard import Guard, Refused, pool_manager

logger = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
JITTER = 0.2


@dataclass(frozen=True)
class Result:
    """What one try came to: delivered, failed (to be tried again), refused by the guard, or
    gone (410: the receiver wants no more)."""

    outcome: str
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    excerpt: str | None = None
    retry_after: timedelta | None = None


class Sender:
    """POSTs one try. The worker's threads share one pool of kept-alive connections per
    partner (urllib3's, without requests' per-request work on top, a quarter of a delivery's
    CPU); outside sandbox mode the SSRF guard checks each new connection."""

    def __init__(
        self,
        *,
        timeout: float,
        guard: Guard | None,
        ca_file: str | None = None,
        connections: int = 10,
    ):
        self.timeout = timeout
        self.guard = guard
        self._pools = pool_manager(
            guard,
            maxsize=connections,  # one a worker thread, kept alive per partner
            retries=False,  # one try is one request; the retry schedule does the rest
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file or certifi.where(),  # requests' trust store, unless told otherwise
        )

    def send(self, url: str, headers: dict[str, str], body: str) -> Result:
        if self.guard is not None and urlsplit(url).scheme != "https":
            return Result("refused", error="outside sandbox mode only https URLs are allowed")
        headers = {**headers, **_credentials(url)}
        started = time.monotonic()

        def elapsed() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            response = self._pools.urlopen(
                "POST",
                url,
                body=body.encode(),
                headers=headers,
                redirect=False,
                preload_content=False,
            )
            try:
                raw = response.read(EXCERPT_BYTES, decode_content=True)
            finally:
                # A body read to its end has given its connection back to the pool, to be
                # kept alive; one left unread closes it.
                response.close()
                response.release_conn()
        except Refused as exc:
            return Result("refused", error=f"refused: {exc}")
        except NewConnectionError as exc:  # before TimeoutError, of which it is a kind
            return Result("failed", None, elapsed(), _reason("could not connect", exc))
        except urllib3.exceptions.TimeoutError:
            return Result("failed", None, elapsed(), f"no answer within {self.timeout:g} s")
        except urllib3.exceptions.SSLError as exc:
            return Result("failed", None, elapsed(), _reason("TLS", exc))
        except urllib3.exceptions.HTTPError as exc:
            return Result("failed", None, elapsed(), _reason("could not connect", exc))
        except Exception as exc:  # whatever a receiver or its URL provokes is a failed try
            return Result("failed", None, elapsed(), f"{type(exc).__name__} while sending")
        excerpt = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
        return _judge(response, elapsed(), excerpt, self.timeout)


def _credentials(url: str) -> dict[str, str]:
    """HTTP Basic authentication from the URL's user and password, as browsers and requests
    send it: a partner's receiver may want it."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return {}
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    return urllib3.make_headers(basic_auth=f"{user}:{password}")


def _judge(
    response: urllib3.BaseHTTPResponse, latency: int, excerpt: str, timeout: float
) -> Result:
    status = response.status
    if 200 <= status < 300:
        if latency > timeout * 1000:
            late = f"HTTP {status} came after the {timeout:g} s timeout"
            return Result("failed", status, latency, late, excerpt)
        return Result("delivered", status, latency, None, excerpt)
    if status == 410:
        return Result("gone", status, latency, "HTTP 410 Gone: no more tries", excerpt)
    error = f"HTTP {status}"
    if 300 <= status < 400:
        error += " (a redirect: not followed)"
    after = clock.retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    return Result("failed", status, latency, error, excerpt, after)


# How urllib3 names the connection in front of its message: "<...HTTPConnection object at
# 0x...>: " (1.x) or "GuardedConnection(host='...', port=...): " (2.x).
_CONNECTION_REPR = re.compile(r"^(<[^>]*>|\w+\([^)]*\)): ")


def _reason(prefix: str, exc: urllib3.exceptions.HTTPError) -> str:
    """The cause in a line, without urllib3's object reprs or the URL (which may carry a
    receiver's token)."""
    cause = str(exc) or type(exc).__name__
    return f"{prefix}: {_CONNECTION_REPR.sub('', cause)}"[:300]


class Deliverer:
    def __init__(
        self,
        sender: Sender,
        *,
        box: SecretBox,
        schedule: list[timedelta],
        rng: Callable[[], float] = random.random,
    ):
        self.sender = sender
        # Each secret opened once: Fernet's check and decryption on every try was a twentieth
        # of a delivery's CPU. A rotated secret, or one re-encrypted, is a new token.
        self.decrypt = functools.lru_cache(maxsize=1024)(box.decrypt)
        self.schedule = schedule
        self.rng = rng

    def __call__(self, context: tasks.Context) -> None:
        delivery = deliveries.find(context.payload["delivery"])
        if delivery is None or delivery.status != "pending":
            return
        with logs.bind(webhook_id=delivery.webhook_id, order_id=delivery.order_ref):
            self._attempt(delivery, context)

    def _attempt(self, delivery: WebhookDelivery, context: tasks.Context) -> None:
        now = clock.now()
        secrets = signing.secrets_in_force(delivery.partner, self.decrypt, now=now)
        url = delivery.partner.webhook_url
        headers = signing.headers(delivery.webhook_id, delivery.body, secrets, now=now)
        result = self.sender.send(url, headers, delivery.body)
        wait = self.wait(result, delivery.failures + 1)
        first = context.attempt == 1
        trigger = context.payload.get("trigger", "scheduled") if first else "scheduled"
        status = _record(delivery, result, url=url, trigger=trigger, now=now, wait=wait)
        _log(delivery, result, status, wait)
        if status == "pending":
            raise tasks.Retry(f"webhook {delivery.webhook_id}: {result.error}", after=wait)

    def wait(self, result: Result, tried: int) -> timedelta | None:
        """How long until the next try after the ``tried``-th since the delivery was (re)sent,
        or None when there is none."""
        if result.outcome in ("delivered", "gone") or tried > len(self.schedule):
            return None
        step = tasks.jittered(self.schedule[tried - 1], JITTER, rng=self.rng)
        return clock.retry_wait(result.retry_after, step)


def _record(
    delivery: WebhookDelivery,
    result: Result,
    *,
    url: str,
    trigger: str,
    now: datetime,
    wait: timedelta | None,
) -> str | None:
    """Store the try and the delivery's new state in one commit; the state changes only if
    the delivery was still pending (an operator may have acted meanwhile). Returns it."""
    if result.outcome == "delivered":
        status = "delivered"
    else:
        status = "pending" if wait is not None else "dead"
    error = redaction.redact(result.error) if result.error else None
    excerpt = redaction.redact(result.excerpt) if result.excerpt else None
    attempt = (
        delivery.id,
        now,
        trigger,
        urls.scrubbed(url),
        result.status_code,
        result.latency_ms,
        result.outcome,
        error,
        excerpt,
    )
    outcome = (
        status,
        now + wait if wait is not None and status == "pending" else None,
        result.status_code,
        error,
        now,
        None if status == "pending" else now,
        delivery.id,
    )
    delivered = status == "delivered"
    if db.is_sqlite():  # no data-modifying CTE there: a transaction of the two
        with db.transaction():
            _ATTEMPT.first(*attempt)
            changed = _OUTCOME[delivered].changed(*outcome)
    else:
        with db.single():
            (changed,) = _RECORDED[delivered].first(*outcome, *attempt)
    return status if changed else None


_ATTEMPTED = (
    WebhookAttempt.delivery,
    WebhookAttempt.attempted_at,
    WebhookAttempt.trigger,
    WebhookAttempt.url,
    WebhookAttempt.status_code,
    WebhookAttempt.latency_ms,
    WebhookAttempt.outcome,
    WebhookAttempt.error,
    WebhookAttempt.excerpt,
)
_ATTEMPT = db.prepared_insert(_ATTEMPTED)
_SET = (
    WebhookDelivery.status,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.last_status,
    WebhookDelivery.last_error,
    WebhookDelivery.updated_at,
    WebhookDelivery.finished_at,
)
_SET_CONVERTERS = [*(f.db_value for f in _SET), None]  # then the delivery's id


def _outcome(delivered: bool, *values: Any) -> peewee.ModelUpdate:
    """The delivery's state after a try (``_SET``'s values, then its id), if still pending:
    a delivery resets its failures."""
    *changes, delivery_id = values
    failures = 0 if delivered else WebhookDelivery.failures + 1
    return WebhookDelivery.update(
        {
            **dict(zip(_SET, changes, strict=True)),
            WebhookDelivery.attempts: WebhookDelivery.attempts + 1,
            WebhookDelivery.failures: failures,
        }
    ).where((WebhookDelivery.id == delivery_id) & (WebhookDelivery.status == "pending"))


def _recorded(delivered: bool) -> db.Prepared:
    """On PostgreSQL the try and the delivery's new state in one statement, one round trip
    (a transaction of the two took four): the update a data-modifying CTE of the attempt's
    insert, which returns how many deliveries the update changed."""

    def build(*values: Any) -> peewee.BaseQuery:
        state, tried = values[: len(_SET_CONVERTERS)], values[len(_SET_CONVERTERS) :]
        changed = _outcome(delivered, *state).returning(WebhookDelivery.id).cte("changed")
        return (
            WebhookAttempt.insert(dict(zip(_ATTEMPTED, tried, strict=True)))
            .with_cte(changed)
            .returning(peewee.SQL('(SELECT count(*) FROM "changed")'))
            .tuples()
        )

    converters = [*_SET_CONVERTERS, *(f.db_value for f in _ATTEMPTED)]
    return db.Prepared(build, len(converters), converters=converters)


_OUTCOME = {
    delivered: db.Prepared(
        functools.partial(_outcome, delivered), len(_SET_CONVERTERS), _SET_CONVERTERS
    )
    for delivered in (True, False)
}
_RECORDED = {delivered: _recorded(delivered) for delivered in (True, False)}


def _log(
    delivery: WebhookDelivery, result: Result, status: str | None, wait: timedelta | None
) -> None:
    extra = {"action": f"webhook_{status or 'superseded'}", "delivery": delivery.id}
    outcome = {"pending": "retrying", None: "superseded"}.get(status, status)
    metrics.WEBHOOKS.labels(delivery.event, outcome).inc()
    name = f"{delivery.event} {delivery.webhook_id} to {delivery.partner.name}"
    if status == "delivered":
        logger.info("%s delivered (HTTP %s)", name, result.status_code, extra=extra)
    elif status == "pending":
        logger.warning("%s failed: %s; next try in %s", name, result.error, wait, extra=extra)
    elif status == "dead":
        logger.error("%s is dead: %s", name, result.error, extra=extra)


def sender_for(settings: Settings) -> Sender:
    """The sender of these settings: guarded outside sandbox mode."""
    hooks = settings.webhooks
    guard = None if settings.sandbox_mode else Guard(tuple(hooks.allow_private_networks))
    ca_file = str(hooks.ca_file) if hooks.ca_file is not None else None
    return Sender(
        timeout=hooks.timeout_seconds,
        guard=guard,
        ca_file=ca_file,
        connections=settings.worker.concurrency,
    )


def register(registry: tasks.Registry, settings: Settings, *, box: SecretBox) -> None:
    deliverer = Deliverer(sender_for(settings), box=box, schedule=settings.webhooks.retry_schedule)
    registry.add(outbox.TASK, deliverer)
