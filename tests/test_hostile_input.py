"""Hostile input: whatever a partner (or anyone holding a key) sends is refused with a clear
4xx naming the field, or stored and given back exactly, on SQLite and PostgreSQL, over real
HTTP, in webhooks and on an operator's terminal."""

import json

import requests

from tests.conftest import LiveServer, order_body


def post_raw(server: LiveServer, http: requests.Session, raw: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    return http.post(server.endpoint("/fulfilment"), data=raw, headers=headers)


def test_an_order_id_no_order_can_have_is_a_404_without_a_query(
    server: LiveServer, catalogue
) -> None:
    """PostgreSQL refuses a NUL in a query's text: that was a 500 there, and a 404 on SQLite."""
    http = server.session(server.add_partner().key.api_key)
    for path in ("%00", "T2-1%00", "%E2%80%AE", "x" * 65, "a%0d%0ab", "%F0%9F%98%80"):
        response = http.get(server.endpoint(f"/orders/{path}"))
        assert response.status_code == 404, (path, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["detail"] == (
            "No order has that id: an orderId must be 1-64 of A-Z a-z 0-9 . _ : -."
        )


def test_a_key_given_twice_is_a_400_naming_it(server: LiveServer, catalogue) -> None:
    """Which orderId would the partner mean? A proxy may read the first, a dict keeps the last."""
    http = server.session(server.add_partner().key.api_key)
    text = json.dumps(order_body("T2-DUP-1"))
    twice = text.replace('"orderId": "T2-DUP-1"', '"orderId": "T2-DUP-1", "orderId": "T2-DUP-2"')
    nested = text.replace('"id": "CUST-88"', '"id": "CUST-88", "id": "CUST-99"')
    for raw, key in ((twice, "orderId"), (nested, "id")):
        response = post_raw(server, http, raw.encode())
        assert response.status_code == 400
        assert response.json()["detail"] == f'The body gives the key "{key}" twice in one object.'
    assert http.get(server.endpoint("/orders/T2-DUP-1")).status_code == 404
    assert http.get(server.endpoint("/orders/T2-DUP-2")).status_code == 404
