"""The OpenAPI document: valid 3.1, complete, and true to what the server does."""

import re

import requests
from openapi_spec_validator import validate
from openapi_spec_validator.versions import consts, get_spec_version

from tests.conftest import LiveServer, order_body
from tests.openapi_check import SPEC, assert_documented


def test_the_served_document_is_valid_openapi_3_1(server: LiveServer) -> None:
    response = requests.get(server.endpoint("/openapi.json"))
    assert response.status_code == 200
    document = response.json()
    assert get_spec_version(document) == consts.OPENAPIV31
    validate(document)
    assert document == SPEC  # what the tests check responses against is what is served


def test_every_route_the_app_serves_is_documented_with_its_methods(server: LiveServer) -> None:
    served = {}
    for rule in server.app.url_map.iter_rules():
        # Flask's static route, and the reference page's assets (Swagger UI's files, not API).
        if rule.endpoint in ("static", "meta.static"):
            continue
        template = re.sub(
            r"<(?:\w+:)?(\w+)>",
            lambda m: "{orderId}" if m[1] == "order_id" else "{" + m[1] + "}",
            rule.rule,
        )
        served[template] = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    document = requests.get(server.endpoint("/openapi.json")).json()
    documented = {path: set(ops) for path, ops in document["paths"].items()}
    assert served == documented


def test_success_responses_match_their_schemas(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    assert_documented("GET", "/health", requests.get(server.endpoint("/health")))
    listing = http.get(server.endpoint("/products"))
    assert_documented("GET", "/products", listing)
    unchanged = http.get(
        server.endpoint("/products"), headers={"If-None-Match": listing.headers["ETag"]}
    )
    assert_documented("GET", "/products", unchanged)
    created = http.post(server.endpoint("/fulfilment"), json=order_body())
    assert_documented("POST", "/fulfilment", created)
    replayed = http.post(server.endpoint("/fulfilment"), json=order_body())
    assert_documented("POST", "/fulfilment", replayed)
    assert_documented(
        "GET", "/orders/{orderId}", http.get(server.endpoint("/orders/T2-20261127-000123"))
    )
    assert {created.status_code, replayed.status_code, unchanged.status_code} == {202, 200, 304}
