"""Per-key rate limits (flask-limiter): ``server.rate_limit_per_minute`` unless the partner
has its own, with ``Retry-After`` on 429.

Counters live in this process's memory: with several daemons behind a balancer each enforces
the limit on its own share of the traffic.
"""

from flask import Flask, Response, g
from flask_limiter import Limiter


def init(app: Flask, default_per_minute: int) -> Limiter:
    """Attach the limiter; must come after authentication, which sets ``g.api_key``."""
    # after_request hooks run in reverse order: this one runs after the limiter's own.
    app.after_request(_retry_after_only_when_refused)

    def per_minute() -> str:
        own = g.partner.rate_limit_per_minute if "partner" in g else None
        return f"{own or default_per_minute}/minute"

    return Limiter(
        key_func=lambda: g.api_key.key_id,
        app=app,
        default_limits=[per_minute],
        default_limits_exempt_when=lambda: "api_key" not in g,
        headers_enabled=True,
        storage_uri="memory://",
        strategy="moving-window",
    )


def _retry_after_only_when_refused(response: Response) -> Response:
    """flask-limiter sets Retry-After on every response; it means something only on a 429."""
    if response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response
