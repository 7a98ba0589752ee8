"""Every error the API sends is an RFC 9457 problem; this is the one place that maps them.

A 500 carries an ``errorId`` that is also in the log beside the traceback; the body never
holds a stack trace, SQL, or a secret.
"""

import logging
import uuid
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from t2ctl import db, errors

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

_STATUS = {
    errors.ValidationFailed: (422, "validation"),
    errors.InvalidParameter: (400, "invalid-parameter"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.Forbidden: (403, "forbidden"),
    errors.NotFound: (404, "not-found"),
    errors.Conflict: (409, "idempotency-conflict"),
    errors.NotCancellable: (409, "not-cancellable"),
    errors.Unavailable: (503, "unavailable"),
}


def problem(status: int, slug: str, title: str, detail: str, **extra) -> Response:
    return _answer(errors.problem(status, slug, title, detail, **extra))


def _answer(document: dict[str, Any]) -> Response:
    response = jsonify(document)
    response.status_code = document["status"]
    response.mimetype = MEDIA_TYPE
    return response


def register(app: Flask) -> None:
    app.register_error_handler(errors.T2Error, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    for driver_error in db.DRIVER_ERRORS:
        app.register_error_handler(driver_error, _database_error)
    app.register_error_handler(Exception, _unexpected)


def _domain_error(exc: errors.T2Error) -> Response:
    if type(exc) not in _STATUS:
        return _unexpected(exc)
    status, slug = _STATUS[type(exc)]
    extra = {}
    if isinstance(exc, errors.ValidationFailed):
        extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
    response = problem(status, slug, exc.title, str(exc), **extra)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="t2mobile"'
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        return _unexpected(exc)
    response = problem(
        status, errors.HTTP_SLUGS.get(status, "http-error"), exc.name, exc.description or exc.name
    )
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _database_error(exc: Exception) -> Response:
    # The driver's first line tells the operator why (locked, disk full, refused, shut
    # down); the client gets none of it.
    reason = next(iter(str(exc).strip().splitlines()), "")[:200]
    logger.warning(
        "database unavailable: %s: %s",
        type(exc).__name__,
        reason,
        extra={"action": "db_error"},
    )
    return _domain_error(errors.Unavailable("The database is unavailable; retry later."))


def _unexpected(exc: BaseException) -> Response:
    error_id = uuid.uuid4().hex
    logger.error(
        "unhandled error %s",
        error_id,
        exc_info=exc,
        extra={"action": "unhandled_error", "error_id": error_id},
    )
    return _answer(errors.internal_problem(error_id))
