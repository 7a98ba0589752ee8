"""The fulfilment body's validator, by its properties: every valid body is accepted exactly as
sent; a body spoiled in one field is refused naming that field; any JSON or any bytes at all
is accepted or refused with a 400 or 422, never an unhandled exception. Run on the validator
itself (fast, many examples), then fewer over real HTTP against a real server."""

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import BadRequest

from t2ctl.api.orders import parse_body
from t2ctl.api.schemas import FulfilmentRequest
from t2ctl.errors import ValidationFailed
from t2ctl.values import Money
from tests.conftest import LiveServer
from tests.test_webhooks import partner_to

FIELDS = ["orderId", "productId", "quantity", "customer", "amount", "renewalOf", "metadata"]
PRICES = {"M365-BASIC-12M": "15000.00", "NORTON-1Y": "9999.99"}  # tests.conftest.CATALOGUE

IDS = st.from_regex(r"[A-Za-z0-9._:\-]{1,64}", fullmatch=True)
# Anything UTF-8 can carry but control characters: emoji, combining marks, bidi, CJK...
PRINTABLE = st.characters(codec="utf-8", exclude_categories=["Cc"])
UNICODE = st.text(st.characters(codec="utf-8"), max_size=30)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | UNICODE
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | UNICODE, inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A body the API must accept, priced from the test catalogue so intake accepts it too."""
    product_id = draw(st.sampled_from(sorted(PRICES)))
    quantity = draw(st.integers(1, 1000))
    customer = {
        "id": draw(st.text(PRINTABLE, min_size=1, max_size=64)),
        "name": draw(st.text(PRINTABLE, min_size=1, max_size=200)),
        "email": draw(st.emails().filter(lambda address: len(address) <= 254)),
    }
    if draw(st.booleans()):
        customer["phone"] = draw(st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True))
    body = {
        "orderId": draw(IDS),
        "productId": product_id,
        "quantity": quantity,
        "customer": customer,
        "amount": Money.parse(PRICES[product_id], "NGN").times(quantity).public(),
    }
    if draw(st.booleans()):
        body["metadata"] = draw(st.dictionaries(UNICODE, SCALARS, max_size=4))
    return body


# Where a body can be spoiled, and what the errors must then name.
SPOILABLE = [
    *FIELDS,
    "customer.id",
    "customer.name",
    "customer.email",
    "customer.phone",
    "amount.value",
    "amount.currency",
    "typo",  # a field nobody knows
    "customer.typo",
]
MISSING = object()


def spoil(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    spoiled = json.loads(json.dumps(body))
    *parents, leaf = path.split(".")
    target = spoiled
    for part in parents:
        target = target[part]
    if value is MISSING:
        target.pop(leaf, None)
    else:
        target[leaf] = value
    return spoiled


def accepted_as_sent(body: dict[str, Any]) -> None:
    request = parse_body(json.dumps(body).encode(), FulfilmentRequest).to_request()
    customer = body["customer"]
    assert (request.order_id, request.product_id, request.quantity) == (
        body["orderId"],
        body["productId"],
        body["quantity"],
    )
    assert (request.customer_id, request.customer_name, request.customer_email) == (
        customer["id"],
        customer["name"],
        customer["email"],
    )
    assert request.customer_phone == customer.get("phone")
    assert request.amount.public() == body["amount"]
    # Exact to the type: 1 is not 1.0 and True is not 1 in a replay's comparison.
    assert json.dumps(request.metadata) == json.dumps(body.get("metadata"))


def refused_cleanly(raw: bytes) -> list[tuple[str, str]]:
    """Parse ``raw``; return the (field, message) pairs it was refused for, [] if accepted.
    Anything but an accepted body, a 400 or a 422 escapes and fails the test."""
    try:
        parse_body(raw, FulfilmentRequest).to_request()
    except BadRequest as exc:
        assert exc.code == 400 and exc.description
        return [("body", exc.description)]
    except ValidationFailed as exc:
        assert exc.errors
        return [(e.field, e.message) for e in exc.errors]
    return []


@settings(max_examples=150)
@given(body=valid_bodies())
def test_every_valid_body_is_accepted_exactly_as_sent(body: dict[str, Any]) -> None:
    accepted_as_sent(body)


@settings(max_examples=300)
@given(
    body=valid_bodies(),
    path=st.sampled_from(SPOILABLE),
    value=JSON_VALUES | st.just(MISSING),
)
def test_a_spoiled_body_is_refused_naming_the_spoiled_field(
    body: dict[str, Any], path: str, value: Any
) -> None:
    problems = refused_cleanly(json.dumps(spoil(body, path, value)).encode())
    for field, message in problems:
        assert field == path or field.startswith(f"{path}."), (field, message)
        assert message


@settings(max_examples=300)
@given(raw=JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
def test_any_json_or_bytes_is_accepted_or_refused_with_400_or_422(raw: bytes) -> None:
    for field, message in refused_cleanly(raw):
        assert field and message


# JSON's edge cases, and how the API answers each over HTTP.
EDGE_CASES = {
    "deeper than the parser's recursion": (b"[" * 30_000 + b"]" * 30_000, 400),
    "deep and over 64 KiB": (b"[" * 100_000, 413),
    "more digits than int() takes": (b'{"quantity": 1' + b"0" * 5000 + b"}", 400),
    "infinity": (b'{"quantity": 1e400}', 400),
    "NaN": (b'{"quantity": NaN}', 400),
    "a byte-order mark, which RFC 8259 lets a parser ignore": (b"\xef\xbb\xbf{}", 422),
    "not UTF-8": (b'{"orderId": "\xff"}', 400),
    "a lone surrogate": (b'{"orderId": "\\ud800"}', 422),
    "nothing": (b"", 400),
}


@pytest.mark.parametrize("case", EDGE_CASES)
def test_json_edge_cases_are_refused_cleanly(case: str) -> None:
    raw, _ = EDGE_CASES[case]
    assert refused_cleanly(raw)


def test_json_edge_cases_over_http_get_a_problem(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    for case, (raw, status) in EDGE_CASES.items():
        response = http.post(
            server.endpoint("/fulfilment"), data=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == status, (case, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"


def test_bodies_over_real_http_never_get_a_5xx(server: LiveServer, catalogue) -> None:
    """Fewer examples, end to end: the body reader, the validator, intake and the database."""
    http = server.session(partner_to(server, "http://127.0.0.1:9/hook").key.api_key)
    statuses: set[int] = set()

    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    @given(
        body=valid_bodies()
        | st.builds(spoil, valid_bodies(), st.sampled_from(SPOILABLE), JSON_VALUES)
        | JSON_VALUES
    )
    def post(body: Any) -> None:
        response = http.post(server.endpoint("/fulfilment"), json=body)
        statuses.add(response.status_code)
        assert response.status_code in (200, 202, 400, 409, 422), response.text
        if response.status_code >= 400:
            assert response.headers["Content-Type"] == "application/problem+json"
        if response.status_code == 422:
            assert all(e["field"] and e["message"] for e in response.json()["errors"])

    post()
    assert {202, 422} <= statuses  # both kinds were exercised


def test_a_resubmission_is_replayed_and_a_changed_one_conflicts(
    server: LiveServer, catalogue
) -> None:
    """Idempotency by orderId, over HTTP: the same body again is the same order (200), a body
    changed in one character is a 409 and changes nothing."""
    http = server.session(partner_to(server, "http://127.0.0.1:9/hook").key.api_key)
    url = server.endpoint("/fulfilment")
    created = []

    @settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
    @given(body=valid_bodies())
    def resubmit(body: dict[str, Any]) -> None:
        first = http.post(url, json=body)
        if first.status_code == 409:  # an orderId drawn before, with another body
            return
        assert first.status_code in (200, 202), first.text
        created.append(first.status_code == 202)
        again = http.post(url, json=body)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        name = body["customer"]["name"]
        changed = {**body, "customer": {**body["customer"], "name": "x" if name != "x" else "y"}}
        assert http.post(url, json=changed).status_code == 409
        assert http.get(server.endpoint(f"/orders/{body['orderId']}")).json() == first.json()

    resubmit()
    assert sum(created) >= 10  # most drew a new orderId
