"""The ``deliver`` handler: one signed try of a delivery, recorded, and what comes next.

A 2xx within ``webhooks.timeout_seconds`` delivers it. Anything else (a 3xx included: redirects
are not followed) is tried again after the next step of ``webhooks.retry_schedule`` with ±20 %
jitter, or later if a 429 or 503 asked so with ``Retry-After``, under the same ``webhook-id``;
after the last step the delivery is dead. A 410 Gone ends it at once. Outside sandbox mode
only https is sent, and only to addresses the SSRF guard allows.
"""

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests

from t2ctl import clock, db, urls
from t2ctl.config import Settings
from t2ctl.db.models import WebhookAttempt, WebhookDelivery
from t2ctl.jobs import tasks
from t2ctl.monitoring import logs, metrics
from t2ctl.security import redaction
from t2ctl.security.crypto import SecretBox
from t2ctl.webhooks import deliveries, outbox, signing
from t2ctl.webhooks.guard import Guard, Refused, guarded_adapter

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
    """POSTs one try. Each worker thread keeps its own session, so connections to a partner
    are reused; proxies from the environment are ignored, as a proxy would reach the address
    on our behalf, out of the guard's sight."""

    def __init__(self, *, timeout: float, guard: Guard | None, verify: str | bool = True):
        self.timeout = timeout
        self.guard = guard
        self.verify = verify
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
            if self.guard is not None:
                adapter = guarded_adapter(self.guard)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
        return session

    def send(self, url: str, headers: dict[str, str], body: str) -> Result:
        if self.guard is not None and urlsplit(url).scheme != "https":
            return Result("refused", error="outside sandbox mode only https URLs are allowed")
        started = time.monotonic()

        def elapsed() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            with self._session().post(
                url,
                data=body.encode(),
                headers=headers,
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
                stream=True,
                verify=self.verify,
            ) as response:
                raw = response.raw.read(EXCERPT_BYTES, decode_content=True)
        except Refused as exc:
            return Result("refused", error=f"refused: {exc}")
        except requests.Timeout:
            return Result("failed", None, elapsed(), f"no answer within {self.timeout:g} s")
        except requests.RequestException as exc:
            return Result("failed", None, elapsed(), _reason(exc))
        except Exception as exc:  # whatever a receiver or its URL provokes is a failed try
            return Result("failed", None, elapsed(), f"{type(exc).__name__} while sending")
        excerpt = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
        return _judge(response, elapsed(), excerpt, self.timeout)


def _judge(response: requests.Response, latency: int, excerpt: str, timeout: float) -> Result:
    status = response.status_code
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


def _reason(exc: requests.RequestException) -> str:
    """The cause in a line, without urllib3's object reprs or the URL (which may carry a
    receiver's token)."""
    prefix = "TLS" if isinstance(exc, requests.exceptions.SSLError) else "could not connect"
    cause = getattr(exc.args[0], "reason", None) if exc.args else None
    if cause is None:
        return f"{prefix}: {type(exc).__name__}"
    return f"{prefix}: {_CONNECTION_REPR.sub('', str(cause))}"[:300]


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
        self.box = box
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
        secrets = signing.secrets_in_force(delivery.partner, self.box, now=now)
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
    with db.transaction():
        _ATTEMPT.first(
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
        changed = _OUTCOME[status == "delivered"].changed(
            status,
            now + wait if wait is not None and status == "pending" else None,
            result.status_code,
            error,
            now,
            None if status == "pending" else now,
            delivery.id,
        )
    return status if changed else None


_ATTEMPT = db.prepared_insert(
    (
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
)
_SET = (
    WebhookDelivery.status,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.last_status,
    WebhookDelivery.last_error,
    WebhookDelivery.updated_at,
    WebhookDelivery.finished_at,
)


# The delivery's state after a try, if still pending: a delivery resets its failures.
_OUTCOME = {
    delivered: db.prepared_update(
        _SET,
        lambda delivery_id: (
            (WebhookDelivery.id == delivery_id) & (WebhookDelivery.status == "pending")
        ),
        fixed={
            WebhookDelivery.attempts: WebhookDelivery.attempts + 1,
            WebhookDelivery.failures: 0 if delivered else WebhookDelivery.failures + 1,
        },
    )
    for delivered in (True, False)
}


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
    verify = str(hooks.ca_file) if hooks.ca_file is not None else True
    return Sender(timeout=hooks.timeout_seconds, guard=guard, verify=verify)


def register(registry: tasks.Registry, settings: Settings, *, box: SecretBox) -> None:
    deliverer = Deliverer(sender_for(settings), box=box, schedule=settings.webhooks.retry_schedule)
    registry.add(outbox.TASK, deliverer)
