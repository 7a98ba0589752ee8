"""Every 4xx of CONTRACT §1, the 500 and the 503, over real HTTP, as problem+json."""

import json
from datetime import timedelta

import pytest
import requests

from t2ctl import clock, db, partners, sandbox
from t2ctl.api import create_app
from t2ctl.db import schema
from t2ctl.db.models import Order
from t2ctl.security import apikeys
from t2ctl.security.crypto import SecretBox
from tests.conftest import LiveServer, make_settings, order_body, serve_in_thread
from tests.openapi_check import assert_documented

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def assert_problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["type"].startswith("urn:t2ctl:problem:")
    return body


@pytest.fixture
def partner(server: LiveServer, catalogue) -> tuple[LiveServer, requests.Session]:
    return server, server.session(server.add_partner().key.api_key)


def test_400_malformed_json(partner) -> None:
    server, http = partner
    response = http.post(
        server.endpoint("/fulfilment"),
        data=b'{"orderId": ',
        headers={"Content-Type": "application/json"},
    )
    assert assert_problem(response, 400)["detail"] == "The body is not valid JSON."
    assert_documented("POST", "/fulfilment", response)


def test_400_nan_is_not_json(partner) -> None:
    server, http = partner
    body = '{"orderId": "T2-1", "quantity": NaN}'
    response = http.post(
        server.endpoint("/fulfilment"), data=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400)


def test_400_absurdly_deep_json(partner) -> None:
    server, http = partner
    response = http.post(
        server.endpoint("/fulfilment"),
        data="[" * 60_000,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400)


def test_401_expired_key(partner) -> None:
    server, _ = partner
    past = clock.now() - timedelta(seconds=1)
    expired = apikeys.issue(partners.get("t2mobile"), expires_at=past)
    assert_problem(
        requests.get(server.endpoint("/products"), headers={"X-API-Key": expired.api_key}), 401
    )


def test_401_missing_unknown_and_revoked_keys(partner) -> None:
    server, http = partner
    missing = requests.get(server.endpoint("/products"))
    assert_problem(missing, 401)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert_documented("GET", "/products", missing)
    unknown = requests.get(server.endpoint("/products"), headers={"X-API-Key": "t2k_nope_nope"})
    assert_problem(unknown, 401)
    issued = apikeys.issue(partners.get("t2mobile"))
    assert (
        requests.get(
            server.endpoint("/products"), headers={"X-API-Key": issued.api_key}
        ).status_code
        == 200
    )
    apikeys.revoke(issued.key_id)
    assert_problem(
        requests.get(server.endpoint("/products"), headers={"X-API-Key": issued.api_key}), 401
    )
    assert http.get(server.endpoint("/products")).status_code == 200  # other keys still work


def test_403_address_outside_the_allow_list(partner) -> None:
    server, http = partner
    partners.update("t2mobile", sandbox=True, allow_ips=["10.20.0.0/16"])
    response = http.get(server.endpoint("/products"))
    assert_problem(response, 403)
    assert_documented("GET", "/products", response)
    partners.update("t2mobile", sandbox=True, allow_ips=["127.0.0.0/8"])
    assert http.get(server.endpoint("/products")).status_code == 200


def test_404_unknown_order_and_unknown_route(partner) -> None:
    server, http = partner
    response = http.get(server.endpoint("/orders/NOPE-1"))
    assert_problem(response, 404)
    assert_documented("GET", "/orders/{orderId}", response)
    assert_problem(http.get(server.endpoint("/nothing-here")), 404)


def test_405_wrong_method_lists_the_allowed_ones(partner) -> None:
    server, http = partner
    response = http.delete(server.endpoint("/products"))
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_409_idempotency_conflict(partner) -> None:
    server, http = partner
    http.post(server.endpoint("/fulfilment"), json=order_body())
    response = http.post(server.endpoint("/fulfilment"), json=order_body(metadata={"x": 1}))
    assert "different body" in assert_problem(response, 409)["detail"]
    assert_documented("POST", "/fulfilment", response)


def test_413_body_over_64_kib(partner) -> None:
    server, http = partner
    body = order_body(metadata={"padding": "x" * (64 * 1024)})
    response = http.post(server.endpoint("/fulfilment"), json=body)
    assert_problem(response, 413)
    assert_documented("POST", "/fulfilment", response)
    assert Order.select().count() == 0


def test_a_body_of_exactly_64_kib_is_accepted(partner) -> None:
    server, http = partner
    body = order_body(metadata={"padding": ""})
    size = len(json.dumps(body).encode())
    body["metadata"]["padding"] = "x" * (64 * 1024 - size)
    data = json.dumps(body).encode()
    assert len(data) == 64 * 1024
    response = http.post(
        server.endpoint("/fulfilment"), data=data, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202


def test_415_not_json(partner) -> None:
    server, http = partner
    response = http.post(
        server.endpoint("/fulfilment"),
        data="orderId=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 415)
    assert_documented("POST", "/fulfilment", response)


def test_422_lists_every_invalid_field(partner) -> None:
    server, http = partner
    body = order_body(orderId="bad id!", quantity="1", typo=True)
    body["customer"] = {"id": "C", "name": "N", "email": "not-an-email", "phone": "0803"}
    body["amount"] = {"value": 15000.0, "currency": "ngn"}
    response = http.post(server.endpoint("/fulfilment"), json=body)
    problem = assert_problem(response, 422)
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(fields) == {
        "orderId",
        "quantity",
        "typo",
        "customer.email",
        "customer.phone",
        "amount.value",
        "amount.currency",
    }
    assert fields["typo"] == "is not a known field"
    assert fields["customer.phone"] == "must be in E.164 form, like +2348031234567"
    assert_documented("POST", "/fulfilment", response)
    missing = http.post(server.endpoint("/fulfilment"), json={"orderId": "T2-1"})
    assert {e["field"] for e in missing.json()["errors"]} >= {"productId", "customer", "amount"}
    assert Order.select().count() == 0


def test_422_control_characters_in_customer_text(partner) -> None:
    server, http = partner
    body = order_body()
    body["customer"]["name"] = "Ada\u0000Obi"
    response = http.post(server.endpoint("/fulfilment"), json=body)
    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {"field": "customer.name", "message": "must be printable text, without control characters"}
    ]
    raw = json.dumps(order_body(metadata={"x": 0.5})).replace("0.5", "1e400")
    too_big = http.post(
        server.endpoint("/fulfilment"), data=raw, headers={"Content-Type": "application/json"}
    )
    assert_problem(too_big, 400)  # json.dumps writes Infinity, which is not JSON
    assert Order.select().count() == 0


def test_429_over_the_rate_limit_with_retry_after(partner) -> None:
    server, http = partner
    partners.update("t2mobile", sandbox=True, rate_limit="3/minute")
    statuses = [http.get(server.endpoint("/products")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = http.get(server.endpoint("/products"))
    assert_problem(response, 429)
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert_documented("GET", "/products", response)
    other = server.session(apikeys.issue(partners.get("t2mobile")).api_key)
    assert other.get(server.endpoint("/products")).status_code == 200  # the limit is per key


def test_500_carries_an_error_id_and_nothing_internal(partner) -> None:
    server, http = partner
    http.post(server.endpoint("/fulfilment"), json=order_body())
    # Damage the stored row the way a bad manual edit would.
    db.database.execute_sql("""UPDATE "order" SET metadata = '{not json'""")
    response = http.get(server.endpoint("/orders/T2-20261127-000123"))
    problem = assert_problem(response, 500)
    assert len(problem["errorId"]) == 32
    for leak in ("Traceback", "json", "SELECT", "metadata", 'order"'):
        assert leak not in response.text
    assert_documented("GET", "/orders/{orderId}", response)


@pytest.mark.parametrize(
    "url", ["sqlite:////nonexistent/dir/t2ctl.db", "postgresql://postgres@127.0.0.1:1/none"]
)
def test_503_when_the_database_is_unreachable(url: str) -> None:
    """The database went away after the start (a daemon refuses to start without it)."""
    settings = make_settings(url)
    db.connect(url)
    running = sandbox.in_background(create_app(settings, SecretBox(settings.security.master_keys)))
    base, stop = running.url, running.stop
    try:
        health = requests.get(f"{base}/t2mobile/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert_documented("GET", "/health", health)
        response = requests.get(f"{base}/t2mobile/products", headers={"X-API-Key": "t2k_x_y"})
        assert_problem(response, 503)
        assert_documented("GET", "/products", response)
    finally:
        stop()


def test_429_at_the_configured_default_limit(db_url: str) -> None:
    settings = make_settings(db_url, server={"rate_limit_per_minute": 2})
    db.connect(settings.database.url)
    schema.migrate()
    box = SecretBox(settings.security.master_keys)
    key = partners.add("t2mobile", "http://h/x", box=box, sandbox=True).key.api_key
    base, stop, _ = serve_in_thread(settings)
    try:
        statuses = [
            requests.get(f"{base}/t2mobile/products", headers={"X-API-Key": key}).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
    finally:
        stop()
