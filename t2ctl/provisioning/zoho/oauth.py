"""Zoho OAuth: one access token, minted from the refresh token and shared through the database.

Zoho allows 10 access tokens per 10 minutes for a refresh token, so every daemon on the
database shares one token (encrypted, in ``zoho_token``). A new one is minted ``EARLY`` before
the old one expires, or at once when Zoho refuses it, by one process at a time: the one that
takes the refresh lease. Every attempt, failed or not, is counted in the row, and no more than
``MINTS_PER_WINDOW`` are made per ``WINDOW``: half of Zoho's allowance, leaving the rest to
``config check`` and IconTech's other integrations.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests

from t2ctl import clock, db
from t2ctl.db.models import ZohoToken
from t2ctl.errors import T2Error
from t2ctl.provisioning import Unreachable
from t2ctl.provisioning.zoho import calls
from t2ctl.security.crypto import SecretBox

logger = logging.getLogger(__name__)

TOKEN_PATH = "/oauth/v2/token"
EARLY = timedelta(minutes=5)  # refresh this long before expiry
LEASE_MARGIN = timedelta(seconds=10)  # the lease outlasts a mint's connect and read timeouts
WINDOW = timedelta(minutes=10)
MINTS_PER_WINDOW = 5
WAIT = timedelta(seconds=20)  # how long a caller waits for another process's refresh
POLL = 0.25

# Zoho answers a refused refresh with HTTP 200 and {"error": ...}: say what to check.
REFUSALS = {
    "invalid_code": "zoho.refresh_token was refused (invalid_code): it is wrong or revoked, "
    "or it belongs to another data centre than zoho.accounts_url",
    "invalid_client": "zoho.client_id or zoho.client_secret was refused (invalid_client): "
    "check them, and that zoho.accounts_url is the data centre the client was registered in",
    "invalid_client_secret": "zoho.client_secret was refused (invalid_client_secret)",
    "Access Denied": "Zoho refused to mint another access token just now (too many requests); "
    "it will be tried again",
}


@dataclass(frozen=True)
class Credentials:
    accounts_url: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    api_domain: str | None
    expires_at: datetime
    refreshed_at: datetime

    def fresh(self, now: datetime) -> bool:
        return now < self.expires_at - EARLY

    def usable(self, now: datetime) -> bool:
        return now < self.expires_at


class TokenCache:
    """The shared access token; ``get()`` is thread-safe and cheap while the token is fresh.
    ``observer`` is told of every call to the accounts server; ``redact`` masks the error
    text kept in the shared row (the daemon's wiring passes the metrics and the redaction)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        box: SecretBox,
        http: requests.Session | None = None,
        timeout: float = 30,
        observer: calls.Observer = calls.unobserved,
        redact: Callable[[str], str] = str,  # str: kept as it is
    ):
        self.credentials = credentials
        self.key = f"{credentials.accounts_url.rstrip('/')}#{credentials.client_id}"
        self.box = box
        self.http = http or requests.Session()
        self.timeout = timeout
        self.observer = observer
        self.redact = redact
        # Held while minting; a process that dies frees it once its call has surely ended.
        self.lease = timedelta(seconds=2 * timeout) + LEASE_MARGIN
        self._memory: AccessToken | None = None
        self._lock = threading.Lock()

    def get(self) -> AccessToken:
        """A token valid for a while yet: from memory, from the database, or freshly minted
        here if this process wins the refresh lease. Raise Unreachable if none can be had."""
        with self._lock:
            now = clock.now()
            if self._memory is not None and self._memory.fresh(now):
                return self._memory
            self._memory = self._shared_or_refreshed(now)
            return self._memory

    def refresh(self) -> AccessToken:
        """Mint a new token now (``config check``); if another process holds the refresh lease,
        settle for what it minted."""
        with self._lock:
            now = clock.now()
            self._memory = self._refreshed_under_lease(
                now, force=True
            ) or self._shared_or_refreshed(now)
            return self._memory

    def invalidate(self, token: AccessToken) -> None:
        """Zoho refused ``token``: expire it for every daemon, unless already replaced."""
        with self._lock:
            self._memory = None
            with db.transaction():
                ZohoToken.update(expires_at=clock.now()).where(
                    (ZohoToken.client == self.key) & (ZohoToken.refreshed_at == token.refreshed_at)
                ).execute()

    def _shared_or_refreshed(self, now: datetime) -> AccessToken:
        shared = self._read()
        if shared is not None and shared.fresh(now):
            return shared
        try:
            token = self._refreshed_under_lease(now)
        except Unreachable as exc:
            if shared is None or not shared.usable(now):
                raise
            logger.warning(
                "an early Zoho token refresh failed; the current token serves until %s: %s",
                clock.rfc3339(shared.expires_at),
                exc,
                extra={"action": "zoho_token_refresh_failed"},
            )
            return shared
        if token is not None:
            return token
        # Read again: another process may have minted since (and let go of its lease).
        row = ZohoToken.get(ZohoToken.client == self.key)
        shared, now = self._token(row), clock.now()
        if shared is not None and shared.usable(now):
            return shared  # just minted, or another process is refreshing: still good
        if row.refresh_lease_until is not None and row.refresh_lease_until > now:
            return self._await_other(now)
        raise Unreachable(
            f"no Zoho access token: {MINTS_PER_WINDOW} were asked for in the last "
            f"{int(WINDOW.total_seconds() // 60)} minutes, the most t2ctl allows itself "
            f"(last error: {row.last_error or 'none'})"
        )

    def _refreshed_under_lease(self, now: datetime, *, force: bool = False) -> AccessToken | None:
        """Mint a token if this process takes the lease within the budget; else None. Unless
        ``force``d, a token another process minted since it was last read is taken instead."""
        with db.transaction():
            ZohoToken.insert(client=self.key, mints=[]).on_conflict_ignore().execute()
            row = db.locked(ZohoToken.select().where(ZohoToken.client == self.key)).get()
            recent = [t for t in row.mints if datetime.fromisoformat(t) > now - WINDOW]
            current = self._token(row)
            if not force and current is not None and current.fresh(now):
                return current
            held = row.refresh_lease_until is not None and row.refresh_lease_until > now
            if held or len(recent) >= MINTS_PER_WINDOW:
                return None
            lease = now + self.lease
            ZohoToken.update(refresh_lease_until=lease, mints=[*recent, now.isoformat()]).where(
                ZohoToken.id == row.id
            ).execute()
        held_by_us = (ZohoToken.id == row.id) & (ZohoToken.refresh_lease_until == lease)
        try:
            token = self._mint(now)
        except Unreachable as exc:
            with db.transaction():
                ZohoToken.update(last_error=self.redact(str(exc)), refresh_lease_until=None).where(
                    held_by_us
                ).execute()
            raise
        with db.transaction():
            ZohoToken.update(
                access_token=self.box.encrypt(token.value),
                api_domain=token.api_domain,
                expires_at=token.expires_at,
                refreshed_at=token.refreshed_at,
                last_error=None,
            ).where(ZohoToken.id == row.id).execute()
            ZohoToken.update(refresh_lease_until=None).where(held_by_us).execute()
        logger.info(
            "minted a Zoho access token, valid until %s",
            clock.rfc3339(token.expires_at),
            extra={"action": "zoho_token_minted"},
        )
        return token

    def _mint(self, now: datetime) -> AccessToken:
        c = self.credentials
        try:
            response = calls.timed(
                self.observer,
                "POST",
                TOKEN_PATH,
                lambda: self.http.post(
                    c.accounts_url.rstrip("/") + TOKEN_PATH,
                    data={
                        "refresh_token": c.refresh_token,
                        "client_id": c.client_id,
                        "client_secret": c.client_secret,
                        "grant_type": "refresh_token",
                    },
                    timeout=self.timeout,
                    allow_redirects=False,
                ),
            )
        except requests.RequestException as exc:
            raise Unreachable(
                f"Zoho accounts server {c.accounts_url} could not be reached ({type(exc).__name__})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise Unreachable(
                f"Zoho accounts server {c.accounts_url} answered {response.status_code} "
                "without JSON: is zoho.accounts_url right?"
            ) from None
        if not isinstance(body, dict) or not body.get("access_token"):
            error = str(body.get("error", "")) if isinstance(body, dict) else ""
            raise Unreachable(
                REFUSALS.get(
                    error, f"Zoho refused the token refresh ({error or response.status_code})"
                )
            )
        return AccessToken(
            value=body["access_token"],
            api_domain=body.get("api_domain"),
            expires_at=now + timedelta(seconds=int(body.get("expires_in", 3600))),
            refreshed_at=now,
        )

    def _read(self) -> AccessToken | None:
        row = ZohoToken.get_or_none(ZohoToken.client == self.key)
        return None if row is None else self._token(row)

    def _token(self, row: ZohoToken) -> AccessToken | None:
        """The row's token, or None if it has none or it cannot be decrypted (the master key
        changed): a token is cheap to mint again."""
        if row.access_token is None:
            return None
        try:
            value = self.box.decrypt(row.access_token)
        except T2Error:
            return None
        return AccessToken(
            value=value,
            api_domain=row.api_domain,
            expires_at=row.expires_at,
            refreshed_at=row.refreshed_at,
        )

    def _await_other(self, since: datetime) -> AccessToken:
        """Another process holds the lease and no usable token exists: wait for its result."""
        deadline = since + WAIT
        while clock.now() < deadline:
            time.sleep(POLL)
            shared = self._read()
            if shared is not None and shared.usable(clock.now()):
                return shared
        row = ZohoToken.get_or_none(ZohoToken.client == self.key)
        reason = row.last_error if row is not None and row.last_error else "no token yet"
        raise Unreachable(f"no Zoho access token is available: {reason}")
