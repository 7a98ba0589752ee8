"""Webhooks end to end: orders and expiries become deliveries in the outbox, sent over real
HTTP to a receiver on loopback, verified with the ``standardwebhooks`` library (never with
t2ctl's own code), retried on the schedule under one webhook-id, dead after the last try and
sent again by hand. Each test runs on SQLite and on PostgreSQL."""

import base64
import json
import socket
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from t2ctl import clock, db, partners
from t2ctl.config import Settings
from t2ctl.db.models import Subscription, WebhookAttempt, WebhookDelivery
from t2ctl.jobs import tasks
from t2ctl.jobs.models import Job
from t2ctl.jobs.worker import Worker
from t2ctl.orders import expiry
from t2ctl.security.crypto import SecretBox
from t2ctl.webhooks import deliveries, outbox
from t2ctl.webhooks.delivery import Deliverer, Result, Sender
from tests.conftest import (
    Cli,
    LiveServer,
    at_once,
    daemon_worker,
    declining_worker,
    drain,
    make_settings,
    order_body,
    write_config,
)
from tests.hooks import Hook
from tests.openapi_check import SPEC, assert_event_documented
from tests.plans import statements
from tests.processes import serve, wait_until


def partner_to(server: LiveServer, url: str, name: str = "t2mobile") -> partners.NewPartner:
    new = partners.add(name, url, box=server.box, sandbox=True)
    partners.update(name, sandbox=True, rate_limit="1000/minute")
    return new


def post_order(server: LiveServer, new: partners.NewPartner, order_id: str, **changes):
    http = server.session(new.key.api_key)
    response = http.post(server.endpoint("/fulfilment"), json=order_body(order_id, **changes))
    assert response.status_code == 202, response.text
    return http


def with_settings(server: LiveServer, **sections: dict) -> Settings:
    """The server's database and master key, with other settings."""
    key = server.settings.security.master_key.get_secret_value()
    return make_settings(server.settings.database.url, security={"master_key": key}, **sections)


def job_of(delivery: WebhookDelivery) -> Job:
    """The delivery's latest job."""
    return (
        Job.select()
        .where(Job.unique_key == f"webhook:{delivery.id}")
        .order_by(Job.id.desc())
        .first()
    )


def next_try(worker: Worker, delivery: WebhookDelivery) -> WebhookDelivery:
    """Run the delivery's next try as if its time had come."""
    assert worker.run_once(now=job_of(delivery).run_at)
    return WebhookDelivery.get_by_id(delivery.id)


def verified(secret: str, received) -> dict:
    return Webhook(secret).verify(received.body, received.headers)


def test_every_delivery_verifies_with_standardwebhooks_also_during_a_rotation_grace(
    server: LiveServer, catalogue, hook: Hook, cli: Cli
) -> None:
    first = partner_to(server, hook.url)
    http = post_order(server, first, "T2-1")
    drain(daemon_worker(server))

    (got,) = hook.received
    event = verified(first.webhook_secret, got)
    assert event["type"] == "order.fulfilled"
    assert event["data"] == http.get(server.endpoint("/orders/T2-1")).json()
    assert event["timestamp"].endswith("Z") and got.webhook_id.startswith("msg_")
    assert len(got.headers["webhook-signature"].split(" ")) == 1

    rotated = cli("secrets", "rotate-webhook", "--partner", "t2mobile", "--grace", "1h", "--json")
    assert rotated.exit_code == 0, rotated.stderr
    second = json.loads(rotated.stdout)["webhookSecret"]
    assert second.startswith("whsec_") and second != first.webhook_secret
    post_order(
        server,
        first,
        "T2-2",
        productId="NORTON-1Y",
        amount={"value": "9999.99", "currency": "NGN"},
    )
    drain(declining_worker(server))

    during = hook.received[1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (first.webhook_secret, second):
        event = verified(secret, during)  # each secret alone verifies it
        assert event["type"] == "order.failed" and event["data"]["status"] == "FAILED"
    with pytest.raises(WebhookVerificationError):
        verified(partners.new_webhook_secret(), during)

    ended = cli("secrets", "rotate-webhook", "--partner", "t2mobile", "--grace", "0s", "--json")
    third = json.loads(ended.stdout)["webhookSecret"]
    post_order(server, first, "T2-3")
    drain(daemon_worker(server))
    after = hook.received[2]
    assert verified(third, after)["data"]["orderId"] == "T2-3"
    for retired in (first.webhook_secret, second):
        with pytest.raises(WebhookVerificationError):
            verified(retired, after)
    for received in hook.received:
        assert_event_documented(json.loads(received.body))


def test_retries_keep_the_webhook_id_on_the_schedule_with_jitter(
    server: LiveServer, catalogue, hook: Hook
) -> None:
    hook.answer(500, times=2, body="upstream broke")
    post_order(server, partner_to(server, hook.url), "T2-1")
    worker = daemon_worker(server)
    drain(worker)

    delivery = WebhookDelivery.get()
    waits = []
    while delivery.status == "pending":
        last = WebhookAttempt.select().order_by(WebhookAttempt.id.desc()).get()
        waits.append((delivery.next_attempt_at - last.attempted_at).total_seconds())
        delivery = next_try(worker, delivery)

    assert delivery.status == "delivered" and delivery.attempts == 3
    assert 4 <= waits[0] <= 6, "5 s ± 20 %"
    assert 240 <= waits[1] <= 360, "5 min ± 20 %"
    assert [r.webhook_id for r in hook.received] == [delivery.webhook_id] * 3
    assert len({r.body for r in hook.received}) == 1, "the same body on every try"
    tries = deliveries.attempts(delivery)
    assert [(t.outcome, t.status_code) for t in tries] == [
        ("failed", 500),
        ("failed", 500),
        ("delivered", 204),
    ]
    assert tries[0].excerpt == "upstream broke" and tries[0].error == "HTTP 500"
    assert all(t.latency_ms is not None and t.trigger == "scheduled" for t in tries)


def test_a_redirect_is_not_followed(server: LiveServer, catalogue, hook: Hook) -> None:
    hook.answer(302, Location="/elsewhere")
    post_order(server, partner_to(server, hook.url), "T2-1")
    drain(daemon_worker(server))

    assert [r.path for r in hook.received] == ["/hooks"]
    delivery = WebhookDelivery.get()
    (attempt,) = deliveries.attempts(delivery)
    assert (attempt.outcome, attempt.status_code) == ("failed", 302)
    assert "not followed" in attempt.error
    assert delivery.status == "pending", "a 3xx is a failure, tried again"


def test_retry_after_is_honoured_when_later_than_the_schedule(
    server: LiveServer, catalogue, hook: Hook
) -> None:
    hook.answer(429, **{"Retry-After": "120"})
    hook.answer(503, **{"Retry-After": "1"})
    post_order(server, partner_to(server, hook.url), "T2-1")
    worker = daemon_worker(server)
    drain(worker)

    delivery = WebhookDelivery.get()
    first = WebhookAttempt.get()
    assert delivery.next_attempt_at - first.attempted_at >= timedelta(seconds=120)
    assert job_of(delivery).run_at >= first.attempted_at + timedelta(seconds=119)

    delivery = next_try(worker, delivery)
    second = WebhookAttempt.select().order_by(WebhookAttempt.id.desc()).get()
    wait = delivery.next_attempt_at - second.attempted_at
    assert timedelta(minutes=4) <= wait <= timedelta(minutes=6), "an earlier one is not"
    assert next_try(worker, delivery).status == "delivered"


def test_exhaustion_leads_to_dead_and_a_resend_delivers_with_the_same_id(
    server: LiveServer, catalogue, hook: Hook, cli: Cli
) -> None:
    hook.answer(500, times=3)
    short = with_settings(server, webhooks={"retry_schedule": ["1s", "2s"]})
    post_order(server, partner_to(server, hook.url), "T2-1")
    worker = daemon_worker(server, short)
    drain(worker)
    delivery = WebhookDelivery.get()
    while delivery.status == "pending":
        delivery = next_try(worker, delivery)
    drain(worker)  # the last try's job is recorded done

    assert (delivery.status, delivery.attempts, delivery.last_status) == ("dead", 3, 500)
    assert job_of(delivery).state == "done"
    listed = json.loads(cli("webhooks", "list", "--status", "dead", "--json").stdout)
    assert [(d["id"], d["webhookId"], d["orderId"]) for d in listed] == [
        (delivery.id, delivery.webhook_id, "T2-1")
    ]
    shown = cli("webhooks", "show", str(delivery.id))
    assert shown.exit_code == 0 and "attempts" in shown.stdout
    assert shown.stdout.count("failed") == 3, "one row per attempt"

    resent = cli("webhooks", "resend", "--dead", "--since", "1h")
    assert resent.exit_code == 0, resent.stderr
    assert "1 dead delivery(ies) queued" in resent.stderr
    drain(worker)

    delivery = WebhookDelivery.get_by_id(delivery.id)
    assert delivery.status == "delivered"
    assert [r.webhook_id for r in hook.received] == [delivery.webhook_id] * 4
    history = json.loads(cli("webhooks", "show", str(delivery.id), "--json").stdout)["history"]
    assert [(h["trigger"], h["statusCode"]) for h in history] == [
        ("scheduled", 500),
        ("scheduled", 500),
        ("scheduled", 500),
        ("manual", 204),
    ]


def test_a_resend_of_a_pending_delivery_brings_its_next_try_forward(
    server: LiveServer, catalogue, hook: Hook, cli: Cli
) -> None:
    hook.answer(500)
    post_order(server, partner_to(server, hook.url), "T2-1")
    worker = daemon_worker(server)
    drain(worker)
    delivery = WebhookDelivery.get()
    assert job_of(delivery).run_at > clock.now(), "waiting out its first backoff"

    assert cli("webhooks", "resend", str(delivery.id)).exit_code == 0
    assert drain(worker) == 1
    assert WebhookDelivery.get_by_id(delivery.id).status == "delivered"
    assert Job.select().where(Job.unique_key == f"webhook:{delivery.id}").count() == 1
    assert [t.trigger for t in deliveries.attempts(delivery)] == ["scheduled", "manual"]
    shown = cli("orders", "show", "T2-1").stdout
    assert "webhooks" in shown and "order.fulfilled" in shown and "delivered" in shown
    assert len(json.loads(cli("webhooks", "list", "--order", "T2-1", "--json").stdout)) == 1
    assert json.loads(cli("webhooks", "list", "--order", "T2-9", "--json").stdout) == []


@pytest.mark.parametrize(("rng", "factor"), [(0.0, 0.8), (1.0, 1.2)])
def test_each_wait_is_its_schedule_step_within_20_percent(rng: float, factor: float) -> None:
    schedule = [timedelta(seconds=5), timedelta(minutes=5)]
    box = SecretBox([Fernet.generate_key().decode()])
    deliverer = Deliverer(None, box=box, schedule=schedule, rng=lambda: rng)
    failed = Result("failed", 500)
    assert deliverer.wait(failed, 1) == timedelta(seconds=5) * factor
    assert deliverer.wait(failed, 2) == timedelta(minutes=5) * factor
    assert deliverer.wait(failed, 3) is None, "dead after the last step"
    later = Result("failed", 429, retry_after=timedelta(minutes=1))
    assert deliverer.wait(later, 1) == timedelta(minutes=1)
    assert deliverer.wait(later, 2) == timedelta(minutes=5) * factor
    assert deliverer.wait(Result("gone", 410), 1) is None


def test_odd_answers_are_recorded_not_crashed_on(server: LiveServer, catalogue, hook: Hook) -> None:
    hook.answer(429, **{"Retry-After": "99999999999999"})
    hook.answer(200, body="ok\x00ko")
    post_order(server, partner_to(server, hook.url), "T2-1")
    worker = daemon_worker(server)
    drain(worker)
    delivery = WebhookDelivery.get()
    first = WebhookAttempt.get()
    assert delivery.next_attempt_at - first.attempted_at == timedelta(days=1), "capped"

    delivery = next_try(worker, delivery)
    assert delivery.status == "delivered"
    assert deliveries.attempts(delivery)[-1].excerpt == "ok\ufffdko"


def test_credentials_and_query_of_a_webhook_url_are_not_recorded(
    server: LiveServer, catalogue, hook: Hook, cli: Cli
) -> None:
    url = hook.url.replace("http://", "http://user:hunter2@") + "?token=s3cret"
    post_order(server, partner_to(server, url), "T2-1")
    drain(daemon_worker(server))
    basic = hook.received[0].headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic) == b"user:hunter2"
    shown = cli("webhooks", "show", "1", "--json").stdout
    assert json.loads(shown)["history"][0]["url"] == hook.url + "?…"
    assert "hunter2" not in shown and "s3cret" not in shown


def test_410_gone_stops_the_retries(server: LiveServer, catalogue, hook: Hook) -> None:
    hook.answer(410)
    post_order(server, partner_to(server, hook.url), "T2-1")
    drain(daemon_worker(server))

    delivery = WebhookDelivery.get()
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("dead", 1, 410)
    assert job_of(delivery).state != "queued" and len(hook.received) == 1


def test_resend_usage_and_unknown_delivery(cli: Cli) -> None:
    assert cli("webhooks", "resend").exit_code == 2
    assert cli("webhooks", "resend", "1", "--dead").exit_code == 2
    assert cli("webhooks", "resend", "1", "--since", "1h").exit_code == 2
    assert cli("webhooks", "list", "--status", "lost").exit_code == 2
    missing = cli("webhooks", "show", "999")
    assert missing.exit_code == 3 and "no webhook delivery 999" in missing.stderr


def test_expiry_events_are_sent_exactly_once_across_repeated_and_concurrent_runs(
    server: LiveServer, catalogue, hook: Hook
) -> None:
    new = partner_to(server, hook.url)
    post_order(server, new, "T2-1")
    worker = daemon_worker(server)
    drain(worker)
    expires = Subscription.get().expires_at

    as_of = expires - timedelta(days=3)
    runs = at_once(6, lambda: expiry.reminders(as_of, days=7))
    runs += [expiry.reminders(as_of + timedelta(hours=h), days=7) for h in (1, 2)]
    assert sorted(run.split()[0] for run in runs) == ["0"] * 7 + ["1"]
    assert expiry.reminders(expires - timedelta(days=8), days=7).startswith("0"), "not yet due"

    expired_at = expires + timedelta(minutes=1)
    runs = [*at_once(4, lambda: expiry.check(expired_at)), expiry.check(expired_at)]
    assert sorted(run.split()[0] for run in runs) == ["0"] * 4 + ["1"]
    drain(worker)

    events = [verified(new.webhook_secret, r) for r in hook.received]
    assert [e["type"] for e in events] == [
        "order.fulfilled",
        "subscription.expiring",
        "subscription.expired",
    ]
    assert set(SPEC["webhooks"]) == set(outbox.EVENTS)
    for event in events:
        assert_event_documented(event)
    for event in events[1:]:
        assert event["data"] == {
            "orderId": "T2-1",
            "productId": "M365-BASIC-12M",
            "customer": {"id": "CUST-88"},
            "expiresAt": clock.rfc3339(expires),
        }

    # A renewal moves the expiry on; the new expiry is announced, once, in its turn.
    post_order(server, new, "T2-2", renewalOf="T2-1")
    drain(worker)
    renewed = Subscription.get().expires_at
    assert renewed > expires
    assert expiry.reminders(renewed - timedelta(days=1), days=7).startswith("1")
    assert expiry.reminders(renewed - timedelta(days=1), days=7).startswith("0")
    drain(worker)
    last = verified(new.webhook_secret, hook.received[-1])
    assert last["type"] == "subscription.expiring"
    assert last["data"]["orderId"] == "T2-2", "the order to renew from now"
    assert last["data"]["expiresAt"] == clock.rfc3339(renewed)


def test_recording_an_event_writes_its_two_rows_and_reads_nothing(server: LiveServer) -> None:
    """The outbox is on every order's path: the partner, given by id, is not loaded."""
    partner_id = partner_to(server, "http://127.0.0.1:9/hooks").partner.id
    with statements() as ran, db.transaction():
        outbox.record(partner_id, "order.fulfilled", {"orderId": "T2-1"}, occurred_at=clock.now())
    sent = [sql.split()[0] for sql, _ in ran if "pg_notify" not in sql]
    assert sent == ["INSERT", "INSERT"], ran


def test_a_partners_secret_is_decrypted_once_for_all_its_tries(
    server: LiveServer, hook: Hook
) -> None:
    opened: list[str] = []

    class Counting(SecretBox):
        def decrypt(self, token: str) -> str:
            opened.append(token)
            return super().decrypt(token)

    new = partner_to(server, hook.url)
    box = Counting(server.settings.security.master_keys)
    deliverer = Deliverer(Sender(timeout=10, guard=None), box=box, schedule=[timedelta(1)])
    for n in range(3):
        with db.transaction():
            event = outbox.record(
                new.partner.id, "order.fulfilled", {"n": n}, occurred_at=clock.now()
            )
        deliverer(
            tasks.Context(n, outbox.TASK, {"delivery": event.id}, 1, 1, clock.now(), clock.now())
        )
    assert len(hook.received) == 3 and len(opened) == 1
    assert all(verified(new.webhook_secret, got) for got in hook.received)


def test_a_try_whose_delivery_changed_meanwhile_is_recorded_and_changes_nothing(
    server: LiveServer, hook: Hook
) -> None:
    """The try is stored with its outcome; the state another hand gave the delivery while the
    try was in flight stands (on PostgreSQL one statement does both, on SQLite a
    transaction)."""
    new = partner_to(server, hook.url)
    with db.transaction():
        event = outbox.record(new.partner.id, "order.fulfilled", {"n": 1}, occurred_at=clock.now())

    class Overtaken(Sender):
        """Sends for real; meanwhile the delivery is given up on, as an operator might."""

        def send(self, url: str, headers: dict[str, str], body: str) -> Result:
            result = super().send(url, headers, body)
            with db.transaction():
                WebhookDelivery.update(status="dead").where(
                    WebhookDelivery.id == event.id
                ).execute()
            return result

    box = SecretBox(server.settings.security.master_keys)
    deliverer = Deliverer(Overtaken(timeout=10, guard=None), box=box, schedule=[timedelta(1)])
    deliverer(tasks.Context(1, outbox.TASK, {"delivery": event.id}, 1, 1, clock.now(), clock.now()))
    stored = WebhookDelivery.get_by_id(event.id)
    assert (stored.status, stored.attempts, stored.last_status) == ("dead", 0, None)
    tries = WebhookAttempt.select().where(WebhookAttempt.delivery == event.id)
    assert [(t.outcome, t.status_code) for t in tries] == [("delivered", 204)]
    assert len(hook.received) == 1


def test_prune_removes_attempts_past_retention_and_keeps_deliveries(
    server: LiveServer, catalogue, hook: Hook, cli: Cli
) -> None:
    post_order(server, partner_to(server, hook.url), "T2-1")
    drain(daemon_worker(server))
    assert cli("schedule", "run", "prune").exit_code == 0
    assert WebhookAttempt.select().count() == 1, "a fresh attempt is kept"

    WebhookAttempt.update(attempted_at=clock.now() - timedelta(days=31)).execute()
    result = cli("schedule", "run", "prune")
    assert "1 webhook attempt(s)" in result.stderr
    assert WebhookAttempt.select().count() == 0
    assert WebhookDelivery.get().status == "delivered"


def test_the_daemon_delivers_a_signed_order_outcome(
    server: LiveServer, catalogue, hook: Hook, tmp_path
) -> None:
    new = partner_to(server, hook.url)
    config = write_config(tmp_path / "config.toml", server.settings)
    with serve(tmp_path, config, "--role", "worker") as daemon:
        post_order(server, new, "T2-1")
        wait_until(lambda: len(hook.received) == 1, timeout=30, what="a delivery")
        assert daemon.stop() == 0
    event = verified(new.webhook_secret, hook.received[0])
    assert (event["type"], event["data"]["status"]) == ("order.fulfilled", "FULFILLED")


def test_a_receiver_that_refuses_is_told_plainly(server: LiveServer, catalogue) -> None:
    """The attempt's error is the cause in a line, as an operator reads it in `webhooks
    show`: no urllib3 connection repr in front of it."""
    # Bound and never listening: the port refuses, and no other test's server can take it.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        closed_port = bound.getsockname()[1]
        post_order(server, partner_to(server, f"http://127.0.0.1:{closed_port}/hooks"), "T2-1")
        drain(daemon_worker(server))

    (attempt,) = deliveries.attempts(WebhookDelivery.get())
    assert attempt.outcome == "failed" and attempt.status_code is None
    assert attempt.error.startswith("could not connect: Failed to establish a new connection")
    assert "Connection refused" in attempt.error
    assert "Connection(" not in attempt.error and " object at " not in attempt.error
