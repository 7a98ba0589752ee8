"""Partner API keys: random, prefixed, shown once, stored only as SHA-256.

A key reads ``t2k_<keyId>_<secret>``. The key id is public (lists, audit, revoke); the whole
key is high-entropy, so a plain SHA-256 is enough to store it and look it up by hash.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from t2ctl import clock, db
from t2ctl.db.models import ApiKey, Partner
from t2ctl.errors import NotFound, Unauthorized

PREFIX = "t2k_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
TEST_KEY_LIFETIME = timedelta(minutes=5)  # beyond the wait of `orders submit --test`


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only moment its plain text exists."""

    key_id: str
    api_key: str
    partner: str


def key_id(api_key: str) -> str | None:
    """The public id inside a key of ours, or None for anything else."""
    body = api_key.removeprefix(PREFIX)
    return body.partition("_")[0] if body != api_key and "_" in body else None


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def issue(partner: Partner, *, expires_at: datetime | None = None) -> IssuedKey:
    """Create a key for ``partner``; the caller shows ``api_key`` once and never stores it."""
    key_id = secrets.token_hex(6)
    api_key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with db.transaction():
        ApiKey.create(
            key_id=key_id,
            partner=partner,
            key_hash=digest(api_key),
            created_at=clock.now(),
            expires_at=expires_at,
        )
    return IssuedKey(key_id, api_key, partner.name)


@dataclass(frozen=True)
class Rotation:
    """A rotation's new key, and the keys that stop working at ``expires_old``."""

    issued: IssuedKey
    expires_old: datetime
    old_key_ids: list[str]


def rotate(partner: Partner, *, grace: timedelta) -> Rotation:
    """Issue a new key and make every other live key of the partner expire after ``grace``
    (none stays later; one already due sooner keeps its earlier end). The partner switches
    over within the grace; ``revoke`` is for a leak."""
    ends = clock.now() + grace
    with db.transaction():
        # Rotations of one partner take turns, so each sees the key the last one issued.
        db.locked(Partner.select().where(Partner.id == partner.id)).get()
        live = (
            (ApiKey.partner == partner.id)
            & ApiKey.revoked_at.is_null()
            & (ApiKey.expires_at.is_null() | (ApiKey.expires_at > ends))
        )
        old = [key.key_id for key in db.locked(ApiKey.select().where(live))]
        ApiKey.update(expires_at=ends).where(ApiKey.key_id.in_(old)).execute()
        issued = issue(partner)
    return Rotation(issued, ends, old)


_BY_HASH = db.Prepared(
    lambda key_hash: (
        ApiKey.select(ApiKey, Partner).join(Partner).where(ApiKey.key_hash == key_hash)
    ),
    1,
)


def authenticate(api_key: str) -> ApiKey:
    """The live key matching ``api_key``, with its partner; Unauthorized otherwise."""
    now = clock.now()
    key = _BY_HASH.first(digest(api_key))
    if key is None or key.revoked_at is not None or (key.expires_at and key.expires_at <= now):
        raise Unauthorized("The API key is missing, unknown, expired or revoked.")
    return key


def touch(key: ApiKey, now: datetime) -> None:
    """Record use, at most once a minute per key, so a busy key costs no write per request."""
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    with db.transaction():
        ApiKey.update(last_used_at=now).where(ApiKey.id == key.id).execute()


def revoke(key_id: str) -> ApiKey:
    """Revoke at once; a revoked key stays listed so the audit trail keeps its id."""
    with db.transaction():
        key = ApiKey.get_or_none(ApiKey.key_id == key_id)
        if key is None:
            raise NotFound(f"no API key with id {key_id!r}")
        if key.revoked_at is None:
            key.revoked_at = clock.now()
            key.save()
    return key


def listing(partner: Partner | None = None) -> list[ApiKey]:
    query = ApiKey.select(ApiKey, Partner).join(Partner).order_by(ApiKey.created_at.desc())
    if partner is not None:
        query = query.where(ApiKey.partner == partner)
    return list(query)


def state(key: ApiKey, now: datetime | None = None) -> str:
    now = now or clock.now()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"
