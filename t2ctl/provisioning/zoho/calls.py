"""How the Zoho client and token cache report each HTTP call without knowing who listens:
the daemon's wiring hands them an observer (the metrics), tests and the CLI may not."""

import time
from collections.abc import Callable

import requests

Observer = Callable[[str, str, str, float], None]
"""Told of each call: method, path, HTTP status (``error`` when none came back), seconds."""


def unobserved(_method: str, _path: str, _status: str, _seconds: float) -> None:
    """The observer of a client nobody watches."""


def timed(
    observer: Observer, method: str, path: str, send: Callable[[], requests.Response]
) -> requests.Response:
    """``send()`` one request, and tell ``observer`` how it went and how long it took."""
    started, status = time.monotonic(), "error"
    try:
        response = send()
        status = str(response.status_code)
        return response
    finally:
        observer(method, path, status, time.monotonic() - started)
