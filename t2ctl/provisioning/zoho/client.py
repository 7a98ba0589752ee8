"""Zoho Inventory over HTTP: the data centre, the ``{code, message}`` envelope, and every
failure sorted into transient (``Unreachable``: network, 429, 5xx, a refused token, an
answer without the envelope) or permanent (``ZohoError``: an envelope whose non-zero code
refuses the request, whatever the HTTP status under 500).

Every call goes through the shared ``Pacer`` first, and a 429 pauses the whole fleet until
Zoho's reset.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests

from t2ctl import clock
from t2ctl.errors import T2Error
from t2ctl.provisioning import Unreachable
from t2ctl.provisioning.zoho import calls
from t2ctl.provisioning.zoho.oauth import AccessToken, TokenCache
from t2ctl.provisioning.zoho.pace import Pacer

logger = logging.getLogger(__name__)

AUTH_CODES = {14, 57}  # invalid or expired token; not authorised (scope)
RATE_CODES = {44, 45, 1070}  # request limits, when sent in a body
PER_PAGE = 200
EXCERPT = 300


class ZohoError(T2Error):
    """Zoho refused the request for good: retrying the same request cannot help."""

    def __init__(self, message: str, *, status: int, code: Any):
        super().__init__(
            f"Zoho Inventory refused the request (HTTP {status}, code {code}): {message}"
        )
        self.status = status
        self.code = code


class TurnedAway(Unreachable):
    """Zoho turned the request away unprocessed (429, a refused token, a request limit):
    nothing was done, and the same request may succeed later."""


class Client:
    """One organization's Zoho Inventory API. Thread-safe; holds no per-call state.
    ``observer`` is told of every call (the daemon's wiring passes the metrics)."""

    def __init__(
        self,
        *,
        api_url: str,
        organization_id: str,
        tokens: TokenCache,
        pacer: Pacer,
        http: requests.Session | None = None,
        timeout: float = 30,
        observer: calls.Observer = calls.unobserved,
    ):
        self.api_url = api_url.rstrip("/")
        self.organization_id = organization_id
        self.tokens = tokens
        self.pacer = pacer
        self.http = http or requests.Session()
        self.timeout = timeout
        self.observer = observer
        self.sent = 0  # requests sent so far, answered or not
        self._counting = threading.Lock()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.call("GET", path, params=params)

    def post(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        before_send: Callable[[], None] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        return self.call("POST", path, params=params, body=body, before_send=before_send)

    def pages(self, path: str, key: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """Each page of a list, following ``page_context.has_more_page``; each page is
        fetched only when the one before has been taken, so a caller may stop early."""
        page = 1
        while True:
            body = self.get(path, page=page, per_page=PER_PAGE, **params)
            yield body.get(key) or []
            if not (body.get("page_context") or {}).get("has_more_page"):
                return
            page += 1

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        organization: bool = True,
        before_send: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """One API call with the envelope checked. A refused token is replaced once.
        ``before_send`` runs right before each send, after the token and the pace's wait."""
        query = {**(params or {})}
        if organization:
            query["organization_id"] = self.organization_id
        for attempt in (1, 2):
            token = self.tokens.get()
            self.pacer.acquire()
            if before_send is not None:
                before_send()
            with self._counting:
                self.sent += 1
            try:
                response = calls.timed(
                    self.observer,
                    method,
                    path,
                    partial(
                        self.http.request,
                        method,
                        self.base(token) + path,
                        params=query,
                        json=body,
                        headers={"Authorization": f"Zoho-oauthtoken {token.value}"},
                        timeout=self.timeout,
                        allow_redirects=False,
                    ),
                )
            except requests.RequestException as exc:
                raise Unreachable(
                    f"Zoho Inventory could not be reached ({type(exc).__name__})"
                ) from None
            if attempt == 1 and response.status_code == 401:
                self.tokens.invalidate(token)
                continue
            return self._envelope(method, path, response)
        raise AssertionError("the second attempt returns or raises")

    def base(self, token: AccessToken) -> str:
        """The API root in the token's data centre: ``api_domain`` with ``api_url``'s path."""
        if not token.api_domain:
            return self.api_url
        return token.api_domain.rstrip("/") + urlsplit(self.api_url).path.rstrip("/")

    def _envelope(self, method: str, path: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        if status == 429 or status >= 500:
            after = retry_after(response.headers)
            if status == 429:
                self.pacer.hold(clock.now() + (after or timedelta(seconds=60)))
                raise TurnedAway("Zoho Inventory answered HTTP 429", retry_after=after)
            raise Unreachable(f"Zoho Inventory answered HTTP {status}", retry_after=after)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("code"), int):
            # No envelope (a proxy's page, a cut-off body): whether Zoho acted is unknown.
            raise Unreachable(
                f"Zoho Inventory answered HTTP {status} without its JSON envelope: "
                f"{response.text[:EXCERPT]!r}"
            )
        code, message = body.get("code"), str(body.get("message", ""))[:EXCERPT]
        if 200 <= status < 300 and code == 0:
            return body
        logger.warning(
            "Zoho %s %s: HTTP %s, code %s: %s",
            method,
            path,
            status,
            code,
            message,
            extra={"action": "zoho_refused", "status": status, "code": code},
        )
        if status == 401 or code in AUTH_CODES:
            raise TurnedAway(
                f"Zoho Inventory refused the access token (code {code}: {message}); check that "
                "the refresh token has the scope ZohoInventory.FullAccess.all and that "
                "zoho.organization_id is an organization it can see"
            )
        if code in RATE_CODES:
            raise TurnedAway(f"Zoho Inventory's request limit was reached ({message})")
        raise ZohoError(message, status=status, code=code)


def retry_after(headers: Any) -> timedelta | None:
    """How long Zoho asks us to wait: ``Retry-After`` (seconds or an HTTP date), else
    ``X-Rate-Limit-Reset`` (seconds to go, or an epoch in seconds or milliseconds)."""
    after = clock.retry_after(headers.get("Retry-After"))
    if after is not None:
        return after
    reset = headers.get("X-Rate-Limit-Reset")
    if reset and reset.strip().isdigit():
        value: float = int(reset)
        if value > 10**12:
            value = value / 1000 - clock.now().timestamp()
        elif value > 10**9:
            value -= clock.now().timestamp()
        return timedelta(seconds=max(0, value))
    return None
