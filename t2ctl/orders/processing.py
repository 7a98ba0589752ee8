"""The ``process_order`` handler: PENDING → PROCESSING → FULFILLED or FAILED.

Each change is its own commit, made conditionally on the state before it, so a second runner
(a worker whose lease ran out while it was still working) changes nothing. An order found in
PROCESSING means an earlier attempt got part-way: the provisioner is told to resume, and
looks for that attempt's sales order before creating one. Transient failures are retried with
backoff until ``zoho.retry_for`` has passed since the job was queued; then the order FAILS.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from t2ctl import clock, db, products, provisioning
from t2ctl.db.models import Order
from t2ctl.jobs import tasks
from t2ctl.monitoring import logs, metrics
from t2ctl.orders import cancellation, intake, pipeline, records, subscriptions
from t2ctl.security import redaction
from t2ctl.security.crypto import SecretBox

logger = logging.getLogger(__name__)

GAVE_UP = {
    provisioning.Unreachable: (
        "PROVISIONING_UNAVAILABLE",
        "The subscription could not be provisioned: the provisioning service stayed unavailable.",
    ),
    Exception: ("PROCESSING_ERROR", "The order could not be processed."),
}


class Processor:
    def __init__(
        self, provisioner: provisioning.Provisioner, *, box: SecretBox, retry_for: timedelta
    ):
        self.provisioner = provisioner
        self.box = box
        self.retry_for = retry_for

    def __call__(self, context: tasks.Context) -> None:
        started = _start(context.payload["order"], now=context.now)
        if started is None:
            return
        order, resume = started
        with logs.bind(order_id=order.order_id):
            self._provision(order, resume, context)

    def _provision(self, order: Order, resume: bool, context: tasks.Context) -> None:
        try:
            sales = self.provisioner.provision(self._request(order), resume=resume)
        except provisioning.Rejected as exc:
            _finish(order, failure=(exc.code, str(exc)))
            return
        except Exception as exc:
            if context.now - context.enqueued_at < self.retry_for:
                if isinstance(exc, provisioning.Unreachable):
                    backoff = pipeline.BACKOFF.delay(context.attempt)
                    after = clock.retry_wait(exc.retry_after, backoff)
                    raise tasks.Retry(str(exc), after=after) from exc
                raise
            code, message = next(v for k, v in GAVE_UP.items() if isinstance(exc, k))
            logger.error(
                "order %s failed after retrying for %s: %s",
                order.order_id,
                self.retry_for,
                exc,
                extra={"action": "order_gave_up", "order_id": order.order_id},
            )
            _finish(order, failure=(code, message))
            return
        _finish(order, sales=sales)

    def _request(self, order: Order) -> provisioning.Request:
        stored = intake.stored_request(order, self.box)
        return provisioning.Request(
            partner=order.partner_id,
            order_id=order.order_id,
            product_id=stored.product_id,
            quantity=stored.quantity,
            unit_price=products.price(order.product),
            customer_id=stored.customer_id,
            customer_name=stored.customer_name,
            customer_email=stored.customer_email,
            customer_phone=stored.customer_phone,
        )


def register(
    registry: tasks.Registry,
    *,
    provisioner: provisioning.Provisioner,
    box: SecretBox,
    retry_for: timedelta,
) -> None:
    registry.add(
        pipeline.TASK,
        Processor(provisioner, box=box, retry_for=retry_for),
        backoff=pipeline.BACKOFF,
    )


def _start(pk: int, *, now: datetime) -> tuple[Order, bool] | None:
    """Move the order to PROCESSING; return it and whether an earlier attempt had already
    done so, or None when there is nothing left to do."""
    with db.single():
        moved = _START.changed(now, pk)
    order = records.find(pk)
    if order is None or order.status != "PROCESSING":
        return None
    if cancellation.handed_over(order):
        return None  # cancelled while provisioning: the cancel_order job undoes what it made
    return order, not moved


_START = db.prepared_update(
    [Order.updated_at],
    lambda pk: (Order.id == pk) & (Order.status == "PENDING"),
    fixed={Order.status: "PROCESSING"},
)


# What each outcome sets, only on an order still PROCESSING with no cancellation asked for:
# a fulfilment, its subscription too, in the same statement.
_OUTCOMES = {
    "FULFILLED": (
        "status",
        "sales_order_id",
        "sales_order_number",
        "activation_reference",
        "fulfilled_at",
        "subscription",
        "starts_at",
        "expires_at",
        "updated_at",
    ),
    "FAILED": ("status", "error_code", "error_message", "updated_at"),
}


_FINISH = {
    status: db.prepared_update(
        [getattr(Order, name) for name in names],
        lambda pk: (
            (Order.id == pk) & (Order.status == "PROCESSING") & Order.cancel_requested_at.is_null()
        ),
    )
    for status, names in _OUTCOMES.items()
}


class _Superseded(Exception):
    """The order was no longer PROCESSING, or its cancellation was asked for: the outcome's
    transaction is undone, the subscription it started or extended with it."""


def _record(order: Order, changes: dict[str, Any], *, now: datetime) -> bool:
    """The outcome, its subscription and its event in one commit; False if superseded."""
    try:
        with db.transaction():
            if changes["status"] == "FULFILLED":
                subscription, starts, expires = subscriptions.fulfil(order, now=now)
                changes.update(subscription=subscription, starts_at=starts, expires_at=expires)
            names = _OUTCOMES[changes["status"]]
            if not _FINISH[changes["status"]].changed(*(changes[n] for n in names), order.id):
                raise _Superseded
            event = f"order.{changes['status'].lower()}"
            records.announce(order, event, now=now, changed=changes)
    except _Superseded:
        return False
    return True


def _cancelled_meanwhile(
    order: Order, sales: provisioning.SalesOrder | None, failure: tuple[str, str] | None
) -> bool:
    """Hand a provisioning outcome to the cancellation asked for while it ran."""
    if sales is not None:
        return cancellation.provisioned(order, sales)
    assert failure is not None, "_finish is given sales or a failure"
    return cancellation.unprovisioned(order, *failure)


def _finish(
    order: Order,
    *,
    sales: provisioning.SalesOrder | None = None,
    failure: tuple[str, str] | None = None,
) -> None:
    """Record the outcome in one commit, only if the order is still PROCESSING and no
    cancellation was asked for; a fulfilment starts or extends its subscription in that same
    commit, and the partner's webhook event (order.fulfilled or order.failed) joins the outbox
    in it too. A cancellation asked for meanwhile takes the outcome instead."""
    now = clock.now()
    changes: dict[str, Any]
    if sales is not None:
        changes = {
            "status": "FULFILLED",
            "sales_order_id": sales.sales_order_id,
            "sales_order_number": sales.sales_order_number,
            "activation_reference": sales.activation_reference,
            "fulfilled_at": now,
        }
    else:
        assert failure is not None, "_finish is given sales or a failure"
        # A remote service's message may quote the customer's contact: the partner and the
        # database get it masked.
        failure = (failure[0], redaction.redact(failure[1]))
        changes = {"status": "FAILED", "error_code": failure[0], "error_message": failure[1]}
    changes["updated_at"] = now
    changed = _record(order, changes, now=now)
    if not changed and _cancelled_meanwhile(order, sales, failure):
        return
    extra = {"order_id": order.order_id, "action": f"order_{changes['status'].lower()}"}
    if changed:
        metrics.ORDERS.labels(changes["status"]).inc()
        logger.info("order %s %s", order.order_id, changes["status"], extra=extra)
    else:
        logger.warning("order %s was finished by another run", order.order_id, extra=extra)
