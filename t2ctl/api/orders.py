"""Orders, for partners: submit a fulfilment, cancel it, read an order back, list them."""

import json
import math
from typing import Any, TypeVar

from flask import Blueprint, g, jsonify, request, url_for
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from t2ctl.api import params, schemas, state
from t2ctl.db.models import ORDER_STATUSES
from t2ctl.errors import FieldError, ValidationFailed
from t2ctl.monitoring import logs
from t2ctl.orders import cancellation, intake, records

bp = Blueprint("orders", __name__)
Body = TypeVar("Body", bound=BaseModel)


@bp.post("/fulfilment")
def submit_fulfilment():
    body = _fulfilment_body()
    submission = intake.submit(g.partner, body.to_request(), box=state().box)
    logs.push(order_id=submission.order.order_id)  # on the access line: one line an order
    response = jsonify(records.public(submission.order))
    if submission.created:
        response.status_code = 202
        response.headers["Location"] = _location(submission.order.order_id)
    else:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.post("/orders/<order_id>/cancel")
def cancel_order(order_id: str):
    """200 once CANCELLED (at once for a PENDING order, or already); 202 while under way."""
    order = records.get(g.partner, order_id)
    body = parse_body(_json_body(), schemas.CancelRequest)
    outcome = cancellation.request(order, body.reason, window=state().settings.orders.cancel_window)
    response = jsonify(records.public(outcome.order))
    response.status_code = 200 if outcome.done else 202
    return response


@bp.get("/orders/<order_id>")
def get_order(order_id: str):
    return jsonify(records.public(records.get(g.partner, order_id)))


@bp.get("/orders")
def list_orders():
    given = params.query("status", "since", "until", "limit", "cursor")
    found = records.page(
        g.partner,
        status=params.choice(given, "status", ORDER_STATUSES),
        since=params.moment(given, "since"),
        until=params.moment(given, "until"),
        after=params.position(given),
        limit=params.limit(given),
    )
    return jsonify(
        {
            "data": [records.public(order) for order in found.orders],
            "nextCursor": None if found.next is None else params.cursor(found.next),
        }
    )


def _location(order_id: str) -> str:
    """Where the order is read. An orderId ``.`` or ``..`` is a dot segment, which clients
    remove from a URL's path (RFC 3986, 5.2.4), so it is percent-encoded."""
    path = url_for("orders.get_order", order_id=order_id)
    if order_id in (".", ".."):
        path = f"{path.rsplit('/', 1)[0]}/{order_id.replace('.', '%2E')}"
    return path


def _fulfilment_body() -> schemas.FulfilmentRequest:
    return parse_body(_json_body(), schemas.FulfilmentRequest)


def _json_body() -> bytes:
    """The body's bytes: 415 if not sent as JSON, 413 if too large."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the body as Content-Type: application/json.")
    return request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413


def parse_body(raw: bytes, model: type[Body]) -> Body:
    """A body from its bytes: BadRequest (400) if it is not JSON or repeats a key,
    ValidationFailed (422, naming every invalid field) if it breaks ``model``."""
    try:
        data = json.loads(
            raw, object_pairs_hook=_unique_keys, parse_constant=_not_json, parse_float=_finite
        )
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise BadRequest("The body is not valid JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [FieldError(f, m) for f, m in schemas.field_errors(exc.errors())]
        raise ValidationFailed(problems) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice is ambiguous: a proxy or the partner's own logs may read the first
    where a plain ``dict`` keeps the last, so refuse it rather than guess."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise BadRequest(f"The body gives the key {json.dumps(key)} twice in one object.")
        data[key] = value
    return data


def _not_json(name: str) -> None:
    """NaN and Infinity are not JSON; Python's parser accepts them unless told not to."""
    raise ValueError(name)


def _finite(text: str) -> float:
    """``1e400`` would become infinity, which cannot be stored or sent back as JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value
