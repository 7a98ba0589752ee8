"""The partner API's bodies as pydantic models: they validate requests and, through
``openapi.py``, are the OpenAPI document's schemas, so the two cannot drift apart."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt

from t2ctl import values
from t2ctl.orders import intake

Identifier = Annotated[str, Field(pattern=values.ID_PATTERN, examples=["T2-20261127-000123"])]
Timestamp = Annotated[
    str, Field(examples=["2026-11-27T09:00:00Z"], json_schema_extra={"format": "date-time"})
]
MetadataValue = str | int | float | bool | None

# What each pattern means, for error messages a person can act on.
PATTERN_HINTS = {
    "orderId": "must be 1-64 of A-Z a-z 0-9 . _ : -",
    "productId": "must be 1-64 of A-Z a-z 0-9 . _ : -",
    "renewalOf": "must be 1-64 of A-Z a-z 0-9 . _ : -",
    "value": 'must be a decimal string with two places, like "15000.00"',
    "currency": 'must be three capital letters, like "NGN"',
    "phone": "must be in E.164 form, like +2348031234567",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Money(_Body):
    """An amount: a decimal string with two places, never a float, and its currency."""

    value: str = Field(pattern=values.MONEY_PATTERN, examples=["15000.00"])
    currency: str = Field(pattern=values.CURRENCY_PATTERN, examples=["NGN"])


class Customer(_Body):
    id: str = Field(min_length=1, max_length=64, examples=["CUST-88"])
    name: str = Field(min_length=1, max_length=200, examples=["Ada Obi"])
    email: EmailStr = Field(examples=["ada@example.ng"])
    phone: str | None = Field(None, pattern=values.E164_PATTERN, examples=["+2348031234567"])


class FulfilmentRequest(_Body):
    """A fulfilment request. Unknown fields are rejected so a typo never passes silently."""

    orderId: Identifier = Field(description="Your idempotency key: resubmit it, never reuse it.")
    productId: Identifier = Field(examples=["M365-BASIC-12M"])
    quantity: StrictInt = Field(ge=1, le=1000, examples=[1])
    customer: Customer
    amount: Money = Field(description="Must equal the product's price × quantity.")
    renewalOf: Identifier | None = Field(
        None, description="An earlier FULFILLED order of yours for the same product to extend."
    )
    metadata: dict[str, MetadataValue] | None = Field(
        None, description="A flat object of your own, stored and not interpreted."
    )

    def to_request(self) -> intake.FulfilmentRequest:
        return intake.FulfilmentRequest(
            order_id=self.orderId,
            product_id=self.productId,
            quantity=self.quantity,
            customer_id=self.customer.id,
            customer_name=self.customer.name,
            customer_email=str(self.customer.email),
            customer_phone=self.customer.phone,
            amount=values.Money.parse(self.amount.value, self.amount.currency),
            renewal_of=self.renewalOf,
            metadata=self.metadata,
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


class Order(_Body):
    orderId: str
    status: Literal["PENDING", "PROCESSING", "FULFILLED", "FAILED"]
    productId: str
    quantity: int
    customer: CustomerRef
    amount: Money
    renewalOf: str | None
    createdAt: Timestamp
    updatedAt: Timestamp
    fulfilment: Fulfilment | None = Field(description="Null until FULFILLED.")
    error: OrderError | None = Field(description="Null unless FAILED.")


class Health(_Body):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    mode: Literal["sandbox", "zoho"]
    version: str


class FieldProblem(_Body):
    field: str = Field(examples=["customer.email"])
    message: str


class Problem(_Body):
    """An RFC 9457 problem: never a stack trace, SQL or secret."""

    type: str = Field(examples=["urn:t2ctl:problem:not-found"])
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = Field(None, description="On 422: every invalid field.")
    errorId: str | None = Field(None, description="On 500: quote it to IconTech support.")


SCHEMAS: list[type[BaseModel]] = [FulfilmentRequest, ProductList, Order, Health, Problem]


def field_errors(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
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
            message = err["msg"]
        pairs.append((field, message))
    return pairs
