"""Order intake: validate against the catalogue and store each order exactly once.

Idempotency is per partner and ``orderId``, held by the unique index on (partner, order_id),
not by read-then-write: of any number of concurrent identical submissions one insert wins, and
every other caller finds the winner's row and answers with it.
"""

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any

import peewee

from t2ctl import clock, db, products
from t2ctl.db.models import Order, Partner, Product
from t2ctl.errors import Conflict, FieldError, ValidationFailed
from t2ctl.jobs import queue
from t2ctl.orders import pipeline, records
from t2ctl.security.crypto import SecretBox
from t2ctl.values import Money

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FulfilmentRequest:
    """A fulfilment request as the partner sent it, already well-formed."""

    order_id: str
    product_id: str
    quantity: int
    customer_id: str
    customer_name: str
    customer_email: str
    customer_phone: str | None
    amount: Money
    renewal_of: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Submission:
    order: Order
    created: bool


def submit(partner: Partner, request: FulfilmentRequest, *, box: SecretBox) -> Submission:
    """Store a new order, or return the one already stored under this orderId.

    A new orderId is the rule and a replay the exception, so the insert is tried first and
    the unique index finds a replay: no read before every write.

    Raises Conflict if that orderId was used with a different body, and ValidationFailed if the
    order breaks a catalogue rule. A new order is committed together with the job that will
    process it, in one transaction, before this returns.
    """
    try:
        product = _validate(partner, request)
    except ValidationFailed:  # a replay is answered even if the catalogue has changed since
        existing = records.lookup(partner, request.order_id)
        if existing is None:
            raise
        return _replay(existing, request, box)
    now = clock.now()
    order = Order(
        partner=partner,
        order_id=request.order_id,
        status="PENDING",
        product=product,
        quantity=request.quantity,
        customer_id=request.customer_id,
        customer_name=request.customer_name,
        customer_email=box.encrypt(request.customer_email),
        customer_phone=box.encrypt(request.customer_phone) if request.customer_phone else None,
        amount_minor=request.amount.minor,
        currency=request.amount.currency,
        renewal_of=request.renewal_of,
        metadata=request.metadata,
        created_at=now,
        updated_at=now,
    )

    try:
        _store(order, partner, request, product)
    except peewee.IntegrityError:
        # Submitted before, or concurrently by a request that committed first: a replay.
        existing = records.lookup(partner, request.order_id)
        if existing is None:  # the conflict was over something else
            raise
        return _replay(existing, request, box)
    logger.debug(  # at INFO the API's access line says it, with the order's id
        "order %s accepted from %s",
        order.order_id,
        partner.name,
        extra={"action": "order_accepted", "order_id": order.order_id},
    )
    return Submission(order, created=True)


# What intake stores of a new order: every other column is null until it is processed.
_STORED = (
    Order.partner,
    Order.order_id,
    Order.status,
    Order.product,
    Order.quantity,
    Order.customer_id,
    Order.customer_name,
    Order.customer_email,
    Order.customer_phone,
    Order.amount_minor,
    Order.currency,
    Order.renewal_of,
    Order.metadata,
    Order.created_at,
    Order.updated_at,
)
_INSERT = db.prepared_insert(_STORED)


_CREATED_AT = [f.name for f in _STORED].index("created_at")  # fields compare by ==, into SQL


def _placed(*values: Any) -> peewee.Insert:
    placed = Order.insert(dict(zip(_STORED, values, strict=True))).returning(Order.id)
    return pipeline.scheduled_after(placed.cte("placed"), now=values[_CREATED_AT])


_PLACED = db.Prepared(_placed, len(_STORED), converters=[f.db_value for f in _STORED])


def _store(order: Order, partner: Partner, request: FulfilmentRequest, product: Product) -> None:
    """The order and its job, committed together. On PostgreSQL a new order (not a renewal,
    which first holds the order it renews) outside any transaction is one statement: one
    round trip where a transaction took four."""
    if request.renewal_of is None and not db.is_sqlite() and not db.database.in_transaction():
        data = order.__data__
        (_job, order.id) = _PLACED.first(*(data.get(f.name) for f in _STORED))
        queue.announce()
        return
    with db.transaction():
        if request.renewal_of is not None:
            _hold_renewed(partner, request.renewal_of, product)
        _INSERT.add(order)
        pipeline.schedule(order)


def stored_request(order: Order, box: SecretBox) -> FulfilmentRequest:
    """Rebuild the request an order was created from, to compare a replay against it."""
    return FulfilmentRequest(
        order_id=order.order_id,
        product_id=order.product.product_id,
        quantity=order.quantity,
        customer_id=order.customer_id,
        customer_name=order.customer_name,
        customer_email=box.decrypt(order.customer_email),
        customer_phone=box.decrypt(order.customer_phone) if order.customer_phone else None,
        amount=records.amount(order),
        renewal_of=order.renewal_of,
        metadata=order.metadata,
    )


def _canonical(request: FulfilmentRequest) -> str:
    """JSON keeps what ``==`` blurs: ``true`` is not ``1``, and ``1`` is not ``1.0``."""
    return json.dumps(dataclasses.asdict(request), sort_keys=True)


def _replay(order: Order, request: FulfilmentRequest, box: SecretBox) -> Submission:
    if _canonical(stored_request(order, box)) != _canonical(request):
        raise Conflict(
            f"Order {request.order_id} was already submitted with a different body; "
            "use a new orderId for a new order."
        )
    return Submission(order, created=False)


def _validate(partner: Partner, request: FulfilmentRequest) -> Product:
    """Check the order against the catalogue and the partner's earlier orders."""
    problems: list[FieldError] = []
    product = products.find(request.product_id)
    if product is None or not product.active:
        problems.append(FieldError("productId", "is not an active product in the catalogue"))
    else:
        due = products.price(product).times(request.quantity)
        if request.amount != due:
            problems.append(
                FieldError("amount", f"must equal price × quantity: {due}, not {request.amount}")
            )
    if request.renewal_of is not None:
        earlier = records.lookup(partner, request.renewal_of)
        problems += _check_renewal(product, earlier)
    if problems:
        raise ValidationFailed(problems)
    assert product is not None  # a missing product is one of the problems
    return product


def _hold_renewed(partner: Partner, renewal_of: str, product: Product) -> None:
    """Check the renewed order again under its row lock, which a cancellation takes too:
    a renewal and the cancellation of what it renews never both get through."""
    held = db.locked(
        Order.select().where((Order.partner == partner) & (Order.order_id == renewal_of))
    )
    problems = _check_renewal(product, held.first())
    if problems:
        raise ValidationFailed(problems)


def _check_renewal(product: Product | None, earlier: Order | None) -> list[FieldError]:
    if earlier is None or earlier.status != "FULFILLED":
        return [FieldError("renewalOf", "must name an earlier FULFILLED order of yours")]
    if earlier.cancel_requested_at is not None:
        return [FieldError("renewalOf", "names an order that is being cancelled")]
    if product is not None and earlier.product_id != product.id:
        return [FieldError("renewalOf", "names an order for a different product")]
    return []
