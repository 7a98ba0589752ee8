"""Standard Webhooks signing (CONTRACT §2), with the specification's reference library.

The signed content is ``id.timestamp.body``; the body is fixed when the event is recorded and
the timestamp is the moment of each try, so receivers' five-minute tolerance holds on a retry
sent hours later. During a rotation's grace every secret still in force signs, newest first.
"""

import json
from collections.abc import Callable
from datetime import datetime
from secrets import token_urlsafe
from typing import Any

from standardwebhooks import Webhook

from t2ctl import __version__, clock, db
from t2ctl.db.models import Partner, RetiredWebhookSecret

USER_AGENT = f"t2ctl-webhooks/{__version__}"


def new_webhook_id() -> str:
    return "msg_" + token_urlsafe(18)


def envelope(event: str, occurred_at: datetime, data: dict[str, Any]) -> str:
    """The body every try sends: ``{type, timestamp, data}`` as compact JSON."""
    body = {"type": event, "timestamp": clock.rfc3339(occurred_at), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def secrets_in_force(
    partner: Partner, decrypt: Callable[[str], str], *, now: datetime
) -> list[str]:
    """The partner's current secret, then any retired one whose grace has not ended, each
    opened with ``decrypt`` (a ``SecretBox``'s, or a cache of it)."""
    retired = _RETIRED.all(partner.id, now)
    return [decrypt(partner.webhook_secret)] + [decrypt(old.secret) for old in retired]


# Read on every try of every delivery.
_RETIRED = db.Prepared(
    lambda partner_id, now: (
        RetiredWebhookSecret.select()
        .where(
            (RetiredWebhookSecret.partner == partner_id) & (RetiredWebhookSecret.signs_until > now)
        )
        .order_by(RetiredWebhookSecret.retired_at.desc())
    ),
    2,
)


def headers(webhook_id: str, body: str, secrets: list[str], *, now: datetime) -> dict[str, str]:
    """The request headers of one try, one ``v1,`` signature per secret."""
    signatures = " ".join(Webhook(secret).sign(webhook_id, now, body) for secret in secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
