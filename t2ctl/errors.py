"""The one exception family of t2ctl.

Services raise these; each face maps them once: ``api/errors.py`` to problem+json statuses,
``cli/main.py`` to exit codes. A driver error becomes one of these, with ``from exc``, in the
module that understands what it means.
"""

from dataclasses import dataclass


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


class ConfigError(T2Error):
    """Configuration that cannot be used; each problem names its key and, for env, the variable."""

    title = "Invalid configuration"

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems
