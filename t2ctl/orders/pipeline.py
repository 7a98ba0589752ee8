"""How an order reaches its ``process_order`` job: at intake, and again on an operator's retry.

Both write the order and its job in one transaction, so an order is never left PENDING with
nothing to move it on.
"""

import logging
from datetime import timedelta
from typing import Any

import peewee

from t2ctl import clock, db
from t2ctl.db.models import Order
from t2ctl.errors import Conflict
from t2ctl.jobs import queue, tasks
from t2ctl.orders import records

logger = logging.getLogger(__name__)

TASK = "process_order"
# The order gives up by time (``zoho.retry_for``), not by count: this only bounds a job that
# keeps failing in ways the handler cannot see, such as a worker killed on every attempt.
MAX_ATTEMPTS = 10_000
BACKOFF = tasks.Backoff(base=timedelta(seconds=5), cap=timedelta(minutes=10))


def schedule(order: Order) -> int | None:
    """Queue the order's processing; call inside the transaction that writes the order.
    None means a job for this order is still queued or running."""
    return queue.enqueue(
        TASK, {"order": order.id}, max_attempts=MAX_ATTEMPTS, unique_key=f"order:{order.id}"
    )


def scheduled_after(placed: peewee.CTE, now: Any) -> peewee.Insert:
    """PostgreSQL: the job ``schedule`` adds, for the order ``placed`` inserts, as one statement
    with it (``queue.enqueued_after``), whose rows are ``(job id, order id)``."""
    return queue.enqueued_after(
        placed,
        TASK,
        _text('{"order": ', placed.c.id, "}"),  # schedule's payload, as JSON text
        unique_key=_text("order:", placed.c.id),
        max_attempts=MAX_ATTEMPTS,
        now=now,
    )


def _text(*parts: str | peewee.Node) -> peewee.Node:
    """Text and ids as one text, in SQL (a parameter's type is given: CONCAT takes any)."""
    return peewee.fn.CONCAT(
        *(peewee.Value(part).cast("text") if isinstance(part, str) else part for part in parts)
    )


def retry(order_id: str, partner_name: str | None = None) -> Order:
    """Run a FAILED order again: back to PENDING, with a new job, in one commit."""
    order = records.get_by_order_id(order_id, partner_name)
    if order.status != "FAILED":
        raise Conflict(f"order {order_id} is {order.status}; only FAILED orders can be retried")
    with db.transaction():
        changed = (
            Order.update(
                status="PENDING", error_code=None, error_message=None, updated_at=clock.now()
            )
            .where((Order.id == order.id) & (Order.status == "FAILED"))
            .execute()
        )
        if not changed:
            raise Conflict(f"order {order_id} changed while retrying it; look again")
        if schedule(order) is None:
            # The job that failed it has not been recorded done yet: that takes a moment.
            raise Conflict(f"order {order_id} is still being wound up; retry in a few seconds")
    logger.info(
        "order %s queued again", order_id, extra={"action": "order_retried", "order_id": order_id}
    )
    return records.get_by_order_id(order_id, order.partner.name)
