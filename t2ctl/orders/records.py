"""Reading orders: the one public shape of an Order, the queries faces use, and the event
that carries an order as it stands."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from t2ctl import clock, db, values
from t2ctl.db.models import Order, Partner, Product
from t2ctl.errors import Conflict, NotFound
from t2ctl.values import Money
from t2ctl.webhooks import outbox

# Written into the SQL, not bound: only a literal lets SQLite (and a PostgreSQL generic plan)
# use the partial index of FAILED orders (migration 0008).
FAILED = Order.status == peewee.SQL("'FAILED'")


def amount(order: Order) -> Money:
    return Money(order.amount_minor, order.currency)


def public(order: Order) -> dict[str, Any]:
    """The Order exactly as CONTRACT §1 writes it (API body, webhook data, ``--json``). An
    order cancelled after its fulfilment keeps the fulfilment it had: the activation
    reference of the sales order that was voided."""
    fulfilled = order.status == "FULFILLED" or order.fulfilled_at is not None
    failed = order.status == "FAILED"
    return {
        "orderId": order.order_id,
        "status": order.status,
        "productId": order.product.product_id,
        "quantity": order.quantity,
        "customer": {"id": order.customer_id},
        "amount": amount(order).public(),
        "renewalOf": order.renewal_of,
        "createdAt": clock.rfc3339(order.created_at),
        "updatedAt": clock.rfc3339(order.updated_at),
        "fulfilment": {
            "salesOrderId": order.sales_order_id,
            "salesOrderNumber": order.sales_order_number,
            "activationReference": order.activation_reference,
            "startsAt": clock.rfc3339(order.starts_at),
            "expiresAt": clock.rfc3339(order.expires_at),
        }
        if fulfilled
        else None,
        "error": {"code": order.error_code, "message": order.error_message} if failed else None,
        "cancellation": {
            "reason": order.cancel_reason,
            "requestedAt": clock.rfc3339(order.cancel_requested_at),
            "cancelledAt": clock.rfc3339(order.cancelled_at),
        }
        if order.cancel_requested_at is not None
        else None,
    }


def announce(
    order: Order, event: str, *, now: datetime, changed: dict[str, Any] | None = None
) -> None:
    """Add ``event`` (an ``order.*``) to the outbox with the order as it now stands, in the
    caller's transaction: the one that has just changed it. The row is read again, unless
    ``changed`` gives every column that transaction set: then they are set on ``order`` (as
    read before it, with its product), which is the row as it stands, and no read is needed."""
    current = find(order.id) if changed is None else order
    assert current is not None  # the caller's transaction has just changed it
    for name, value in (changed or {}).items():
        setattr(current, name, value)
    outbox.record(
        order.partner_id, event, public(current), occurred_at=now, order_ref=order.order_id
    )


def _query():
    return Order.select(Order, Product, Partner).join(Product).switch(Order).join(Partner)


_BY_PK = db.Prepared(lambda pk: _query().where(Order.id == pk).limit(1), 1)
# Without the partner's row: whoever asks by orderId has it already.
_BY_ORDER_ID = db.Prepared(
    lambda partner, order_id: (
        Order.select(Order, Product)
        .join(Product)
        .where((Order.partner == partner) & (Order.order_id == order_id))
        .limit(1)
    ),
    2,
)


def find(pk: int) -> Order | None:
    """An order by its row id, as it stands now, ready for ``public``; None if it is gone."""
    return _BY_PK.first(pk)


def lookup(partner: Partner, order_id: str) -> Order | None:
    """The partner's order with this orderId, ready for ``public``; None if there is none.
    Its ``partner`` is the one given."""
    order = _BY_ORDER_ID.first(partner.id, order_id)
    if order is not None:
        order.partner = partner
    return order


def get(partner: Partner, order_id: str) -> Order:
    """The partner's own order; another partner's order is as unknown as a missing one.

    An id no order can have is not looked up: PostgreSQL refuses a NUL in a query's text.
    """
    if not re.fullmatch(values.ID_PATTERN, order_id):
        raise NotFound(f"No order has that id: an orderId {values.ID_HINT}.")
    order = lookup(partner, order_id)
    if order is None:
        raise NotFound(f"No order {order_id} was found.")
    return order


def get_by_order_id(order_id: str, partner_name: str | None = None) -> Order:
    """An order by id for operators; ambiguous ids across partners need the partner named."""
    query = _query().where(Order.order_id == order_id)
    if partner_name is not None:
        query = query.where(Partner.name == partner_name)
    found = list(query.limit(2))
    if not found:
        raise NotFound(f"no order {order_id!r}")
    if len(found) > 1:
        raise Conflict(f"several partners have an order {order_id!r}; add --partner")
    return found[0]


def listing(
    *,
    status: str | None = None,
    partner_name: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[Order]:
    """Newest first."""
    query = _query().order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Order.status == status)
    if partner_name is not None:
        query = query.where(Partner.name == partner_name)
    if since is not None:
        query = query.where(Order.created_at >= since)
    return list(query)


@dataclass(frozen=True)
class Position:
    """Where a page of a partner's orders ended: its last order's exact creation time (to the
    microsecond) and row id, the keys the listing is ordered by."""

    created_at: datetime
    id: int


@dataclass(frozen=True)
class Page:
    orders: list[Order]
    next: Position | None  # None: this is the last page


def page(
    partner: Partner,
    *,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Position | None = None,
    limit: int = 50,
) -> Page:
    """The partner's orders, newest first, from just past ``after``: since inclusive, until
    exclusive, on ``created_at``.

    Keyset pagination on (created_at, id), never an offset: an order created while a client
    pages sorts before everything it has read, so no order is skipped or repeated. One row
    beyond ``limit`` is read to know whether a next page exists.
    """
    query = _query().where(Order.partner == partner)
    if status is not None:
        query = query.where(Order.status == status)
    if since is not None:
        query = query.where(Order.created_at >= since)
    # One upper bound, the tighter, implies the other; given both, SQLite's planner may walk
    # the index without the status for the sake of two ranges on created_at.
    if after is not None and (until is None or after.created_at < until):
        # The first term alone is a range the index serves; the second breaks ties in time.
        query = query.where(
            (Order.created_at <= after.created_at)
            & ((Order.created_at < after.created_at) | (Order.id < after.id))
        )
    elif until is not None:
        query = query.where(Order.created_at < until)
    rows = list(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1))
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    return Page(rows[:limit], Position(last.created_at, last.id))


def failed_since(moment: datetime) -> int:
    """How many orders have FAILED since ``moment``."""
    return Order.select().where(FAILED & (Order.updated_at >= moment)).count()
