"""Hostile input: whatever a partner (or anyone holding a key) sends is refused with a clear
4xx naming the field, or stored and given back exactly, on SQLite and PostgreSQL, over real
HTTP, in webhooks and on an operator's terminal."""

from tests.conftest import LiveServer


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
