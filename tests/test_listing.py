"""GET /t2mobile/orders over real HTTP: the partner's own orders newest first, a page at a time
on an opaque cursor, exact while orders arrive between pages; filters; every bad parameter a
400 naming it; the query walking an index. Each test runs on SQLite and on PostgreSQL."""

import base64
from datetime import UTC, datetime, timedelta

import pytest
import requests

from t2ctl import partners
from t2ctl.db.models import Order
from tests.conftest import NORTON, LiveServer, declining_worker, drain, post_orders
from tests.openapi_check import assert_documented
from tests.plans import assert_walked, statements


def partner(server: LiveServer, name: str = "t2mobile") -> requests.Session:
    new = partners.add(name, "http://127.0.0.1:9/hook", box=server.box, sandbox=True)
    partners.update(name, sandbox=True, rate_limit="1000/minute")
    return server.session(new.key.api_key)


def listing(server: LiveServer, http: requests.Session, **query) -> requests.Response:
    response = http.get(server.endpoint("/orders"), params=query)
    assert_documented("GET", "/orders", response)
    return response


def page(server: LiveServer, http: requests.Session, **query) -> tuple[list[str], str | None]:
    """The orderIds of one page, and its nextCursor."""
    response = listing(server, http, **query)
    assert response.status_code == 200, response.text
    body = response.json()
    return [order["orderId"] for order in body["data"]], body["nextCursor"]


def every_page(server: LiveServer, http: requests.Session, **query) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        ids, cursor = page(server, http, **query, **({"cursor": cursor} if cursor else {}))
        pages.append(ids)
        if cursor is None:
            return pages


def ids(count: int, prefix: str = "T2-") -> list[str]:
    return [f"{prefix}{n:03}" for n in range(count)]


def test_pages_stay_exact_while_orders_arrive_between_them(server: LiveServer, catalogue) -> None:
    http = partner(server)
    first = ids(7)
    post_orders(server, http, *first)

    seen, cursor = [], None
    for arriving in (ids(2, "LATE-A-"), ids(2, "LATE-B-"), ids(2, "LATE-C-")):
        got, cursor = page(server, http, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += got
        post_orders(server, http, *arriving)  # newer than every page: they sort before page 1
    assert cursor is None, "7 orders in pages of 3: the third page is the last"
    assert seen == first[::-1], "each of the first 7 once, newest first, and nothing else"

    assert [len(p) for p in every_page(server, http, limit=3)] == [3, 3, 3, 3, 1]
    whole = every_page(server, http, limit=200)
    assert len(whole) == 1 and len(whole[0]) == 13


def test_orders_created_in_the_same_microsecond_are_each_listed_once(
    server: LiveServer, catalogue
) -> None:
    """Several daemons can stamp orders alike: the row id breaks the tie, so none is lost
    between two pages."""
    http = partner(server)
    post_orders(server, http, *ids(5))
    Order.update(created_at=datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC)).execute()

    pages = every_page(server, http, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [order_id for p in pages for order_id in p] == ids(5)[::-1]


def test_filters_by_status_and_created_at(server: LiveServer, catalogue) -> None:
    http = partner(server)
    post_orders(server, http, "FULFILLED-1", "FULFILLED-2")
    post_orders(server, http, "FAILED-1", **NORTON)
    drain(declining_worker(server))
    post_orders(server, http, "PENDING-1")

    assert page(server, http, status="FAILED") == (["FAILED-1"], None)
    assert page(server, http, status="PENDING") == (["PENDING-1"], None)
    assert page(server, http, status="FULFILLED") == (["FULFILLED-2", "FULFILLED-1"], None)
    assert page(server, http, status="CANCELLED") == ([], None)
    got, cursor = page(server, http, status="FULFILLED", limit=1)
    assert (got, page(server, http, status="FULFILLED", limit=1, cursor=cursor)) == (
        ["FULFILLED-2"],
        (["FULFILLED-1"], None),
    )

    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    for hours, order_id in enumerate(["FULFILLED-1", "FULFILLED-2", "FAILED-1", "PENDING-1"]):
        moment = start + timedelta(hours=hours)
        Order.update(created_at=moment).where(Order.order_id == order_id).execute()
    window = {"since": "2026-11-27T10:00:00Z", "until": "2026-11-27T13:00:00+01:00"}
    assert page(server, http, **window) == (["FAILED-1", "FULFILLED-2"], None), (
        "since inclusive (10:00Z), until exclusive (12:00Z)"
    )
    assert page(server, http, since="2026-11-27T11:00:00.000001Z") == (["PENDING-1"], None)
    assert page(server, http, until="2026-11-27t09:00:00.5z") == (["FULFILLED-1"], None)
    both = {"status": "FULFILLED", "since": "2026-11-27T10:00:00Z"}
    assert page(server, http, **both) == (["FULFILLED-2"], None)


def test_limit_defaults_to_50_and_takes_1_to_200(server: LiveServer, catalogue) -> None:
    http = partner(server)
    post_orders(server, http, *ids(51))
    got, cursor = page(server, http)
    assert len(got) == 50 and cursor is not None
    assert page(server, http, cursor=cursor) == (["T2-000"], None)
    assert len(page(server, http, limit=1)[0]) == 1
    assert page(server, http, limit=200) == (ids(51)[::-1], None)
    assert page(server, http, limit=51)[1] is None, "exactly a page's worth: no next page"


BAD = [
    ("cursor=not-a-cursor", "cursor"),
    ("cursor=MjAyNi0xMS0yN1QwOTowMDowMCswMDowMHwx%3D%3D", "cursor"),  # padded
    ("cursor=MjAyNi0xMS0yN1QwOTowMDowMCswMDowMHwwMQ", "cursor"),  # id 01
    ("cursor=MjAyNi0xMy0yN1QwOTowMDowMCswMDowMHwx", "cursor"),  # month 13
    ("cursor=", "cursor"),
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("limit=abc", "limit"),
    ("limit=-1", "limit"),
    ("limit=", "limit"),
    ("status=DONE", "status"),
    ("status=pending", "status"),
    ("since=yesterday", "since"),
    ("since=2026-11-27T09:00:00", "since"),  # no offset
    ("since=2026-11-27", "since"),
    ("until=2026-02-30T09:00:00Z", "until"),
    ("until=0001-01-01T00:00:00%2B01:00", "until"),  # before year 1 in UTC
    ("sort=createdAt", "sort"),
    ("status=PENDING&status=FAILED", "status"),
    ("limit=5&limit=5", "limit"),
]


def test_each_bad_parameter_is_400_naming_it(server: LiveServer, catalogue) -> None:
    http = partner(server)
    post_orders(server, http, "T2-1")
    for query, field in BAD:
        response = http.get(f"{server.endpoint('/orders')}?{query}")
        assert_documented("GET", "/orders", response)
        assert response.status_code == 400, query
        assert response.headers["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "urn:t2ctl:problem:invalid-parameter"
        assert f"`{field}`" in problem["detail"], query
        assert [e["field"] for e in problem["errors"]] == [field], query


def test_a_tampered_cursor_is_400(server: LiveServer, catalogue) -> None:
    http = partner(server)
    post_orders(server, http, *ids(3))
    _, cursor = page(server, http, limit=1)
    assert cursor is not None
    text = base64.urlsafe_b64decode(cursor + "==").decode()

    def encoded(changed: str) -> str:
        return base64.urlsafe_b64encode(changed.encode()).decode().rstrip("=")

    assert listing(server, http, cursor=encoded(text)).status_code == 200
    for tampered in (
        cursor[:-2],
        cursor + "!",
        cursor + "=",
        encoded(text.replace("+00:00", "+01:00")),
        encoded(text + "9" * 18),  # past a bigint
        encoded(text.replace("|", "|-")),
    ):
        response = listing(server, http, cursor=tampered)
        assert response.status_code == 400, tampered
        assert response.json()["errors"][0]["field"] == "cursor"


def test_a_partner_sees_only_its_own_orders(server: LiveServer, catalogue) -> None:
    ours, theirs = partner(server, "t2mobile"), partner(server, "other")
    post_orders(server, ours, *ids(3))
    post_orders(server, theirs, *ids(3, "OTHER-"), "T2-001")  # the same orderId is theirs too

    assert every_page(server, ours, limit=2) == [["T2-002", "T2-001"], ["T2-000"]]
    assert every_page(server, theirs) == [["T2-001", *ids(3, "OTHER-")[::-1]]]
    _, their_cursor = page(server, theirs, limit=1)
    assert their_cursor is not None
    got, _ = page(server, ours, cursor=their_cursor)
    assert set(got) <= set(ids(3)), "a cursor is a position, never a way into another's orders"


# The partner's own index, or the operators' one on the same order (migration 0008), which
# PostgreSQL may rightly walk, filtering the partner, when the partner has most orders (or
# the table none): either way nothing is sorted apart.
@pytest.mark.parametrize(
    ("status", "indexes"),
    [
        (None, ("order_partner_id_created_at_id", "order_created_at_id")),
        ("PENDING", ("order_partner_id_status_created_at_id", "order_status_created_at_id")),
    ],
)
def test_the_listing_walks_an_index_in_its_order(
    server: LiveServer, catalogue, status: str | None, indexes: tuple[str, str]
) -> None:
    http = partner(server)
    post_orders(server, http, *ids(5))
    first = {"limit": 2, **({"status": status} if status else {})}
    _, cursor = page(server, http, **first)
    later = {**first, "cursor": cursor}
    variants = [
        first,
        later,
        {**later, "since": "2026-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z"},
        {**first, "since": "2026-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z"},
        {**later, "until": "2000-01-01T00:00:00Z"},
    ]
    with statements() as ran:
        for query in variants:
            page(server, http, **query)
    assert_walked(
        ran, lambda sql: 'FROM "order"' in sql and "LIMIT" in sql, len(variants), *indexes
    )
