"""Who is calling: an API key in ``Authorization: Bearer`` or ``X-API-Key``, and its partner."""

from flask import g, request

from t2ctl import clock, partners
from t2ctl.errors import Forbidden, Unauthorized
from t2ctl.security import apikeys

PUBLIC_BLUEPRINT = "meta"  # health, its probes, the OpenAPI document and its reference page


def authenticate() -> None:
    """Before every request: set ``g.partner`` and ``g.api_key``, or refuse with 401/403.

    Requests that match no route pass through, so they get their 404 or 405.
    """
    if request.endpoint is None or request.blueprint == PUBLIC_BLUEPRINT:
        return
    presented = _presented_key()
    if not presented:
        raise Unauthorized("Send your API key as `Authorization: Bearer <key>` or `X-API-Key`.")
    key = apikeys.authenticate(presented)
    if not partners.address_allowed(key.partner, request.remote_addr or ""):
        raise Forbidden("This client address is not in the partner's allow-list.")
    apikeys.touch(key, clock.now())
    g.api_key = key
    g.partner = key.partner


def _presented_key() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None
