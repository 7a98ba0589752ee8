"""The order pipeline, through the engine: an order accepted over HTTP is processed by a
worker to FULFILLED or FAILED through the sandbox provisioner, on SQLite and on PostgreSQL."""

from datetime import datetime, timedelta

from t2ctl import clock, provisioning
from t2ctl.db.models import Order, SandboxSalesOrder, WebhookDelivery
from t2ctl.jobs import admin, queue, tasks
from t2ctl.jobs.models import Job
from t2ctl.jobs.worker import Worker
from t2ctl.orders import pipeline, processing, subscriptions
from t2ctl.provisioning.sandbox import SandboxProvisioner
from tests.conftest import (
    Cli,
    LiveServer,
    daemon_worker,
    declining_worker,
    drain,
    order_body,
    order_job,
    submit,
)

LEASE = timedelta(seconds=30)


def test_an_accepted_order_commits_with_its_job_and_is_fulfilled(
    server: LiveServer, catalogue
) -> None:
    http = server.session(server.add_partner().key.api_key)
    http.post(server.endpoint("/fulfilment"), json=order_body("T2-1"))
    order = Order.get()
    job = Job.get()
    assert (job.task, job.state, job.payload) == ("process_order", "queued", {"order": order.id})

    assert drain(daemon_worker(server)) == 1, "one claim: the order, then its webhook at once"
    webhook = Job.get(Job.task == "deliver")
    assert webhook.attempts == 1, "tried once (this partner's URL answers nothing: retried later)"
    assert WebhookDelivery.get().attempts == 1
    body = http.get(server.endpoint("/orders/T2-1")).json()
    assert body["status"] == "FULFILLED" and body["error"] is None
    fulfilment = body["fulfilment"]
    assert fulfilment["activationReference"] == fulfilment["salesOrderNumber"]
    assert fulfilment["activationReference"].startswith("SBX-")
    assert fulfilment["activationReference"][4:].isdigit()
    starts = datetime.fromisoformat(fulfilment["startsAt"])
    assert datetime.fromisoformat(fulfilment["expiresAt"]) == subscriptions.add_months(starts, 12)
    (sales,) = SandboxSalesOrder.select().where(SandboxSalesOrder.reference_number == "T2-1")
    assert fulfilment["salesOrderId"] == str(sales.id)
    assert order_job().state == "done"


def test_a_stray_second_job_for_a_finished_order_changes_nothing(
    server: LiveServer, catalogue
) -> None:
    submit(server, order_body("T2-1"))
    worker = daemon_worker(server)
    drain(worker)
    before = Order.get()
    queue.enqueue(pipeline.TASK, {"order": before.id})
    assert drain(worker) == 1
    after = Order.get()
    assert (after.status, after.activation_reference) == ("FULFILLED", before.activation_reference)
    assert after.updated_at == before.updated_at
    assert SandboxSalesOrder.select().count() == 1


def test_a_declined_order_fails_then_an_operator_retry_fulfils_it(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    submit(server, order_body("T2-1"))
    drain(declining_worker(server, "M365-BASIC-12M"))
    assert Order.get().status == "FAILED"
    shown = cli("orders", "show", "T2-1", "--json")
    assert shown.exit_code == 0
    assert '"code": "PRODUCT_UNAVAILABLE"' in shown.stdout
    assert SandboxSalesOrder.select().count() == 0

    retried = cli("orders", "retry", "T2-1")
    assert retried.exit_code == 0, retried.stderr
    assert "T2-1 is PENDING again" in retried.stderr
    pending = Order.get()
    assert (pending.status, pending.error_code) == ("PENDING", None)
    assert cli("orders", "retry", "T2-1").exit_code == 1, "a PENDING order is not retried"

    drain(daemon_worker(server))
    assert Order.get().status == "FULFILLED"
    again = cli("orders", "retry", "T2-1")
    assert again.exit_code == 1
    assert "order T2-1 is FULFILLED; only FAILED orders can be retried" in again.stderr
    assert cli("orders", "retry", "T2-NONE").exit_code == 3


class Unsteady:
    """A provisioner that is unreachable for its first ``outages`` calls, then the sandbox."""

    def __init__(self, outages: int, retry_after: timedelta | None = None):
        self.outages = outages
        self.retry_after = retry_after
        self.calls: list[bool] = []
        self.sandbox = SandboxProvisioner()

    def provision(self, request: provisioning.Request, *, resume: bool) -> provisioning.SalesOrder:
        self.calls.append(resume)
        if len(self.calls) <= self.outages:
            raise provisioning.Unreachable("503 from upstream", retry_after=self.retry_after)
        return self.sandbox.provision(request, resume=resume)


def worker_with(server: LiveServer, provisioner, *, retry_for: timedelta) -> Worker:
    registry = tasks.Registry()
    processing.register(registry, provisioner=provisioner, box=server.box, retry_for=retry_for)
    return Worker(registry, name="test-worker", lease=LEASE)


def test_transient_failures_are_retried_with_backoff_and_resume(
    server: LiveServer, catalogue
) -> None:
    unsteady = Unsteady(outages=2, retry_after=timedelta(seconds=90))
    worker = worker_with(server, unsteady, retry_for=timedelta(hours=24))
    submit(server, order_body("T2-1"))
    assert worker.run_once()
    job = order_job()
    assert (job.state, job.attempts, job.last_error) == ("queued", 1, "503 from upstream")
    assert job.run_at - clock.now() > timedelta(seconds=85), "Retry-After is honoured"
    assert Order.get().status == "PROCESSING"
    while order_job().state == "queued":
        assert worker.run_once(now=order_job().run_at)
    assert Order.get().status == "FULFILLED"
    assert unsteady.calls == [False, True, True], "later attempts are told to resume"
    assert order_job().attempts == 3


def test_an_order_fails_once_transient_failures_outlast_retry_for(
    server: LiveServer, catalogue
) -> None:
    worker = worker_with(server, Unsteady(outages=100), retry_for=timedelta(0))
    submit(server, order_body("T2-1"))
    assert worker.run_once()
    order = Order.get()
    assert (order.status, order.error_code) == ("FAILED", "PROVISIONING_UNAVAILABLE")
    assert "503" not in order.error_message, "no internal detail reaches the partner"
    assert order_job().state == "done"


def test_retrying_an_order_whose_job_is_still_winding_up_changes_nothing(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    submit(server, order_body("T2-1"))
    (held,) = queue.claim("busy-worker", now=clock.now(), lease=LEASE)
    Order.update(status="FAILED", error_code="X", error_message="x").execute()
    result = cli("orders", "retry", "T2-1")
    assert result.exit_code == 1
    assert "order T2-1 is still being wound up; retry in a few seconds" in result.stderr
    assert (Order.get().status, Order.get().error_code) == ("FAILED", "X")
    assert Job.select().count() == 1 and admin.get(held.id).state == "running"
