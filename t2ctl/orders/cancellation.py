"""Cancellation: a payment reversed, an order taken back.

The order's row is the state machine, each step one commit conditional on the state before
it, so that a cancellation and the order's own processing, racing, end one way only:

- PENDING: CANCELLED at once; ``processing`` starts only a PENDING order, so nothing is
  provisioned.
- PROCESSING: the request is noted (``cancel_requested_at``); when provisioning ends, its
  outcome is not recorded as FULFILLED or FAILED (``processing`` finishes only an order with
  no cancellation asked for): the sales order it made, or the failure it met, is noted and
  the order handed to a ``cancel_order`` job, which voids what it made (a failed attempt may
  have left a sales order too: the provisioner looks).
- FULFILLED, within ``orders.cancel_window`` of fulfilment, with no live renewal built on it:
  noted, and a ``cancel_order`` job voids the sales order (``Provisioner.void``, which never
  voids one twice), then records CANCELLED, ends or shortens the subscription and adds the
  ``order.cancelled`` event, in one commit.

A request is taken under the order's row lock, which intake also takes on the order a
renewal names, so a renewal and a cancellation of what it renews cannot both get through.
"""

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from t2ctl import clock, db, provisioning
from t2ctl.db.models import Order
from t2ctl.errors import FieldError, NotCancellable, ValidationFailed
from t2ctl.jobs import queue, tasks
from t2ctl.monitoring import logs, metrics
from t2ctl.orders import records, subscriptions
from t2ctl.values import TEXT_PATTERN

logger = logging.getLogger(__name__)

TASK = "cancel_order"
REASON_LENGTH = (1, 200)
# A void Zoho refuses (an invoiced sales order, say) waits for an operator to clear it in
# Zoho; the job keeps trying every ``BACKOFF.cap`` meanwhile, bounded only as processing is.
MAX_ATTEMPTS = 10_000
BACKOFF = tasks.Backoff(base=timedelta(seconds=5), cap=timedelta(minutes=10))
LIVE = ("PENDING", "PROCESSING", "FULFILLED")  # a renewal in these builds on what it renews


@dataclass(frozen=True)
class Outcome:
    order: Order
    done: bool  # CANCELLED now (200); else under way (202)


def request(order: Order, reason: str, *, window: timedelta) -> Outcome:
    """Ask for ``order``'s cancellation; asking again changes nothing. Raises
    NotCancellable saying why when it cannot be, ValidationFailed for a bad reason."""
    _check_reason(reason)
    now = clock.now()
    with db.transaction():
        held = db.locked(Order.select().where(Order.id == order.id)).get()
        fresh = held.status != "CANCELLED" and held.cancel_requested_at is None
        if fresh:
            _take(held, reason, now=now, window=window)
    if fresh:
        logger.info(
            "order %s: cancellation asked for (%s)",
            order.order_id,
            held.status,
            extra={"action": "order_cancel_requested", "order_id": order.order_id},
        )
        if held.status == "PENDING":
            _counted(order)
    current = records.find(order.id)
    assert current is not None  # orders are never deleted
    return Outcome(current, done=current.status == "CANCELLED")


def _take(order: Order, reason: str, *, now: datetime, window: timedelta) -> None:
    asked = {"cancel_reason": reason, "cancel_requested_at": now, "updated_at": now}
    if order.status == "PENDING":
        Order.update(**asked, status="CANCELLED", cancelled_at=now).where(
            Order.id == order.id
        ).execute()
        records.announce(order, "order.cancelled", now=now)
    elif order.status == "PROCESSING":
        Order.update(**asked).where(Order.id == order.id).execute()
    elif order.status == "FULFILLED":
        _check_fulfilled(order, now=now, window=window)
        Order.update(**asked).where(Order.id == order.id).execute()
        schedule(order)
    else:
        raise NotCancellable(
            f"Order {order.order_id} is {order.status}: nothing was provisioned, so there is "
            "nothing to cancel."
        )


def _check_reason(reason: str) -> None:
    low, high = REASON_LENGTH
    if not low <= len(reason) <= high or not re.fullmatch(TEXT_PATTERN, reason):
        raise ValidationFailed(
            [FieldError("reason", f"must be {low}-{high} characters of printable text")]
        )


def _check_fulfilled(order: Order, *, now: datetime, window: timedelta) -> None:
    """A fulfilled order is cancellable within the window, when no renewal builds on it."""
    closes = order.fulfilled_at + window
    if now > closes:
        raise NotCancellable(
            f"Order {order.order_id} was fulfilled at {clock.rfc3339(order.fulfilled_at)}; it "
            f"could be cancelled until {clock.rfc3339(closes)} ({clock.format_duration(window)} "
            "after fulfilment)."
        )
    renewal = (
        Order.select(Order.order_id, Order.cancel_requested_at)
        .where(
            (Order.partner == order.partner_id)
            & (Order.renewal_of == order.order_id)
            & Order.status.in_(LIVE)
        )
        .first()
    )
    if renewal is None:
        return
    if renewal.cancel_requested_at is None:
        raise NotCancellable(
            f"Order {renewal.order_id} renews order {order.order_id}: cancel "
            f"{renewal.order_id} first."
        )
    raise NotCancellable(
        f"Order {renewal.order_id} renews order {order.order_id} and is being cancelled: "
        f"cancel {order.order_id} once {renewal.order_id} is CANCELLED."
    )


def schedule(order: Order) -> int | None:
    """Queue the job that undoes what provisioning made; call in the commit that asks."""
    return queue.enqueue(
        TASK, {"order": order.id}, max_attempts=MAX_ATTEMPTS, unique_key=f"cancel:{order.id}"
    )


def provisioned(order: Order, sales: provisioning.SalesOrder) -> bool:
    """Provisioning ended with ``sales`` for an order whose cancellation was asked for
    meanwhile: note the sales order and hand it to the job that voids it, in one commit.
    False if the order was not waiting for this (another run got there first)."""
    return _hand_over(
        order,
        sales_order_id=sales.sales_order_id,
        sales_order_number=sales.sales_order_number,
        activation_reference=sales.activation_reference,
    )


def unprovisioned(order: Order, code: str, message: str) -> bool:
    """Provisioning failed for an order whose cancellation was asked for: note why (kept
    for operators; the partner sees a CANCELLED order) and hand it to the job, which voids
    any sales order the failed attempts left. False if another run got there first."""
    return _hand_over(order, error_code=code, error_message=message)


def _hand_over(order: Order, **outcome: str) -> bool:
    with db.transaction():
        noted = (
            Order.update(**outcome, updated_at=clock.now())
            .where(
                (Order.id == order.id)
                & (Order.status == "PROCESSING")
                & Order.cancel_requested_at.is_null(False)
                & ~_ended()
            )
            .execute()
        )
        if noted:
            schedule(order)
    return bool(noted)


def handed_over(order: Order) -> bool:
    """An order whose cancellation was asked for has had its provisioning's outcome noted (a
    sales order or a failure): the ``cancel_order`` job owns it, processing no longer."""
    ended = order.sales_order_id is not None or order.error_code is not None
    return order.cancel_requested_at is not None and ended


def _ended():
    """``handed_over``'s outcome, as a condition on the row."""
    return Order.sales_order_id.is_null(False) | Order.error_code.is_null(False)


class Canceller:
    """The ``cancel_order`` handler: void what was made, then record CANCELLED."""

    def __init__(self, provisioner: provisioning.Provisioner):
        self.provisioner = provisioner

    def __call__(self, context: tasks.Context) -> None:
        order = records.find(context.payload["order"])
        if order is None or not _undoable(order):
            return
        with logs.bind(order_id=order.order_id):
            self._void(order, context)
            _complete(order)

    def _void(self, order: Order, context: tasks.Context) -> None:
        made = provisioning.Made(order.partner_id, order.order_id, order.sales_order_id)
        try:
            self.provisioner.void(made)
        except provisioning.Unreachable as exc:
            backoff = BACKOFF.delay(context.attempt)
            raise tasks.Retry(str(exc), after=clock.retry_wait(exc.retry_after, backoff)) from exc
        except provisioning.Rejected as exc:
            # Refused (an invoiced sales order, say): the cancellation stays under way, and
            # is tried again now and then, until an operator has cleared it in Zoho.
            raise tasks.Retry(str(exc), after=BACKOFF.cap) from exc


def _undoable(order: Order) -> bool:
    """Asked to be cancelled, and not CANCELLED yet: FULFILLED, or PROCESSING and handed
    over (until then, provisioning still owns the order)."""
    if order.status == "FULFILLED":
        return order.cancel_requested_at is not None
    return order.status == "PROCESSING" and handed_over(order)


def _complete(order: Order) -> None:
    """CANCELLED, the subscription ended or shortened, and the event, in one commit. The
    subscription is locked first (see ``subscriptions.hold``)."""
    now = clock.now()
    with db.transaction():
        subscriptions.hold(order.subscription_id)
        done = (
            Order.update(status="CANCELLED", cancelled_at=now, updated_at=now)
            .where(
                (Order.id == order.id)
                & Order.status.in_(("PROCESSING", "FULFILLED"))
                & Order.cancel_requested_at.is_null(False)
            )
            .execute()
        )
        if done:
            subscriptions.revoke(order.id, now=now)
            records.announce(order, "order.cancelled", now=now)
    if done:
        _counted(order)
    else:
        logger.warning(
            "order %s was cancelled by another run",
            order.order_id,
            extra={"action": "order_cancelled", "order_id": order.order_id},
        )


def _counted(order: Order) -> None:
    """Once the CANCELLED commit is made: the metric and the log line."""
    metrics.ORDERS.labels("CANCELLED").inc()
    logger.info(
        "order %s CANCELLED",
        order.order_id,
        extra={"action": "order_cancelled", "order_id": order.order_id},
    )


def register(registry: tasks.Registry, *, provisioner: provisioning.Provisioner) -> None:
    registry.add(TASK, Canceller(provisioner), backoff=BACKOFF)
