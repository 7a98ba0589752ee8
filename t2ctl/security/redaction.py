"""Log redaction: the safety net that masks what must never reach a log line.

Code never logs a secret on purpose; this catches the ones that slip in through an exception
message, a URL or a remote server's answer. It masks emails and phone numbers (as tables do),
anything shaped like one of our API keys, webhook secrets, Fernet tokens or Zoho OAuth
tokens, credentials in URLs, ``Authorization`` values and ``secret=``/``"token": ...`` pairs,
and every configured secret by its exact value.
"""

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote

from t2ctl.security import masking

MASK = "***"
_PATTERNS: list[tuple[re.Pattern, str]] = [
    # our API keys keep their public id, so a log still says which key it was
    (re.compile(r"\bt2k_([0-9a-f]+)_[A-Za-z0-9_-]+"), r"t2k_\1_" + MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_" + MASK),
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), "gAAAAA" + MASK),  # Fernet tokens
    (re.compile(r"\b1000\.[0-9a-f]{16,}\.[0-9a-f]{16,}"), "1000." + MASK),  # Zoho OAuth tokens
    (re.compile(r"(?i)\b(bearer|zoho-oauthtoken)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
    (
        re.compile(
            r"(?i)((?:refresh_token|access_token|client_secret|secret|password|api[_-]?key|"
            r"token)[\"']?\s*[=:]\s*[\"']?)[^\"'&\s,;}]+"
        ),
        r"\1" + MASK,
    ),
]
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# E.164 (what the API accepts), and Nigerian numbers without the + or national (080..., 070...);
# not inside an id such as ORD-08031234567, nor a decimal; a full stop may end the sentence.
_PHONE = re.compile(
    r"(?<![\w.+/-])(?:\+[1-9]\d{7,14}|234[789][01]\d{8}|0[789][01]\d{8})(?!\w|\.\d)"
)


def _suspect(text: str) -> bool:
    """Whether any pattern above could match: each needs one of these substrings (a word
    of the ``(?i)`` ones in any case; "token" is in "zoho-oauthtoken", "api" in "api_key").
    Most text (an id, a route, a status) holds none, and is spared nine searches."""
    if (
        "@" in text
        or "%40" in text
        or "://" in text
        or "t2k_" in text
        or "whsec_" in text
        or "gAAAAA" in text
        or "1000." in text
    ):
        return True
    lowered = text.lower()
    return (
        "token" in lowered
        or "secret" in lowered
        or "password" in lowered
        or "bearer" in lowered
        or "api" in lowered
        # The phone pattern itself, not eight digits in a row: an orderId (T2-20261127-...)
        # or a request id often has those, and would pay for every search.
        or _PHONE.search(text) is not None
    )


_literals: tuple[str, ...] = ()  # longest first, so a secret inside another is not half-masked
MIN_LITERAL = 12  # shorter values would mask ordinary words (a password "postgres")


def protect(values: Iterable[str | None]) -> None:
    """Mask these exact values (configured secrets) wherever they appear from now on."""
    global _literals
    kept = {v for v in values if v and len(v) >= MIN_LITERAL}
    _literals = tuple(sorted(kept.union(_literals), key=len, reverse=True))


def redact(text: str) -> str:
    for literal in _literals:
        text = text.replace(literal, MASK)
    if not _suspect(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    # urllib3's debug lines quote a query string: ada%40example.ng is an address too
    text = _EMAIL.sub(lambda m: masking.email(unquote(m.group())), text)
    return _PHONE.sub(lambda m: masking.phone(m.group()), text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message, traceback and stack in place, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_t2ctl_redacted", False):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken log call must not break its caller
            message = f"{record.msg} {record.args}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._t2ctl_redacted = True
        return True


def install(handlers: Iterable[logging.Handler]) -> None:
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
