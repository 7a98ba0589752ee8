"""Cancellation over real HTTP, on SQLite and on PostgreSQL: from each state an order can be
in, the refusals, the subscription it ends or shortens, the event that follows, and the race
with provisioning, run many times against the Zoho stand-in holding the create."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from t2ctl import clock, partners
from t2ctl.db.models import (
    AuditEvent,
    Order,
    SandboxSalesOrder,
    Subscription,
    WebhookDelivery,
    ZohoSalesOrder,
)
from t2ctl.jobs.models import Job
from t2ctl.jobs.worker import Worker
from t2ctl.orders import cancellation, expiry, subscriptions
from t2ctl.security.crypto import SecretBox
from tests.conftest import (
    NORTON,
    Cli,
    LiveServer,
    ZohoEnv,
    at_once,
    daemon_worker,
    declining_worker,
    drain,
    order_body,
    submit,
    write_config,
    zoho_settings,
)
from tests.faults import free_port
from tests.processes import LISTENING, serve, wait_until
from tests.test_zoho import CONFIRM_PATH, SO_PATH, zoho_worker

REASON = {"reason": "Payment reversed by the customer's bank"}
VOID = r"/salesorders/\d+/status/void"


def cancel(server: LiveServer, http: requests.Session, order_id: str, body=None):
    return http.post(server.endpoint(f"/orders/{order_id}/cancel"), json=body or REASON)


def events(order_id: str, event: str) -> list[dict]:
    found = WebhookDelivery.select().where(
        (WebhookDelivery.order_ref == order_id) & (WebhookDelivery.event == event)
    )
    return [json.loads(d.body) for d in found]


def fulfilled(server: LiveServer, *bodies: dict) -> requests.Session:
    """The orders submitted and run; the product NORTON-1Y is declined: its orders FAIL."""
    http = submit(server, *bodies)
    drain(declining_worker(server))
    return http


def fulfilled_in_zoho(
    server: LiveServer, zoho: ZohoEnv, *bodies: dict
) -> tuple[requests.Session, Worker]:
    """The orders submitted and run against the Zoho stand-in: the session, and the worker."""
    http = submit(server, *bodies)
    worker = zoho_worker(server, zoho)
    drain(worker)
    return http, worker


def test_a_pending_order_is_cancelled_at_once_and_never_provisioned(
    server: LiveServer, catalogue
) -> None:
    http = submit(server, order_body("T2-1"))

    answer = cancel(server, http, "T2-1")

    assert answer.status_code == 200
    order = answer.json()
    assert order["status"] == "CANCELLED" and order["fulfilment"] is None
    assert order["cancellation"]["reason"] == REASON["reason"]
    assert order["cancellation"]["cancelledAt"] == order["cancellation"]["requestedAt"]
    drain(daemon_worker(server))  # the order's processing job runs, and does nothing
    assert http.get(server.endpoint("/orders/T2-1")).json()["status"] == "CANCELLED"
    assert SandboxSalesOrder.select().count() == 0, "nothing provisioned"
    (event,) = events("T2-1", "order.cancelled")
    assert event["data"] == http.get(server.endpoint("/orders/T2-1")).json()
    assert events("T2-1", "order.fulfilled") == []

    again = cancel(server, http, "T2-1", {"reason": "Another reason"})
    assert again.status_code == 200
    assert again.json()["cancellation"]["reason"] == REASON["reason"], "nothing new happens"
    assert len(events("T2-1", "order.cancelled")) == 1


def test_a_fulfilled_order_is_voided_then_cancelled_and_its_subscription_ended(
    server: LiveServer, catalogue
) -> None:
    http = fulfilled(server, order_body("T2-1"))
    before = http.get(server.endpoint("/orders/T2-1")).json()

    answer = cancel(server, http, "T2-1")

    assert answer.status_code == 202
    assert answer.json()["status"] == "FULFILLED"
    assert answer.json()["cancellation"]["cancelledAt"] is None, "under way"
    assert cancel(server, http, "T2-1").status_code == 202, "asked twice: still under way"
    assert Job.select().where(Job.task == cancellation.TASK).count() == 1
    drain(daemon_worker(server))

    order = http.get(server.endpoint("/orders/T2-1")).json()
    assert order["status"] == "CANCELLED"
    assert order["fulfilment"] == before["fulfilment"], "it keeps the (now void) sales order"
    (sales,) = SandboxSalesOrder.select()
    assert sales.voided_at is not None
    ended = Subscription.get_by_id(Order.get(Order.order_id == "T2-1").subscription_id)
    assert clock.rfc3339(ended.expires_at) == order["cancellation"]["cancelledAt"]
    (event,) = events("T2-1", "order.cancelled")
    assert event["data"] == order
    assert cancel(server, http, "T2-1").status_code == 200
    assert len(events("T2-1", "order.cancelled")) == 1

    assert "1 expired" in expiry.check(clock.now()), "its expiry follows the new date"
    (expired,) = events("T2-1", "subscription.expired")
    assert expired["data"]["orderId"] == "T2-1"


def test_the_refusals_say_why_and_change_nothing(server: LiveServer, catalogue) -> None:
    http = fulfilled(server, order_body("T2-OLD"), order_body("T2-FAIL", **NORTON))
    Order.update(fulfilled_at=clock.now() - timedelta(days=7, minutes=1)).where(
        Order.order_id == "T2-OLD"
    ).execute()
    other = server.session(server.add_partner("other").key.api_key)

    late = cancel(server, http, "T2-OLD")
    failed = cancel(server, http, "T2-FAIL")
    unknown = cancel(server, http, "T2-NONE")
    not_theirs = cancel(server, other, "T2-OLD")

    assert late.status_code == failed.status_code == 409
    assert late.json()["type"] == "urn:t2ctl:problem:not-cancellable"
    assert "could be cancelled until" in late.json()["detail"]
    assert "FAILED" in failed.json()["detail"]
    assert unknown.status_code == not_theirs.status_code == 404
    for body, field in (
        ({}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 201}, "reason"),
        ({"reason": "tab\there"}, "reason"),
        ({"reason": "ok", "refund": True}, "refund"),
    ):
        invalid = http.post(server.endpoint("/orders/T2-FAIL/cancel"), json=body)
        assert invalid.status_code == 422, body
        assert [e["field"] for e in invalid.json()["errors"]] == [field]
    assert http.post(server.endpoint("/orders/T2-FAIL/cancel"), data="{").status_code == 415
    malformed = http.post(
        server.endpoint("/orders/T2-FAIL/cancel"),
        data="{",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert Order.select().where(Order.cancel_requested_at.is_null(False)).count() == 0
    assert WebhookDelivery.select().where(WebhookDelivery.event == "order.cancelled").count() == 0


def test_a_renewal_is_cancelled_first_and_takes_its_term_back(
    server: LiveServer, catalogue
) -> None:
    http = fulfilled(server, order_body("T2-FIRST"))
    first_expiry = Subscription.get().expires_at
    assert http.post(
        server.endpoint("/fulfilment"), json=order_body("T2-RENEW", renewalOf="T2-FIRST")
    ).ok
    drain(daemon_worker(server))
    assert Subscription.get().expires_at == subscriptions.add_months(first_expiry, 12)
    expiry.reminders(first_expiry + timedelta(days=360), days=7)  # the renewed expiry's reminder

    refused = cancel(server, http, "T2-FIRST")
    assert refused.status_code == 409
    assert "cancel T2-RENEW first" in refused.json()["detail"]

    assert cancel(server, http, "T2-RENEW").status_code == 202
    drain(daemon_worker(server))
    assert http.get(server.endpoint("/orders/T2-RENEW")).json()["status"] == "CANCELLED"
    assert Subscription.get().expires_at == first_expiry, "the renewal's term taken back off"
    sent = expiry.reminders(first_expiry - timedelta(days=1), days=7)
    assert sent.startswith("1 "), "the reminder follows the new date"
    (reminder,) = [e for e in events("T2-FIRST", "subscription.expiring")]
    assert reminder["data"]["expiresAt"] == clock.rfc3339(first_expiry)

    renewing = http.post(
        server.endpoint("/fulfilment"), json=order_body("T2-AGAIN", renewalOf="T2-RENEW")
    )
    assert renewing.status_code == 422, "a cancelled order cannot be renewed"
    assert cancel(server, http, "T2-FIRST").status_code == 202, "now nothing builds on it"


def test_a_renewal_of_an_order_being_cancelled_is_refused(server: LiveServer, catalogue) -> None:
    http = fulfilled(server, order_body("T2-FIRST"))
    assert cancel(server, http, "T2-FIRST").status_code == 202

    renewal = http.post(
        server.endpoint("/fulfilment"), json=order_body("T2-RENEW", renewalOf="T2-FIRST")
    )

    assert renewal.status_code == 422
    assert renewal.json()["errors"] == [
        {"field": "renewalOf", "message": "names an order that is being cancelled"}
    ]


def test_a_fulfilled_order_in_zoho_has_its_sales_order_voided_once(
    server: LiveServer, zoho: ZohoEnv
) -> None:
    http, worker = fulfilled_in_zoho(server, zoho, order_body("T2-1"))

    assert cancel(server, http, "T2-1").status_code == 202
    drain(worker)

    assert http.get(server.endpoint("/orders/T2-1")).json()["status"] == "CANCELLED"
    (voided,) = zoho.standin.voided()
    assert voided["reference_number"] == "T2-1"
    assert len(zoho.standin.api_calls("POST", VOID)) == 1
    assert ZohoSalesOrder.get().state == "void"


def test_a_void_whose_answer_was_lost_is_not_sent_again(server: LiveServer, zoho: ZohoEnv) -> None:
    zoho.settings = zoho_settings(server.settings, zoho.standin, zoho.url, timeout_seconds=0.5)
    http, worker = fulfilled_in_zoho(server, zoho, order_body("T2-1"))
    assert cancel(server, http, "T2-1").status_code == 202
    held = zoho.standin.hold("POST", VOID, after=True)  # voided; the answer held past 0.5 s

    runner = threading.Thread(target=worker.run_once)
    runner.start()
    assert held.reached.wait(10)
    runner.join(timeout=10)
    held.release()
    assert Order.get().status == "FULFILLED", "the void's outcome is unknown: to be retried"
    Job.update(run_at=clock.now()).where(Job.task == cancellation.TASK).execute()
    drain(worker)

    assert Order.get().status == "CANCELLED"
    assert len(zoho.standin.voided()) == 1
    assert len(zoho.standin.api_calls("POST", VOID)) == 1, "the look-up found it void"


@pytest.mark.parametrize("turn", ["before", "together", "after"])
def test_a_cancel_racing_provisioning_ends_cancelled_with_one_void(
    server: LiveServer, zoho: ZohoEnv, turn: str
) -> None:
    """The create is held in Zoho while the order is PROCESSING; the cancel arrives before
    the create is let go, together with it, or after it (racing the FULFILLED commit)."""
    http = submit(server)
    worker = zoho_worker(server, zoho)
    for n in range(8):
        order_id = f"T2-RACE-{n}"
        assert http.post(server.endpoint("/fulfilment"), json=order_body(order_id)).ok
        held = zoho.standin.hold("POST", f"{SO_PATH}$")
        runner = threading.Thread(target=worker.run_once)
        runner.start()
        assert held.reached.wait(10)
        answers: list[int] = []

        def ask(order_id: str = order_id, answers: list[int] = answers) -> None:
            answers.append(cancel(server, http, order_id).status_code)

        asking = threading.Thread(target=ask)
        if turn == "before":
            asking.start()
            asking.join()
            held.release()
        elif turn == "together":
            asking.start()
            held.release()
        else:
            held.release()
            asking.start()
        asking.join()
        runner.join(timeout=20)
        drain(worker)

        assert answers == [202]
        order = http.get(server.endpoint(f"/orders/{order_id}")).json()
        assert order["status"] == "CANCELLED", (turn, n)
        voided = [s for s in zoho.standin.voided() if s["reference_number"] == order_id]
        made = zoho.standin.salesorders.values()
        created = [s for s in made if s["reference_number"] == order_id]
        assert len(created) == len(voided) == 1, (turn, n)
        assert len(events(order_id, "order.cancelled")) == 1
        if turn == "before":
            assert events(order_id, "order.fulfilled") == [], "never FULFILLED after the cancel"
    assert len(zoho.standin.api_calls("POST", VOID)) == 8
    if turn == "before":
        assert Subscription.select().count() == 0, "no outcome kept: no subscription started"


def test_orders_cancel_is_audited_and_shown(cli: Cli, server: LiveServer, catalogue) -> None:
    fulfilled(server, order_body("T2-1"), order_body("T2-2"))

    done = cli("orders", "cancel", "T2-1", "--reason", "Refunded at the shop", "--json")
    refused = cli("orders", "cancel", "T2-1", "--reason", "")
    missing = cli("orders", "cancel", "T2-404", "--reason", "Refunded")

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["cancellation"]["reason"] == "Refunded at the shop"
    assert refused.exit_code == 1 and "reason" in refused.output
    assert missing.exit_code == 3
    (audited,) = AuditEvent.select().where(AuditEvent.action == "orders.cancel")
    assert audited.target == "T2-1" and audited.details["reason"] == "Refunded at the shop"
    drain(daemon_worker(server))
    shown = cli("orders", "show", "T2-1")
    assert "cancelled" in shown.stdout and "Refunded at the shop" in shown.stdout
    assert cli("orders", "list", "--status", "cancelled", "--json").stdout.count("T2-1") == 1


def test_a_sigkill_between_the_void_and_cancelled_is_finished_on_restart_without_a_second_void(
    zoho: ZohoEnv, tmp_path: Path
) -> None:
    """A real daemon is killed while Zoho has voided the sales order and its answer is on the
    way; the daemon started again finishes the cancellation, and sends no second void."""
    box = SecretBox(zoho.settings.security.master_keys)
    key = partners.add("t2mobile", "https://127.0.0.1:9/hook", box=box, sandbox=False).key
    config = write_config(
        tmp_path / "config.toml",
        zoho.settings,
        zoho.config_toml(rate_period="1s") + "\n[worker]\nlease_seconds = 5\n",
    )
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key.api_key}"
    with serve(tmp_path, config, "--port", str(free_port())) as daemon:
        url = LISTENING.search(daemon.log).group(1) + "/t2mobile"
        assert http.post(f"{url}/fulfilment", json=order_body("T2-1")).status_code == 202
        wait_until(lambda: Order.get().status == "FULFILLED", what="the order fulfilled")
        held = zoho.standin.hold("POST", VOID, after=True)
        assert http.post(f"{url}/orders/T2-1/cancel", json=REASON).status_code == 202
        assert held.reached.wait(30), "the void was sent"
        daemon.kill()
    held.release()
    assert len(zoho.standin.voided()) == 1, "Zoho voided it; t2ctl never heard"
    assert Order.get().status == "FULFILLED"

    with serve(tmp_path, config, "--port", str(free_port())) as daemon:
        wait_until(lambda: Order.get().status == "CANCELLED", what="the cancellation finished")
        assert daemon.stop() == 0

    assert len(zoho.standin.api_calls("POST", VOID)) == 1, "no second void"
    assert ZohoSalesOrder.get().state == "void"
    assert len(events("T2-1", "order.cancelled")) == 1
    cancelled = Order.get()
    assert Subscription.get().expires_at == cancelled.cancelled_at, "its subscription ended"


def test_a_void_zoho_refuses_keeps_the_cancellation_under_way_until_it_is_cleared(
    server: LiveServer, zoho: ZohoEnv
) -> None:
    http, worker = fulfilled_in_zoho(server, zoho, order_body("T2-1"))
    refusal = {"code": 36015, "message": "Invoiced sales orders cannot be voided."}
    zoho.standin.fail("POST", VOID, status=400, body=refusal)
    assert cancel(server, http, "T2-1").status_code == 202

    drain(worker)

    order = http.get(server.endpoint("/orders/T2-1")).json()
    assert order["status"] == "FULFILLED" and order["cancellation"]["cancelledAt"] is None
    job = Job.get(Job.task == cancellation.TASK)
    assert job.state == "queued" and "refused to void" in job.last_error
    assert job.run_at > clock.now() + timedelta(minutes=9), "tried again now and then"
    Job.update(run_at=clock.now()).where(Job.id == job.id).execute()  # cleared in Zoho
    drain(worker)
    assert http.get(server.endpoint("/orders/T2-1")).json()["status"] == "CANCELLED"
    assert len(zoho.standin.voided()) == 1


def test_a_cancel_while_provisioning_fails_after_the_create_voids_what_it_left(
    server: LiveServer, zoho: ZohoEnv
) -> None:
    """The create goes through, the confirm is refused for good: the order would FAIL, but
    its cancellation was asked for meanwhile, so the draft sales order is voided instead."""
    http = submit(server, order_body("T2-1"))
    worker = zoho_worker(server, zoho)
    held = zoho.standin.hold("POST", f"{SO_PATH}$")
    runner = threading.Thread(target=worker.run_once)
    runner.start()
    assert held.reached.wait(10)
    assert cancel(server, http, "T2-1").status_code == 202
    zoho.standin.fail("POST", CONFIRM_PATH, status=400)
    held.release()
    runner.join(timeout=20)
    drain(worker)

    order = http.get(server.endpoint("/orders/T2-1")).json()
    assert order["status"] == "CANCELLED" and order["error"] is None
    (left,) = zoho.standin.salesorders.values()
    assert left["status"] == "void", "the draft it left is voided"
    assert events("T2-1", "order.failed") == []
    assert len(events("T2-1", "order.cancelled")) == 1


def test_a_first_order_waits_for_its_renewals_cancellation_to_finish(
    server: LiveServer, zoho: ZohoEnv
) -> None:
    http, worker = fulfilled_in_zoho(server, zoho, order_body("T2-FIRST"))
    renewal = order_body("T2-RENEW", renewalOf="T2-FIRST")
    assert http.post(server.endpoint("/fulfilment"), json=renewal).status_code == 202
    drain(worker)
    zoho.standin.fail("POST", VOID, status=400, times=1)  # the renewal's void waits a while
    assert cancel(server, http, "T2-RENEW").status_code == 202
    drain(worker)

    refused = cancel(server, http, "T2-FIRST")

    assert refused.status_code == 409
    assert "once T2-RENEW is CANCELLED" in refused.json()["detail"]
    Job.update(run_at=clock.now()).where(Job.task == cancellation.TASK).execute()
    drain(worker)
    assert cancel(server, http, "T2-FIRST").status_code == 202
    drain(worker)
    held = Subscription.get()
    assert held.expires_at == Order.get(Order.order_id == "T2-FIRST").cancelled_at
    assert held.expires_at >= held.starts_at


def test_renewals_cancelled_together_keep_every_date_straight(
    server: LiveServer, catalogue
) -> None:
    """Three renewals of one order; two are cancelled and finish on two workers at once: the
    third moves back by both terms, and the subscription ends with it."""
    http = fulfilled(server, order_body("T2-A"))
    for n in (1, 2, 3):
        body = order_body(f"T2-R{n}", renewalOf="T2-A")
        assert http.post(server.endpoint("/fulfilment"), json=body).status_code == 202
        drain(daemon_worker(server))
    bought = {o.order_id: (o.starts_at, o.expires_at) for o in Order.select()}
    assert cancel(server, http, "T2-R1").status_code == 202
    assert cancel(server, http, "T2-R2").status_code == 202

    workers = [daemon_worker(server) for _ in range(2)]
    at_once(2, lambda: drain(workers.pop()))
    drain(daemon_worker(server))  # one that met a lock timeout or deadlock is retried

    assert {o.order_id: o.status for o in Order.select()} == {
        "T2-A": "FULFILLED",
        "T2-R1": "CANCELLED",
        "T2-R2": "CANCELLED",
        "T2-R3": "FULFILLED",
    }
    third = Order.get(Order.order_id == "T2-R3")
    assert (third.starts_at, third.expires_at) == bought["T2-R1"], "back by two terms"
    assert Subscription.get().expires_at == third.expires_at
    failed_runs = Job.select().where(Job.last_error.contains("deadlock")).count()
    assert failed_runs == 0, "the subscription lock orders the two"


def test_a_renewal_of_a_lapsed_subscription_cancelled_leaves_it_lapsed_as_it_was(
    server: LiveServer, catalogue
) -> None:
    http = fulfilled(server, order_body("T2-A"))
    lapsed = clock.now() - timedelta(days=30)
    Order.update(expires_at=lapsed).where(Order.order_id == "T2-A").execute()
    Subscription.update(expires_at=lapsed).execute()
    assert "1 expired" in expiry.check(clock.now())
    renewal = order_body("T2-R", renewalOf="T2-A")
    assert http.post(server.endpoint("/fulfilment"), json=renewal).status_code == 202
    drain(daemon_worker(server))
    assert Subscription.get().expires_at > clock.now()

    assert cancel(server, http, "T2-R").status_code == 202
    drain(daemon_worker(server))

    assert Subscription.get().expires_at == lapsed
    assert expiry.check(clock.now()).startswith("0 "), "its expiry was announced already"
    assert len(events("T2-A", "subscription.expired")) == 1


def test_orders_cancel_refused_exits_1_and_audits_nothing(
    cli: Cli, server: LiveServer, catalogue
) -> None:
    fulfilled(server, order_body("T2-1"))
    Order.update(fulfilled_at=clock.now() - timedelta(days=8)).execute()

    refused = cli("orders", "cancel", "T2-1", "--reason", "Refunded")

    assert refused.exit_code == 1
    assert "could be cancelled until" in refused.stderr
    assert AuditEvent.select().where(AuditEvent.action == "orders.cancel").count() == 0
    assert Order.get().cancel_requested_at is None
