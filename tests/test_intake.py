"""Order intake over real HTTP: storage, idempotency, concurrency, partner scoping (the core
also through PgBouncer)."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests

from t2ctl import db
from t2ctl.api import schemas
from t2ctl.db.models import ApiKey, Order, Product
from t2ctl.jobs.models import Job
from t2ctl.orders import intake, pipeline
from tests.conftest import NORTON, THROUGH_PGBOUNCER, LiveServer, order_body
from tests.plans import statements


@THROUGH_PGBOUNCER
def test_an_accepted_order_is_stored_and_readable(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    response = http.post(server.endpoint("/fulfilment"), json=order_body())
    assert response.status_code == 202
    assert response.headers["Location"] == "/t2mobile/orders/T2-20261127-000123"
    order = response.json()
    assert order["status"] == "PENDING"
    assert order["amount"] == {"value": "15000.00", "currency": "NGN"}
    assert order["customer"] == {"id": "CUST-88"}
    assert order["fulfilment"] is None and order["error"] is None
    assert order["createdAt"].endswith("Z")

    again = http.get(server.url + response.headers["Location"])
    assert again.status_code == 200
    assert again.json() == order


@THROUGH_PGBOUNCER
def test_the_same_order_twice_replays_and_creates_nothing(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    first = http.post(server.endpoint("/fulfilment"), json=order_body())
    replay = http.post(server.endpoint("/fulfilment"), json=order_body())
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert replay.json() == first.json()
    assert Order.select().count() == 1


def test_the_same_order_id_with_another_body_is_a_conflict(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    http.post(server.endpoint("/fulfilment"), json=order_body())
    changed = order_body(quantity=2, amount={"value": "30000.00", "currency": "NGN"})
    response = http.post(server.endpoint("/fulfilment"), json=changed)
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"
    stored = http.get(server.endpoint("/orders/T2-20261127-000123")).json()
    assert stored["quantity"] == 1
    assert Order.select().count() == 1


def test_a_replay_is_answered_after_the_catalogue_changed_and_a_changed_body_conflicts(
    server: LiveServer, catalogue
) -> None:
    """An order is judged against the catalogue once, when it is first accepted: its replay
    is not judged again, and another body under its orderId is a conflict, not a 422."""
    http = server.session(server.add_partner().key.api_key)
    first = http.post(server.endpoint("/fulfilment"), json=order_body())
    Product.update(active=False).where(Product.product_id == "M365-BASIC-12M").execute()
    replay = http.post(server.endpoint("/fulfilment"), json=order_body())
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json() == first.json()
    changed = http.post(server.endpoint("/fulfilment"), json=order_body(quantity=2))
    assert changed.status_code == 409  # its amount is wrong too: the orderId is what counts
    new = http.post(server.endpoint("/fulfilment"), json=order_body("T2-NEW-1"))
    assert new.status_code == 422  # a new order is judged, and the product is retired now
    assert Order.select().count() == 1


def test_a_replay_must_match_to_the_letter_and_the_type(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    http.post(server.endpoint("/fulfilment"), json=order_body(metadata={"flag": True}))
    near_misses = [order_body(metadata={"flag": 1}), order_body(metadata={"flag": True, "x": 1})]
    shouting = order_body(metadata={"flag": True})
    shouting["customer"]["email"] = "ada@EXAMPLE.NG"
    for body in [*near_misses, shouting]:
        assert http.post(server.endpoint("/fulfilment"), json=body).status_code == 409
    same = order_body(metadata={"flag": True}, quantity=1.0)  # 1.0 is the integer 1 in JSON
    assert http.post(server.endpoint("/fulfilment"), json=same).status_code == 200


@THROUGH_PGBOUNCER
def test_fifty_concurrent_identical_posts_create_exactly_one_order(
    server: LiveServer, catalogue
) -> None:
    key = server.add_partner().key.api_key

    def post(_: int) -> requests.Response:
        return requests.post(
            server.endpoint("/fulfilment"),
            json=order_body(),
            headers={"X-API-Key": key},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = sorted(r.status_code for r in pool.map(post, range(50)))
    assert statuses == [200] * 49 + [202]
    assert Order.select().count() == 1
    assert Job.select().count() == 1, "one order, one process_order job"


@THROUGH_PGBOUNCER
def test_twenty_concurrent_different_bodies_get_one_202_and_409s(
    server: LiveServer, catalogue
) -> None:
    key = server.add_partner().key.api_key

    def post(n: int) -> requests.Response:
        body = order_body(metadata={"attempt": n})
        return requests.post(
            server.endpoint("/fulfilment"), json=body, headers={"X-API-Key": key}, timeout=60
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = sorted(r.status_code for r in pool.map(post, range(20)))
    assert statuses == [202] + [409] * 19
    assert Order.select().count() == 1


@THROUGH_PGBOUNCER
def test_concurrent_orders_and_their_duplicates_are_each_stored_once_with_their_job(
    server: LiveServer, catalogue
) -> None:
    """Each orderId sent twice at once, among many: the duplicate is a replay, and every
    202's order, and only those, is stored with its job."""
    key = server.add_partner().key.api_key

    def post(n: int) -> requests.Response:
        return requests.post(
            server.endpoint("/fulfilment"),
            json=order_body(f"T2-SHARED-{n // 2}"),  # each orderId sent twice at once
            headers={"X-API-Key": key},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(post, range(80)))
    created = sorted(r.json()["orderId"] for r in responses if r.status_code == 202)
    replayed = sorted(r.json()["orderId"] for r in responses if r.status_code == 200)
    assert created == replayed == sorted(f"T2-SHARED-{n}" for n in range(40))
    stored = {order.order_id: order.id for order in Order.select()}
    assert sorted(stored) == created
    payloads = sorted(job.payload["order"] for job in Job.select())
    assert payloads == sorted(stored.values()), "one process_order job for each order"


def test_an_order_over_the_api_and_one_in_a_callers_transaction_get_the_same_job(
    server: LiveServer, catalogue
) -> None:
    """On PostgreSQL intake writes a new order and its job in one statement, and notifies
    after it; inside a caller's transaction (and on SQLite) it writes them in that
    transaction. Either way the job is the one ``pipeline.schedule`` would add."""
    new = server.add_partner()
    with statements() as ran:
        posted = server.session(new.key.api_key).post(
            server.endpoint("/fulfilment"), json=order_body("T2-ONE-STATEMENT")
        )
    assert posted.status_code == 202
    body = schemas.FulfilmentRequest.model_validate(order_body("T2-IN-A-TRANSACTION"))
    with db.transaction():
        intake.submit(new.partner, body.to_request(), box=server.box)
    writes = [sql.split()[0] for sql, _ in ran if sql.split()[0] in ("WITH", "INSERT")]
    notified = [sql for sql, _ in ran if "pg_notify" in sql]
    if db.is_sqlite():
        assert writes == ["INSERT", "INSERT"] and not notified
    else:
        assert writes == ["WITH"] and len(notified) == 1, ran
    jobs = []
    for order_id in ("T2-ONE-STATEMENT", "T2-IN-A-TRANSACTION"):
        order = Order.get(Order.order_id == order_id)
        job = Job.get(Job.unique_key == f"order:{order.id}")
        assert job.payload == {"order": order.id}
        assert job.run_at == job.created_at == job.updated_at
        assert timedelta(0) <= job.run_at - order.created_at < timedelta(seconds=5)
        jobs.append((job.task, job.state, job.priority, job.attempts, job.max_attempts))
    assert jobs[0] == jobs[1] == ("process_order", "queued", 0, 0, pipeline.MAX_ATTEMPTS)


def test_a_partner_sees_only_its_own_orders(server: LiveServer, catalogue) -> None:
    mine = server.session(server.add_partner("t2mobile").key.api_key)
    theirs = server.session(server.add_partner("other").key.api_key)
    assert mine.post(server.endpoint("/fulfilment"), json=order_body()).status_code == 202
    assert theirs.get(server.endpoint("/orders/T2-20261127-000123")).status_code == 404
    # The orderId is scoped per partner: the other partner may use the same one.
    assert theirs.post(server.endpoint("/fulfilment"), json=order_body()).status_code == 202
    assert Order.select().count() == 2


def test_catalogue_rules_are_enforced(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    cases = {
        "productId": order_body(productId="NO-SUCH-PRODUCT"),
        "amount": order_body(amount={"value": "14999.99", "currency": "NGN"}),
        "renewalOf": order_body(renewalOf="T2-NEVER-FULFILLED"),
    }
    inactive = order_body(productId="RETIRED-1M", amount={"value": "100.00", "currency": "NGN"})
    for field, body in [*cases.items(), ("productId", inactive)]:
        response = http.post(server.endpoint("/fulfilment"), json=body)
        assert response.status_code == 422, field
        assert [e["field"] for e in response.json()["errors"]] == [field]
    wrong_currency = order_body(amount={"value": "15000.00", "currency": "USD"})
    response = http.post(server.endpoint("/fulfilment"), json=wrong_currency)
    assert response.json()["errors"][0]["message"].startswith("must equal price × quantity")
    assert Order.select().count() == 0


def test_a_renewal_must_name_a_fulfilled_order_of_the_same_product(
    server: LiveServer, catalogue
) -> None:
    http = server.session(server.add_partner().key.api_key)
    http.post(server.endpoint("/fulfilment"), json=order_body("T2-FIRST"))
    Order.update(status="FULFILLED").where(Order.order_id == "T2-FIRST").execute()
    other_product = http.post(
        server.endpoint("/fulfilment"),
        json=order_body("T2-RENEW-X", renewalOf="T2-FIRST", **NORTON),
    )
    assert other_product.status_code == 422
    assert other_product.json()["errors"][0]["field"] == "renewalOf"
    stranger = server.session(server.add_partner("other").key.api_key)
    theirs = stranger.post(
        server.endpoint("/fulfilment"), json=order_body("T2-THEIRS", renewalOf="T2-FIRST")
    )
    assert theirs.status_code == 422  # another partner's order is not theirs to renew
    renewal = http.post(
        server.endpoint("/fulfilment"), json=order_body("T2-RENEW", renewalOf="T2-FIRST")
    )
    assert renewal.status_code == 202
    assert renewal.json()["renewalOf"] == "T2-FIRST"


def test_customer_contact_details_are_encrypted_at_rest(server: LiveServer, catalogue) -> None:
    created = server.add_partner()
    http = server.session(created.key.api_key)
    assert http.post(server.endpoint("/fulfilment"), json=order_body()).status_code == 202
    secrets = [
        b"ada@example.ng",
        b"+2348031234567",
        created.webhook_secret.encode(),
        created.key.api_key.encode(),
    ]
    if server.settings.database.is_sqlite:
        path = server.settings.database.sqlite_path
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    else:
        from t2ctl import db

        rows = db.database.execute_sql(
            'SELECT o.*, p.*, k.* FROM "order" o, partner p, api_key k'
        ).fetchall()
        raw = repr(rows).encode()
    assert b"CUST-88" in raw  # the scan does see the stored row
    for secret in secrets:
        assert secret not in raw


def test_logs_carry_no_contact_details_or_credentials(
    server: LiveServer, catalogue, caplog
) -> None:
    created = server.add_partner()
    http = server.session(created.key.api_key)
    with caplog.at_level("DEBUG"):
        http.post(server.endpoint("/fulfilment"), json=order_body())
        http.get(server.endpoint("/orders/T2-20261127-000123"))
        http.post(server.endpoint("/fulfilment"), json=order_body(quantity=3))
    text = caplog.text
    assert "T2-20261127-000123 accepted" in text  # the log does record the order
    for secret in ("ada@example.ng", "+2348031234567", created.key.api_key, created.webhook_secret):
        assert secret not in text


def test_key_use_is_recorded(server: LiveServer, catalogue) -> None:
    created = server.add_partner()
    assert ApiKey.get().last_used_at is None
    server.session(created.key.api_key).get(server.endpoint("/products"))
    assert ApiKey.get().last_used_at is not None
