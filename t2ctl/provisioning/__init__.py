"""The seam between an order and the system that fulfils it.

A ``Provisioner`` takes plain values and returns plain values; it knows nothing of orders,
jobs or the database schema. The daemon's wiring picks one (sandbox or Zoho) from settings.

A ``Ledger`` reads back what the system of record holds, its sales orders, so that
reconciliation can compare them with the orders.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from t2ctl.errors import T2Error
from t2ctl.values import Money


@dataclass(frozen=True)
class Request:
    partner: int  # orderIds are unique per partner: the two together name one order
    order_id: str  # the partner's orderId: the sales order's reference number
    product_id: str
    quantity: int
    unit_price: Money
    customer_id: str
    customer_name: str
    customer_email: str
    customer_phone: str | None


@dataclass(frozen=True)
class SalesOrder:
    sales_order_id: str
    sales_order_number: str
    activation_reference: str


@dataclass(frozen=True)
class Made:
    """What provisioning made for one order, for a cancellation to void: its sales order,
    or None when provisioning failed, and whatever its attempts left is to be looked for."""

    partner: int
    order_id: str
    sales_order_id: str | None


class Rejected(T2Error):
    """A permanent refusal: retrying cannot help, so the order fails with ``code``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Unreachable(T2Error):
    """A transient failure (network, 429, 5xx): try again, after ``retry_after`` if given."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Provisioner(Protocol):
    def provision(self, request: Request, *, resume: bool) -> SalesOrder:
        """Create and confirm one sales order for ``request``.

        ``resume`` says an earlier attempt for this order may have got part-way: look for its
        sales order before creating one, so no crash or retry ever makes a second.
        """
        ...

    def void(self, made: Made) -> None:
        """Void the sales order ``made`` names, or the one a failed provisioning left (none:
        nothing to do); one already void is left as it is, so a crash or retry after the
        void never voids it again (Rejected if it cannot be voided)."""
        ...


@dataclass(frozen=True)
class Listed:
    """A sales order as the system of record lists it."""

    sales_order_id: str
    number: str
    reference: str  # the orderId it was made for, or whatever else someone wrote there
    state: str  # confirmed, draft (not confirmed yet) or void
    total: Money | None  # None when the listing does not say
    day: date  # the sales order's date
    partner: int | None = None  # known to the sandbox only; Zoho knows references


class Ledger(Protocol):
    @property
    def calls(self) -> int:
        """How many calls this ledger has made to the system of record so far."""
        ...

    def sales_orders(self, *, since: datetime, until: datetime) -> Iterator[Listed]:
        """Every sales order made for an order created in ``[since, until)``, and others
        of those days (their references may name no order); within the call budget."""
        ...
