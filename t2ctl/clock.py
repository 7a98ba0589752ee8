"""The one source of time, and the formats time is written in.

Every timestamp inside t2ctl is a timezone-aware UTC ``datetime``; it becomes text only at a
face (API, CLI), always as RFC 3339 with a ``Z``.
"""

import re
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

_DURATION = re.compile(r"^\s*([0-9]+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SIZES = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))  # how durations are written


def now() -> datetime:
    """The current time, aware and in UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime | None) -> str | None:
    """``2026-11-27T09:00:00Z``: second precision, UTC, as the contract writes it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local(day: date, timezone: str, at: time = time()) -> datetime:
    """The moment the clocks of ``timezone`` (an IANA name) read ``at`` on ``day``, in UTC:
    a day of a schedule or a report, whatever the host's own zone is."""
    return datetime.combine(day, at, ZoneInfo(timezone)).astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``5m``, ``2h``, ``7d`` or ``1w``; else ValueError naming the form."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 2h, 7d or 1w")
    amount, unit = match.groups()
    return timedelta(**{_UNITS[unit]: int(amount)})


def format_duration(delta: timedelta) -> str:
    """The inverse of ``parse_duration``: exact, in the largest unit that divides it (``90m``,
    ``7d``), so a setting shown can be written back as it is. A day or so stays in hours
    (``24h``, ``36h``), as people and the docs say it."""
    seconds = int(delta.total_seconds())
    for unit, size in _SIZES:
        if unit == "d" and seconds < 2 * size:
            continue
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"  # zero


def approximate(delta: timedelta) -> str:
    """A duration for people, to its two largest units: ``45s``, ``12m 5s``, ``3d 4h``."""
    left = max(int(delta.total_seconds()), 0)
    parts: list[str] = []
    for unit, size in _SIZES:
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def parse_moment(text: str, *, reference: datetime | None = None) -> datetime:
    """A point in time for ``--since``: an RFC 3339 / ISO date(-time), or a duration ago."""
    try:
        return (reference or now()) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a date-time (2026-11-27T09:00:00Z, 2026-11-27) "
            "nor a duration ago (30m, 2h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


RETRY_AFTER_CAP = timedelta(days=1)


def retry_after(text: str | None) -> timedelta | None:
    """An HTTP ``Retry-After`` (seconds, or an HTTP date) as a wait of at most a day (a
    server may ask for a pause, not to be forgotten); None if absent or bad."""
    if not text:
        return None
    if text.strip().isdigit():
        return timedelta(seconds=min(int(text), RETRY_AFTER_CAP.total_seconds()))
    try:
        return min(max(timedelta(0), parsedate_to_datetime(text) - now()), RETRY_AFTER_CAP)
    except (TypeError, ValueError, OverflowError):
        return None


def retry_wait(asked: timedelta | None, backoff: timedelta) -> timedelta:
    """The wait before trying a server again: our backoff, or longer if its ``Retry-After``
    asked; never shorter, so a ``Retry-After: 0`` cannot turn retries into a hammering."""
    return backoff if asked is None else max(asked, backoff)
