"""The partner API's bodies as pydantic models: they validate requests and, through
``openapi.py``, are the OpenAPI document's schemas, so the two cannot drift apart."""

from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args

import email_validator
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails

from t2ctl import values
from t2ctl.db.models import ORDER_STATUSES
from t2ctl.orders import cancellation, intake
from t2ctl.webhooks import outbox

Identifier = Annotated[str, Field(pattern=values.ID_PATTERN, examples=["T2-20261127-000123"])]
Timestamp = Annotated[
    str, Field(examples=["2026-11-27T09:00:00Z"], json_schema_extra={"format": "date-time"})
]
Text = Annotated[str, Field(pattern=values.TEXT_PATTERN)]
# ORDER_STATUSES as a type: a type checker reads a Literal only when it is spelled out.
OrderStatus = Literal["PENDING", "PROCESSING", "FULFILLED", "FAILED", "CANCELLED"]
assert get_args(OrderStatus) == ORDER_STATUSES
EventType = Literal[
    "order.fulfilled",
    "order.failed",
    "order.cancelled",
    "subscription.expiring",
    "subscription.expired",
]
assert get_args(EventType) == outbox.EVENTS


def _valid_email(address: str) -> str:
    """Check the address but keep it as sent: a replay must match the body byte for byte."""
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address: {exc}") from None
    return address


def _whole_float_as_int(value: Any) -> Any:
    """JSON Schema's integer includes 1.0; accept it as 1, and nothing else that is not int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Email = Annotated[
    str,
    Field(
        max_length=254,
        examples=["ada@example.ng"],
        description="A deliverable mailbox: a quoted local part, an address literal "
        "([192.0.2.1]) or a special-use domain (.test, .local, .invalid, .onion...) is refused.",
        json_schema_extra={"format": "email"},
    ),
    AfterValidator(_valid_email),
]
Quantity = Annotated[StrictInt, Field(ge=1, le=1000), BeforeValidator(_whole_float_as_int)]


def _unicode(text: str) -> str:
    """JSON's \\ud800 escape gives a lone surrogate, which no UTF-8 reader (the partner's, a
    log's, a terminal's) can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            r"must be valid Unicode text: a lone surrogate such as \ud800 is not"
        ) from None
    return text


def _flat(value: Any) -> Any:
    """One error for a value that is not a scalar (a union would give one per member), and
    the value kept as sent: a replay must match it to the type."""
    if isinstance(value, str):
        return _unicode(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ValueError("must be a string, number, boolean or null: metadata is a flat object")


MetadataKey = Annotated[str, AfterValidator(_unicode)]
MetadataValue = Annotated[
    Any,
    AfterValidator(_flat),
    WithJsonSchema(
        {"anyOf": [{"type": t} for t in ("string", "integer", "number", "boolean", "null")]}
    ),
]

# What each pattern means, for error messages a person can act on.
PATTERN_HINTS = {
    "orderId": values.ID_HINT,
    "productId": values.ID_HINT,
    "renewalOf": values.ID_HINT,
    "value": 'must be a decimal string with two places, like "15000.00"',
    "currency": 'must be three capital letters, like "NGN"',
    "phone": "must be in E.164 form, like +2348031234567",
    "id": "must be printable text, without control characters",
    "name": "must be printable text, without control characters",
    "reason": "must be printable text, without control characters",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Money(_Body):
    """An amount: a decimal string with two places, never a float, and its currency."""

    value: str = Field(pattern=values.MONEY_PATTERN, examples=["15000.00"])
    currency: str = Field(pattern=values.CURRENCY_PATTERN, examples=["NGN"])


class Customer(_Body):
    id: Text = Field(min_length=1, max_length=64, examples=["CUST-88"])
    name: Text = Field(min_length=1, max_length=200, examples=["Ada Obi"])
    email: Email
    phone: str | None = Field(None, pattern=values.E164_PATTERN, examples=["+2348031234567"])


class FulfilmentRequest(_Body):
    """A fulfilment request. Unknown fields are rejected so a typo never passes silently."""

    orderId: Identifier = Field(description="Your idempotency key: resubmit it, never reuse it.")
    productId: Identifier = Field(examples=["M365-BASIC-12M"])
    quantity: Quantity = Field(examples=[1])
    customer: Customer
    amount: Money = Field(description="Must equal the product's price × quantity.")
    renewalOf: Identifier | None = Field(
        None, description="An earlier FULFILLED order of yours for the same product to extend."
    )
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        None, description="A flat object of your own, stored and not interpreted."
    )

    def to_request(self) -> intake.FulfilmentRequest:
        return intake.FulfilmentRequest(
            order_id=self.orderId,
            product_id=self.productId,
            quantity=self.quantity,
            customer_id=self.customer.id,
            customer_name=self.customer.name,
            customer_email=self.customer.email,
            customer_phone=self.customer.phone,
            amount=values.Money.parse(self.amount.value, self.amount.currency),
            renewal_of=self.renewalOf,
            metadata=self.metadata,
        )


class CancelRequest(_Body):
    """Why the order is cancelled (a refund, a reversed payment): kept and shown back."""

    reason: Text = Field(
        min_length=cancellation.REASON_LENGTH[0],
        max_length=cancellation.REASON_LENGTH[1],
        examples=["Payment reversed by the customer's bank"],
    )


class Product(_Body):
    productId: str
    name: str
    description: str
    price: Money
    termMonths: int
    active: bool


class ProductList(_Body):
    products: list[Product]


class CustomerRef(_Body):
    id: str


class Fulfilment(_Body):
    salesOrderId: str
    salesOrderNumber: str
    activationReference: str = Field(description="The Zoho sales order number; SBX-… in sandbox.")
    startsAt: Timestamp
    expiresAt: Timestamp


class OrderError(_Body):
    code: str
    message: str


class Cancellation(_Body):
    reason: str = Field(description="As given when the cancellation was asked for.")
    requestedAt: Timestamp
    cancelledAt: Timestamp | None = Field(description="Null until the order is CANCELLED.")


class Order(_Body):
    orderId: str
    status: OrderStatus
    productId: str
    quantity: int
    customer: CustomerRef
    amount: Money
    renewalOf: str | None
    createdAt: Timestamp
    updatedAt: Timestamp
    fulfilment: Fulfilment | None = Field(
        description="Null until FULFILLED. An order cancelled after its fulfilment keeps it: "
        "its sales order, now void, and the dates it had bought."
    )
    error: OrderError | None = Field(description="Null unless FAILED.")
    cancellation: Cancellation | None = Field(description="Null until a cancellation is asked for.")


class QueueDepth(_Body):
    queued: int = Field(ge=0, description="Jobs waiting to run (due or in a retry backoff).")
    running: int = Field(ge=0)
    dead: int = Field(ge=0, description="Jobs out of attempts, waiting for an operator.")


class Health(_Body):
    """The queue fields are present while the database answers."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    mode: Literal["sandbox", "zoho"]
    version: str
    migrations: Literal["ok", "pending"] | None = Field(
        None, description="pending: the schema is behind this daemon's code."
    )
    queue: QueueDepth | None = None
    oldestPendingSeconds: int | None = Field(
        None, ge=0, description="How long the oldest due, unclaimed job has waited; null: none."
    )


class Liveness(_Body):
    status: Literal["ok"]


class Readiness(_Body):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    migrations: Literal["ok", "pending", "unknown"]
    pending: list[str] = Field(
        description="Migrations this daemon's code has and the database lacks."
    )


class FieldProblem(_Body):
    field: str = Field(examples=["customer.email"])
    message: str


class Problem(_Body):
    """An RFC 9457 problem: never a stack trace, SQL or secret."""

    type: str = Field(examples=["urn:t2ctl:problem:not-found"])
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = Field(
        None, description="On 422: every invalid field. On 400 for a query parameter: that one."
    )
    errorId: str | None = Field(None, description="On 500: quote it to IconTech support.")


class OrderEvent(_Body):
    """A webhook about an order's outcome; ``data`` is the Order as ``GET /orders`` shows it."""

    type: Literal["order.fulfilled", "order.failed", "order.cancelled"]
    timestamp: Timestamp = Field(description="When the outcome was recorded.")
    data: Order


class SubscriptionEventData(_Body):
    orderId: str = Field(description="The subscription's latest order: name it in renewalOf.")
    productId: str
    customer: CustomerRef
    expiresAt: Timestamp


class SubscriptionEvent(_Body):
    """A webhook about a subscription nearing (``reminder_days`` before) or reaching its
    expiry; each is sent once per subscription and expiry."""

    type: Literal["subscription.expiring", "subscription.expired"]
    timestamp: Timestamp = Field(description="When the event was recorded.")
    data: SubscriptionEventData


class OrderPage(_Body):
    """A page of your orders, newest first."""

    data: list[Order]
    nextCursor: str | None = Field(
        description="Pass it as `cursor` for the next page, as it is; null on the last page."
    )


class Event(_Body):
    """An event as its webhook carried it: ``id`` is the webhook-id, the rest its body."""

    id: str = Field(examples=["msg_2bU5jMa0ZbTlrpW1dS9pXzkj"])
    type: EventType
    timestamp: Timestamp = Field(description="When the event happened.")
    data: Order | SubscriptionEventData = Field(
        description="The Order for order.*, the subscription for subscription.*."
    )


class EventPage(_Body):
    """A page of your events, oldest first."""

    data: list[Event]
    hasMore: bool = Field(
        description="Later events exist: ask again with `after` the last event's id."
    )


SCHEMAS: list[type[BaseModel]] = [
    FulfilmentRequest,
    CancelRequest,
    ProductList,
    Order,
    OrderPage,
    EventPage,
    Health,
    Liveness,
    Readiness,
    Problem,
    OrderEvent,
    SubscriptionEvent,
]


def field_errors(errors: Iterable[ErrorDetails]) -> list[tuple[str, str]]:
    """Pydantic's errors as (dotted field, message) pairs worded for the partner's developers."""
    pairs = []
    for err in errors:
        path = [str(part) for part in err["loc"]]
        field = ".".join(path) or "body"
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "is not a known field"
        elif kind == "missing":
            message = "is required"
        elif kind == "string_pattern_mismatch" and path and path[-1] in PATTERN_HINTS:
            message = PATTERN_HINTS[path[-1]]
        else:
            message = err["msg"].removeprefix("Value error, ")
        pairs.append((field, message))
    return pairs
