"""Partners: who may call the API, where their webhooks go, and their limits."""

import base64
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import peewee

from t2ctl import clock, db
from t2ctl.db.models import Partner, RetiredWebhookSecret
from t2ctl.errors import Conflict, FieldError, NotFound, ValidationFailed
from t2ctl.security import apikeys
from t2ctl.security.crypto import SecretBox

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
RATE_PATTERN = re.compile(r"^\s*([0-9]+)\s*/\s*(?:minute|min|m)\s*$")


@dataclass(frozen=True)
class NewPartner:
    """A partner just created, with its first credentials in plain text, to be shown once."""

    partner: Partner
    key: apikeys.IssuedKey
    webhook_secret: str


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def add(name: str, webhook_url: str, *, box: SecretBox, sandbox: bool) -> NewPartner:
    """Create a partner with its first API key and webhook secret, in one transaction."""
    problems = _check_name(name) + _check_webhook_url(webhook_url, sandbox=sandbox)
    if problems:
        raise ValidationFailed(problems, "The partner is not valid.")
    secret = new_webhook_secret()
    now = clock.now()
    try:
        with db.transaction():
            partner = Partner.create(
                name=name,
                webhook_url=webhook_url,
                webhook_secret=box.encrypt(secret),
                allowed_ips=[],
                created_at=now,
                updated_at=now,
            )
            key = apikeys.issue(partner)
    except peewee.IntegrityError as exc:
        if Partner.get_or_none(Partner.name == name) is None:
            raise
        raise Conflict(f"a partner named {name!r} already exists") from exc
    return NewPartner(partner, key, secret)


def rotate_webhook_secret(name: str, *, grace: timedelta, box: SecretBox) -> str:
    """Give the partner a new webhook secret and return it (to be shown once). The current
    one goes on signing beside it until ``grace`` has passed, so the receiver can switch
    without rejecting a delivery. Older secrets still in a grace stop by then too: a grace
    of zero leaves the new secret alone, as after a leak."""
    if grace < timedelta(0):
        raise ValidationFailed([FieldError("grace", "must not be negative")], "Nothing changed.")
    secret = new_webhook_secret()
    now = clock.now()
    with db.transaction():
        partner = db.locked(Partner.select().where(Partner.name == name)).first()
        if partner is None:
            raise NotFound(f"no partner named {name!r}")
        mine = RetiredWebhookSecret.partner == partner.id
        RetiredWebhookSecret.update(signs_until=now + grace).where(
            mine & (RetiredWebhookSecret.signs_until > now + grace)
        ).execute()
        RetiredWebhookSecret.delete().where(
            mine & (RetiredWebhookSecret.signs_until <= now)
        ).execute()
        if grace > timedelta(0):
            RetiredWebhookSecret.create(
                partner=partner.id,
                secret=partner.webhook_secret,
                retired_at=now,
                signs_until=now + grace,
            )
        partner.webhook_secret = box.encrypt(secret)
        partner.updated_at = now
        partner.save()
    return secret


def get(name: str) -> Partner:
    partner = Partner.get_or_none(Partner.name == name)
    if partner is None:
        raise NotFound(f"no partner named {name!r}")
    return partner


def listing() -> list[Partner]:
    return list(Partner.select().order_by(Partner.name))


def update(
    name: str,
    *,
    sandbox: bool,
    webhook_url: str | None = None,
    allow_ips: list[str] | None = None,
    rate_limit: str | None = None,
) -> Partner:
    """Change what is given and leave the rest; validate everything before writing anything."""
    problems: list[FieldError] = []
    if webhook_url is not None:
        problems += _check_webhook_url(webhook_url, sandbox=sandbox)
    networks = _parse_networks(allow_ips or [], problems)
    per_minute = _parse_rate(rate_limit, problems) if rate_limit is not None else None
    if problems:
        raise ValidationFailed(problems, "The change is not valid; nothing was changed.")
    with db.transaction():
        partner = get(name)
        if webhook_url is not None:
            partner.webhook_url = webhook_url
        if allow_ips is not None:
            partner.allowed_ips = networks
        if rate_limit is not None:
            partner.rate_limit_per_minute = per_minute
        partner.updated_at = clock.now()
        partner.save()
    return partner


def address_allowed(partner: Partner, address: str) -> bool:
    """True when the partner has no allow-list or ``address`` falls in one of its CIDRs."""
    if not partner.allowed_ips:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr) for cidr in partner.allowed_ips)


def _check_name(name: str) -> list[FieldError]:
    if NAME_PATTERN.fullmatch(name):  # match() would let a final newline through
        return []
    return [FieldError("name", "use 1-64 lower-case letters, digits, '.', '_' or '-'")]


def _check_webhook_url(url: str, *, sandbox: bool) -> list[FieldError]:
    parts = urlsplit(url)
    allowed = ("https",) if not sandbox else ("http", "https")
    if parts.scheme not in allowed or not parts.hostname:
        need = "an https URL" if not sandbox else "an http or https URL"
        return [FieldError("webhook_url", f"must be {need} (outside sandbox mode only https)")]
    return []


def _parse_networks(values: list[str], problems: list[FieldError]) -> list[str]:
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            problems.append(FieldError("allow_ip", f"{value!r} is not an IP address or CIDR"))
    return networks


def _parse_rate(value: str, problems: list[FieldError]) -> int | None:
    """``N/minute``, or ``default`` for server.rate_limit_per_minute (stored as None)."""
    if value.strip().lower() == "default":
        return None
    match = RATE_PATTERN.match(value)
    if not match or int(match.group(1)) < 1:
        problems.append(FieldError("rate_limit", f"{value!r} is not like 100/minute or default"))
        return None
    return int(match.group(1))
