"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from typing import Any

from pydantic.json_schema import models_json_schema

from t2ctl import values
from t2ctl.api import params, schemas
from t2ctl.db.models import ORDER_STATUSES
from t2ctl.webhooks import outbox

BASE = "/t2mobile"

_PROBLEMS = {
    400: "Malformed: the body is not valid JSON or gives a key twice in one object; a query "
    "parameter is unknown, given twice or invalid (`errors` names it); or the request line or "
    "a header is not valid HTTP.",
    401: "The API key is missing, unknown, expired or revoked.",
    403: "The client address is not in the partner's allow-list.",
    404: "No such order for this partner (an id outside the orderId pattern names none).",
    408: "The request had not arrived in full within the server's read timeout (30 s unless "
    "configured otherwise); the connection is closed.",
    409: "Nothing was changed. On a fulfilment: this orderId was already used with a "
    "different body (type `urn:t2ctl:problem:idempotency-conflict`). On a cancellation: the "
    "order cannot be cancelled, and `detail` says why: it FAILED, its cancellation window "
    "has passed, or a renewal builds on it (type `urn:t2ctl:problem:not-cancellable`).",
    413: "The body is larger than 64 KiB, on a route that reads one. One announced over 1 MiB "
    "is refused by the HTTP server before the API reads it, on any route (a GET's too).",
    415: "The body is not sent as application/json.",
    431: "The request line and headers are larger than the server takes (16 KiB unless "
    "configured otherwise); the connection is closed.",
    422: "The request is well-formed but invalid: see `errors`. Includes an unknown or inactive "
    "product and an amount that is not price × quantity.",
    429: "Over the rate limit (100 requests a minute per key unless agreed otherwise).",
    500: "An unexpected error; quote `errorId` to IconTech support.",
    503: "The database is unavailable; retry later.",
}
_AUTHED = (401, 403, 429, 500, 503)
# What the HTTP server itself may answer, before any route: every operation lists them.
_TRANSPORT = (400, 408, 413, 431)
# The project states no licence: the API is IconTech's own, offered to partners under their
# agreement. A LicenseRef- is SPDX's way to name a licence its list does not hold.
LICENSE = {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"}


def document(version: str) -> dict[str, Any]:
    """The whole document; every route of the API and every status it can answer."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "t2ctl partner API",
            "version": version,
            "license": LICENSE,
            "description": (
                "IconTech's API for T2Mobile: read the catalogue, submit fulfilment orders, "
                "read them back and list them, and catch up on events from the feed. Errors "
                "are RFC 9457 problem+json whose `type` is "
                "`urn:t2ctl:problem:<slug>`. A method a path does not list answers 405. "
                "Outcomes arrive as webhooks signed per the Standard Webhooks specification "
                "(see `webhooks`); a failed delivery (a 3xx included: redirects are not "
                "followed) is retried under the same webhook-id, by default after 5 s, 5 min, "
                "30 min, 2 h, 5 h, 10 h and 10 h, each ±20 %. Every response carries an "
                "`X-Request-ID` header: yours when you send one (1–128 of "
                "`A-Z a-z 0-9 . _ : / + = @ -`), else a new one; quote it to IconTech support."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "paths": _paths(),
        "webhooks": _webhooks(),
        "components": {
            "schemas": _schemas(),
            "responses": {str(code): _problem(code) for code in _PROBLEMS},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in schemas.SCHEMAS],
        ref_template="#/components/schemas/{model}",
    )
    return top["$defs"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _header(description: str, schema: dict | None = None) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


_RATE_HEADERS = {
    "X-RateLimit-Limit": _header("Requests allowed a minute for this key.", {"type": "integer"}),
    "X-RateLimit-Remaining": _header("Requests left in the window.", {"type": "integer"}),
    "X-RateLimit-Reset": _header("When the window resets (Unix time).", {"type": "integer"}),
}
_ETAG = {"ETag": _header("The catalogue's version; send it back in If-None-Match.")}


def _json(description: str, schema: str, headers: dict | None = None) -> dict[str, Any]:
    response = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _problem(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _PROBLEMS[code],
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
    if code == 401:
        response["headers"] = {"WWW-Authenticate": _header("The scheme to authenticate with.")}
    if code == 429:
        response["headers"] = {
            "Retry-After": _header("Seconds until a request may succeed.", {"type": "integer"}),
            **_RATE_HEADERS,
        }
    return response


def _problems(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{code}"} for code in codes}


def _paths() -> dict[str, Any]:
    """Every route: the public ones first (health, this document), then the partner's."""
    paths = {
        **_health(),
        **_openapi(),
        **_products(),
        **_fulfilment(),
        **_orders(),
        **_cancel(),
        **_events(),
    }
    for operations in paths.values():
        for operation in operations.values():
            operation["responses"].update(_problems(*_TRANSPORT))
    return paths


_TEXT = {"schema": {"type": "string"}}


def _public(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A GET that needs no API key: probes, this document and its page."""
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def _health() -> dict[str, Any]:
    return {
        f"{BASE}/health": _public(
            "health",
            "Up, database reachability, and the job queue.",
            {
                "200": _json("Up, database reachable.", "Health"),
                "503": _json("The database cannot be reached.", "Health"),
            },
        ),
        f"{BASE}/health/live": _public(
            "liveness",
            "Liveness: the process answers HTTP. Reads no database.",
            {"200": _json("Alive.", "Liveness")},
        ),
        f"{BASE}/health/ready": _public(
            "readiness",
            "Readiness: the database answers and its schema is current.",
            {
                "200": _json("Ready to take requests.", "Readiness"),
                "503": _json("Not ready: send traffic elsewhere meanwhile.", "Readiness"),
            },
        ),
    }


def _openapi() -> dict[str, Any]:
    document = {
        "description": "The OpenAPI 3.1 document.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    page = {
        "description": "Swagger UI, its assets served from here too (no CDN); Try it out takes "
        "your API key in Authorize.",
        "content": {"text/html": _TEXT},
    }
    return {
        f"{BASE}/openapi.json": _public("openapi", "This document.", {"200": document}),
        f"{BASE}/docs": _public(
            "apiReference", "This document as a page to read and try.", {"200": page}
        ),
    }


def _products() -> dict[str, Any]:
    headers = {**_ETAG, **_RATE_HEADERS}
    return {
        f"{BASE}/products": {
            "get": {
                "operationId": "listProducts",
                "summary": "The active products.",
                "parameters": [{"name": "If-None-Match", "in": "header", **_TEXT}],
                "responses": {
                    "200": _json("The catalogue.", "ProductList", headers),
                    "304": {
                        "description": "Unchanged since the ETag in If-None-Match; no body.",
                        "headers": headers,
                    },
                    **_problems(*_AUTHED),
                },
            }
        }
    }


def _fulfilment() -> dict[str, Any]:
    return {
        f"{BASE}/fulfilment": {
            "post": {
                "operationId": "submitFulfilment",
                "summary": "Submit an order; idempotent by orderId.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("FulfilmentRequest")}},
                },
                "responses": {
                    **_submitted(),
                    **_problems(400, 409, 413, 415, 422, *_AUTHED),
                },
            }
        }
    }


def _submitted() -> dict[str, Any]:
    """202 for a new order; 200 for a replay of the same body (idempotency)."""
    replayed = {"Idempotent-Replayed": _header("Always true.", {"const": "true"})}
    return {
        "202": _json(
            "Accepted; it will be processed.",
            "Order",
            {"Location": _header("Where to poll the order."), **_RATE_HEADERS},
        ),
        "200": _json(
            "Already submitted with this body: the current order, unchanged.",
            "Order",
            {**replayed, **_RATE_HEADERS},
        ),
    }


_ORDER_ID = {
    "name": "orderId",
    "in": "path",
    "required": True,
    "description": "Percent-encode an orderId . or .. (%2E, %2E%2E): clients drop such a "
    "path segment. The Location of a 202 does.",
    "schema": {"type": "string", "pattern": values.ID_PATTERN},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


_LIMIT = _query(
    "limit",
    "How many items a page holds.",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": params.MAX_LIMIT,
        "default": params.DEFAULT_LIMIT,
    },
)
_LISTING = "Unknown query parameters, and a parameter given twice, are refused (400)."


def _orders() -> dict[str, Any]:
    moment = {"type": "string", "format": "date-time"}
    return {
        f"{BASE}/orders": {
            "get": {
                "operationId": "listOrders",
                "summary": "Your orders, newest first, a page at a time.",
                "description": "Every order appears exactly once across the pages, even while "
                f"new orders arrive (they sort before the first page). {_LISTING}",
                "parameters": [
                    _query(
                        "status",
                        "Only orders in this status.",
                        {"type": "string", "enum": list(ORDER_STATUSES)},
                    ),
                    _query("since", "Only orders created at or after this moment.", moment),
                    _query("until", "Only orders created before this moment.", moment),
                    _LIMIT,
                    _query(
                        "cursor",
                        "The previous page's nextCursor, as it is; keep the other parameters.",
                        {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                    ),
                ],
                "responses": {
                    "200": _json("A page of orders.", "OrderPage", _RATE_HEADERS),
                    **_problems(*_AUTHED),
                },
            }
        },
        f"{BASE}/orders/{{orderId}}": {
            "get": {
                "operationId": "getOrder",
                "summary": "One of your orders.",
                "parameters": [_ORDER_ID],
                "responses": {
                    "200": _json("The order.", "Order", _RATE_HEADERS),
                    **_problems(404, *_AUTHED),
                },
            }
        },
    }


def _events() -> dict[str, Any]:
    return {
        f"{BASE}/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Your events, oldest first: what your webhooks carry, to catch up.",
                "description": "Every event recorded for you, whether its webhook was delivered "
                f"yet or not; `id` is its webhook-id. {_LISTING}",
                "parameters": [
                    _query(
                        "after",
                        "An event's id: only events after it. One you have no event of is 400.",
                        {"type": "string", "pattern": values.ID_PATTERN},
                    ),
                    _query(
                        "type",
                        "Only events of this type.",
                        {"type": "string", "enum": list(outbox.EVENTS)},
                    ),
                    _LIMIT,
                ],
                "responses": {
                    "200": _json("A page of events.", "EventPage", _RATE_HEADERS),
                    **_problems(*_AUTHED),
                },
            }
        }
    }


def _cancel() -> dict[str, Any]:
    return {
        f"{BASE}/orders/{{orderId}}/cancel": {
            "post": {
                "operationId": "cancelOrder",
                "summary": "Cancel one of your orders (a refund, a reversed payment).",
                "description": "A PENDING order is CANCELLED at once (200). A PROCESSING one is "
                "cancelled as soon as its provisioning ends, undoing what it made (202). A "
                "FULFILLED one, within the cancellation window after fulfilment (7 days unless "
                "agreed), has its sales order voided, then is CANCELLED and its subscription "
                "ended, or for a renewal shortened by the renewal's term (202). An order "
                "already CANCELLED answers 200, one whose cancellation is under way 202, "
                "changing nothing (the first reason stays). Every cancellation ends with an "
                "order.cancelled webhook.",
                "parameters": [_ORDER_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CancelRequest")}},
                },
                "responses": {
                    "200": _json("CANCELLED.", "Order", _RATE_HEADERS),
                    "202": _json(
                        "Cancellation under way: `cancellation.cancelledAt` is null until the "
                        "order is CANCELLED and the order.cancelled webhook is sent.",
                        "Order",
                        _RATE_HEADERS,
                    ),
                    **_problems(404, 409, 413, 415, 422, *_AUTHED),
                },
            }
        }
    }


_WEBHOOK_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The delivery's id (msg_…): the same on every retry and resend of it; "
        "drop repeats by it.",
        "schema": {"type": "string"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "When this attempt was sent, in Unix seconds; refuse one more than five "
        "minutes from your clock.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "`v1,<base64 HMAC-SHA256>` of `id.timestamp.body` under your webhook "
        "secret; several, space-separated, while a secret rotation's grace runs. Verify "
        "with a Standard Webhooks library.",
        "schema": {"type": "string"},
    },
]
_WEBHOOK_RESPONSES = {
    "2XX": {
        "description": "Received. Answer within the timeout (10 s unless agreed); "
        "anything else is retried."
    },
    "410": {"description": "Gone: stops the retries of this delivery."},
    "429": {"description": "Retried, after Retry-After when that is later than the schedule."},
    "503": {"description": "Retried, after Retry-After when that is later than the schedule."},
}
_EVENTS = {
    "order.fulfilled": ("OrderEvent", "An order was fulfilled."),
    "order.failed": ("OrderEvent", "An order failed; data.error says why."),
    "order.cancelled": (
        "OrderEvent",
        "An order was cancelled; data.cancellation says when and why. Its sales order, if it "
        "had one, is void, and its subscription ended or shortened.",
    ),
    "subscription.expiring": (
        "SubscriptionEvent",
        "A subscription expires within schedule.reminder_days (7 unless agreed).",
    ),
    "subscription.expired": ("SubscriptionEvent", "A subscription has expired."),
}


def _webhooks() -> dict[str, Any]:
    """What we POST to the partner's webhook URL, one entry per event type."""
    return {
        event: {
            "post": {
                "operationId": event.replace(".", "_"),
                "summary": summary,
                "parameters": _WEBHOOK_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(schema)}},
                },
                "responses": _WEBHOOK_RESPONSES,
                "security": [],
            }
        }
        for event, (schema, summary) in _EVENTS.items()
    }
