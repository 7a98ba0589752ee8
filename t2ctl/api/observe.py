"""Each request's id, access-log line and metrics.

``X-Request-ID`` is taken from the request when it is a sane token (a proxy or the partner
may set one to trace a call end to end), else made up; either way it is returned on the
response and carried by every log line written while the request runs.
"""

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from t2ctl.monitoring import logs, metrics

HEADER = "X-Request-ID"
# Any token is a method to waitress: a label per made-up one would grow the metrics forever.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SANE = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
access = logging.getLogger("t2ctl.access")


def init(app: Flask) -> None:
    """Install the hooks; call before any other ``before_request``, so that even a request
    refused by authentication has an id."""
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(_unbind)


def _begin() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if _SANE.match(given) else uuid.uuid4().hex
    g.started = time.monotonic()
    g.log_fields = logs.push(request_id=g.request_id)


def _end(response: Response) -> Response:
    response.headers[HEADER] = g.request_id
    seconds = time.monotonic() - g.started
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    status = response.status_code
    method = request.method if request.method in METHODS else "other"
    metrics.HTTP_REQUESTS.labels(route, method, str(status)).observe(seconds)
    # A balancer polls health every few seconds: its successes would drown the rest.
    level = logging.DEBUG if route.startswith("/t2mobile/health") and status < 400 else logging.INFO
    partner = g.partner.name if "partner" in g else None
    log_access(route, status, seconds, partner, level)
    return response


def log_access(
    route: str, status: int, seconds: float, partner: str | None, level: int = logging.INFO
) -> None:
    """The access line of the request being answered: one a request, with the ids bound."""
    access.log(
        level,
        '%s "%s %s" %s %.1fms',
        request.remote_addr,
        request.method,
        request.path,
        status,
        seconds * 1000,
        extra={
            "action": "http_request",
            "client": request.remote_addr,
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "partner": partner,
            "user_agent": request.user_agent.string or None,
        },
    )


def _unbind(_exc: BaseException | None) -> None:
    token = g.pop("log_fields", None)
    if token is not None:
        logs.pop(token)
