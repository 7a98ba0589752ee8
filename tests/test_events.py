"""GET /t2mobile/events over real HTTP: the partner's events are exactly what its webhooks
carried (checked against deliveries verified with the ``standardwebhooks`` library, never
t2ctl's own code), whatever became of each delivery; paged by ``after``, filtered by ``type``,
scoped to the partner; the query walking an index. Each test runs on SQLite and on PostgreSQL."""

import threading
from datetime import timedelta

import requests
from standardwebhooks.webhooks import Webhook

from t2ctl import clock, db, partners
from t2ctl.db.models import Subscription, WebhookDelivery
from t2ctl.orders import expiry
from t2ctl.webhooks import outbox
from tests.conftest import NORTON, LiveServer, daemon_worker, declining_worker, drain, post_orders
from tests.hooks import Hook
from tests.openapi_check import assert_documented
from tests.plans import assert_walked, plan, statements

IN_FEED_ORDER = "webhook_delivery_partner_id_feed_seq"


def partner(server: LiveServer, url: str, name: str = "t2mobile") -> partners.NewPartner:
    new = partners.add(name, url, box=server.box, sandbox=True)
    partners.update(name, sandbox=True, rate_limit="1000/minute")
    return new


def feed(server: LiveServer, http: requests.Session, **query) -> requests.Response:
    response = http.get(server.endpoint("/events"), params=query)
    assert_documented("GET", "/events", response)
    return response


def events(server: LiveServer, http: requests.Session, **query) -> tuple[list[dict], bool]:
    response = feed(server, http, **query)
    assert response.status_code == 200, response.text
    return response.json()["data"], response.json()["hasMore"]


def caught_up(server: LiveServer, http: requests.Session, limit: int, **query) -> list[list[dict]]:
    """Every page from the first, each asked for ``after`` the last event of the one before."""
    pages, after = [], {}
    while True:
        got, more = events(server, http, limit=limit, **query, **after)
        pages.append(got)
        if not more:
            return pages
        after = {"after": got[-1]["id"]}


def outcomes(server: LiveServer, hook: Hook) -> partners.NewPartner:
    """Two orders fulfilled and one failed, each webhook sent; the failed one's receiver
    answered 500, so its delivery is still pending (retried later)."""
    new = partner(server, hook.url)
    http = server.session(new.key.api_key)
    worker = declining_worker(server)
    post_orders(server, http, "T2-1")
    drain(worker)
    hook.answer(500)
    post_orders(server, http, "T2-2", **NORTON)
    drain(worker)
    post_orders(server, http, "T2-3")
    drain(worker)
    return new


def test_the_feed_is_exactly_what_the_webhooks_carried(
    server: LiveServer, catalogue, hook: Hook
) -> None:
    new = outcomes(server, hook)
    worker = daemon_worker(server)
    expires = Subscription.select().order_by(Subscription.id).first().expires_at
    assert expiry.reminders(expires - timedelta(days=3), days=7).startswith("2")
    drain(worker)

    received = {}  # webhook-id: the event as verified, whatever the receiver answered
    for delivery in hook.received:
        payload = Webhook(new.webhook_secret).verify(delivery.body, delivery.headers)
        received[delivery.webhook_id] = {"id": delivery.webhook_id, **payload}
    statuses = {d.webhook_id: d.status for d in WebhookDelivery.select()}
    assert sorted(statuses.values()) == ["delivered"] * 4 + ["pending"], "the 500 is retried"

    http = server.session(new.key.api_key)
    got, more = events(server, http)
    assert not more
    assert {e["id"]: e for e in got} == received
    assert [e["id"] for e in got] == [
        d.webhook_id for d in WebhookDelivery.select().order_by(WebhookDelivery.id)
    ], "oldest first"
    assert [(e["type"], e["data"]["orderId"]) for e in got] == [
        ("order.fulfilled", "T2-1"),
        ("order.failed", "T2-2"),
        ("order.fulfilled", "T2-3"),
        ("subscription.expiring", "T2-1"),
        ("subscription.expiring", "T2-3"),
    ]
    for event in got[:3]:  # each outcome's event carries the order exactly as it is read
        order_id = event["data"]["orderId"]
        assert event["data"] == http.get(server.endpoint(f"/orders/{order_id}")).json()


def test_after_pages_through_every_event_once_and_type_filters(
    server: LiveServer, catalogue, hook: Hook
) -> None:
    new = outcomes(server, hook)
    http = server.session(new.key.api_key)
    whole, _ = events(server, http)
    assert len(whole) == 3

    pages = caught_up(server, http, limit=2)
    assert [len(p) for p in pages] == [2, 1]
    assert [e for p in pages for e in p] == whole
    assert caught_up(server, http, limit=1) == [[e] for e in whole]
    assert events(server, http, limit=3) == (whole, False), "exactly a page's worth"
    assert events(server, http, after=whole[0]["id"]) == (whole[1:], False)
    assert events(server, http, after=whole[-1]["id"]) == ([], False), "caught up"

    fulfilled = [e for e in whole if e["type"] == "order.fulfilled"]
    assert events(server, http, type="order.fulfilled") == (fulfilled, False)
    assert events(server, http, type="order.failed", after=whole[1]["id"]) == ([], False)
    assert caught_up(server, http, limit=1, type="order.fulfilled") == [[e] for e in fulfilled]
    assert events(server, http, type="subscription.expired") == ([], False)


def test_bad_parameters_and_another_partners_event_are_400_naming_them(
    server: LiveServer, catalogue, hook: Hook
) -> None:
    ours = outcomes(server, hook)
    other = partner(server, hook.url, "other")
    theirs = server.session(other.key.api_key)
    post_orders(server, theirs, "OTHER-1")
    drain(daemon_worker(server))
    http = server.session(ours.key.api_key)
    (their_event,), _ = events(server, theirs)
    assert their_event["data"]["orderId"] == "OTHER-1"
    assert all(e["data"]["orderId"] != "OTHER-1" for e in events(server, http)[0])

    bad = [
        (f"after={their_event['id']}", "after"),  # another partner's event is no event of ours
        ("after=msg_unknown", "after"),
        ("after=", "after"),
        ("after=%00", "after"),
        ("type=order.shipped", "type"),
        ("type=ORDER.FULFILLED", "type"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("cursor=abc", "cursor"),  # the orders' paging, not the feed's
        ("since=2026-11-27T09:00:00Z", "since"),
        ("type=order.failed&type=order.failed", "type"),
    ]
    for query, field in bad:
        response = http.get(f"{server.endpoint('/events')}?{query}")
        assert_documented("GET", "/events", response)
        assert response.status_code == 400, query
        problem = response.json()
        assert problem["type"] == "urn:t2ctl:problem:invalid-parameter"
        assert f"`{field}`" in problem["detail"], query
        assert [e["field"] for e in problem["errors"]] == [field], query


def test_the_feed_walks_an_index_in_its_order(server: LiveServer, catalogue, hook: Hook) -> None:
    new = outcomes(server, hook)
    http = server.session(new.key.api_key)
    whole, _ = events(server, http)
    variants = {
        IN_FEED_ORDER: [{}, {"after": whole[0]["id"], "limit": 1}],
        "webhook_delivery_partner_id_event_feed_seq": [
            {"type": "order.fulfilled"},
            {"type": "order.fulfilled", "after": whole[0]["id"], "limit": 1},
        ],
    }
    for index, queries in variants.items():
        with statements() as ran:
            for query in queries:
                events(server, http, **query)
        assert_walked(ran, lambda sql: sql.startswith("SELECT") and "ORDER BY" in sql, 2, index)
        # Each read places what committed since the last: those it finds by an index (their
        # own, or the feed's where SQLite seeks its nulls), after the last placed one, found
        # by the feed's.
        placing = [(sql, p) for sql, p in ran if sql.lstrip().startswith("UPDATE")]
        assert len(placing) == 2
        for sql, params in placing:
            found = plan(sql, params)
            assert IN_FEED_ORDER in found and "SCAN webhook_delivery" not in found, found
            assert "webhook_delivery_unplaced" in found or "feed_seq=?" in found, found


def test_an_event_that_commits_after_a_later_one_is_not_skipped(server: LiveServer) -> None:
    """Event A is written first (its id is the smaller) but its transaction commits after B's.
    A reader that read B meanwhile, and reads on after it, still gets A. (On SQLite writers
    never overlap: B waits for A's commit, and the read in between is PostgreSQL's alone.)"""
    new = partner(server, "http://127.0.0.1:9/hook")
    http = server.session(new.key.api_key)
    written, release = threading.Event(), threading.Event()

    def record(order_id: str) -> None:
        data = {
            "orderId": order_id,
            "productId": "M365-BASIC-12M",
            "customer": {"id": "CUST-88"},
            "expiresAt": clock.rfc3339(clock.now()),
        }
        outbox.record(new.partner.id, "subscription.expiring", data, occurred_at=clock.now())

    def slow_first() -> None:
        with db.transaction():
            record("T2-A")
            written.set()
            release.wait(20)

    first = threading.Thread(target=slow_first)
    first.start()
    assert written.wait(10)
    second = threading.Thread(target=record, args=("T2-B",))
    second.start()
    second.join(timeout=2)
    seen: list[dict] = []
    if not db.is_sqlite():
        assert not second.is_alive(), "B committed while A's transaction is open"
        seen, _ = events(server, http)
        assert [e["data"]["orderId"] for e in seen] == ["T2-B"]
    release.set()
    first.join(timeout=20)
    second.join(timeout=20)

    later, _ = events(server, http, **({"after": seen[-1]["id"]} if seen else {}))
    read = [e["data"]["orderId"] for e in seen + later]
    assert sorted(read) == ["T2-A", "T2-B"], "each once, none skipped"
    whole, _ = events(server, http)
    assert whole == seen + later, "the feed's order is the order it was read in"
