"""Query parameters as the listing routes read them: each known, given once and valid, or a
400 naming it (``errors.InvalidParameter``), so a typo or an ambiguity never passes silently."""

import base64
import binascii
import re
from collections.abc import Collection
from datetime import UTC, datetime

from flask import request

from t2ctl.errors import InvalidParameter
from t2ctl.orders.records import Position

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# RFC 3339's date-time (section 5.6): an offset or Z is required, as on the wire a moment
# without one means nothing definite.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# A cursor's text before base64url: the last order's creation time, exact to the microsecond
# and in UTC, and its row id (a PostgreSQL bigint at most).
_POSITION = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,15}\+00:00)\|([1-9][0-9]{0,17})")


def query(*known: str) -> dict[str, str]:
    """The request's query parameters, refusing one the route does not know or one given
    twice (a proxy or a log may read the first where another reads the last)."""
    for name in request.args:
        if name not in known:
            raise InvalidParameter(name, f"is not known here; use {', '.join(known)}")
        if len(request.args.getlist(name)) > 1:
            raise InvalidParameter(name, "is given more than once")
    return request.args.to_dict()


def limit(given: dict[str, str]) -> int:
    """``limit``: how many items a page holds, 1 to MAX_LIMIT, DEFAULT_LIMIT when absent."""
    text = given.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidParameter("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


def choice(given: dict[str, str], name: str, choices: Collection[str]) -> str | None:
    """A parameter that is one of ``choices``, or None when absent."""
    text = given.get(name)
    if text is not None and text not in choices:
        raise InvalidParameter(name, f"must be one of {', '.join(choices)}")
    return text


def moment(given: dict[str, str], name: str) -> datetime | None:
    """An RFC 3339 date-time with an offset or Z, in UTC; None when absent."""
    text = given.get(name)
    if text is None:
        return None
    if _RFC3339.fullmatch(text):
        # fromisoformat takes at most six fractional digits; beyond a microsecond is noise.
        text = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", text).upper().replace("Z", "+00:00")
        try:
            return datetime.fromisoformat(text).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise InvalidParameter(name, "must be an RFC 3339 date-time such as 2026-11-27T09:00:00Z")


def cursor(position: Position) -> str:
    """The opaque ``nextCursor`` for a page that ended at ``position``."""
    text = f"{position.created_at.astimezone(UTC).isoformat()}|{position.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def position(given: dict[str, str]) -> Position | None:
    """``cursor``: the position a ``cursor(...)`` of an earlier page gave; None when absent."""
    text = given.get("cursor")
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        match = _POSITION.fullmatch(raw.decode("ascii"))
        if match and re.fullmatch(r"[A-Za-z0-9_-]+", text):
            return Position(datetime.fromisoformat(match[1]), int(match[2]))
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        pass
    raise InvalidParameter("cursor", "is not one this API gave: pass a page's nextCursor as it is")
