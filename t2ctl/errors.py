"""The one exception family of t2ctl.

Services raise these; each face maps them once: ``api/errors.py`` to problem+json statuses,
``cli/main.py`` to exit codes. A driver error becomes one of these, with ``from exc``, in the
module that understands what it means.
"""

from dataclasses import dataclass
from typing import Any

# The ``type`` slug of a problem answered for an HTTP status rather than a domain error, by the
# API (``api/errors.py``) and by the HTTP server itself (``httpserver``), which answer alike.
HTTP_SLUGS = {
    400: "malformed-request",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    431: "headers-too-large",
    500: "internal",
}


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document as t2ctl sends every error: ``type`` is
    ``urn:t2ctl:problem:<slug>``; ``extra`` adds members such as ``errors`` or ``errorId``."""
    return {
        "type": f"urn:t2ctl:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


def internal_problem(error_id: str) -> dict[str, Any]:
    """The problem for an unexpected failure: only the ``errorId`` that the log holds beside
    the cause, never the cause itself (no stack trace, SQL or secret)."""
    return problem(
        500,
        "internal",
        "Internal error",
        "Something went wrong on our side; quote the errorId to IconTech support.",
        errorId=error_id,
    )


@dataclass(frozen=True)
class FieldError:
    """One invalid input: a dotted field path (``customer.email``) and what is wrong with it."""

    field: str
    message: str


class T2Error(Exception):
    """Base of every error t2ctl raises on purpose. ``str()`` is safe to show to anyone."""

    title = "Internal error"


class NotFound(T2Error):
    title = "Not found"


class Conflict(T2Error):
    title = "Conflict"


class NotCancellable(T2Error):
    """The order cannot be cancelled (FAILED, past the window, renewed on): says why."""

    title = "Not cancellable"


class Unauthorized(T2Error):
    title = "Unauthorized"


class Forbidden(T2Error):
    title = "Forbidden"


class Unavailable(T2Error):
    title = "Service unavailable"


class ValidationFailed(T2Error):
    """Input that parsed but broke a rule; carries every problem found, not just the first."""

    title = "Validation failed"

    def __init__(self, errors: list[FieldError], detail: str = "The request has invalid fields."):
        super().__init__(detail)
        self.errors = errors


class InvalidParameter(ValidationFailed):
    """A query parameter that cannot be used (unknown, repeated or out of its range): the
    request is malformed rather than invalid, so the API answers 400, naming the parameter."""

    title = "Invalid parameter"

    def __init__(self, name: str, message: str):
        super().__init__([FieldError(name, message)], f"The query parameter `{name}` {message}.")


class ConfigError(T2Error):
    """Configuration that cannot be used; each problem names its key and, for env, the variable."""

    title = "Invalid configuration"

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class ConfigNotFound(ConfigError, NotFound):
    """The config file named by ``--config`` or ``T2CTL_CONFIG`` does not exist."""
