"""Sandbox provisioning: the Zoho flow against a table of our own, with no outside call.

It behaves as a careful client of a real sales order service would: one row per sales order
created, a look-up by reference before creating when an earlier attempt may have got
part-way, and optional latency after the create, where a crash is most dangerous.
"""

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from t2ctl import clock, db
from t2ctl.db.models import SandboxSalesOrder
from t2ctl.provisioning import Listed, Made, Rejected, Request, SalesOrder
from t2ctl.values import Money

_MADE = (
    SandboxSalesOrder.partner,
    SandboxSalesOrder.reference_number,
    SandboxSalesOrder.created_at,
    SandboxSalesOrder.total_minor,
    SandboxSalesOrder.currency,
)
_INSERT = db.prepared_insert(_MADE)


class SandboxProvisioner:
    def __init__(self, *, delay: timedelta = timedelta(0), decline: frozenset[str] = frozenset()):
        self.delay = delay
        self.decline = decline

    def provision(self, request: Request, *, resume: bool) -> SalesOrder:
        if request.product_id in self.decline:
            raise Rejected("PRODUCT_UNAVAILABLE", "The product cannot be provisioned just now.")
        if resume:
            existing = (
                SandboxSalesOrder.select()
                .where(
                    (SandboxSalesOrder.partner == request.partner)
                    & (SandboxSalesOrder.reference_number == request.order_id)
                )
                .order_by(SandboxSalesOrder.id)
                .first()
            )
            if existing is not None:
                return _sales_order(existing)
        total = request.unit_price.times(request.quantity)
        row = SandboxSalesOrder(
            partner=request.partner,
            reference_number=request.order_id,
            created_at=clock.now(),
            total_minor=total.minor,
            currency=total.currency,
        )
        with db.single():
            _INSERT.add(row)
        time.sleep(self.delay.total_seconds())
        return _sales_order(row)

    def void(self, made: Made) -> None:
        """Mark the order's rows void, once: a row already void keeps when it was voided."""
        mine = (SandboxSalesOrder.partner == made.partner) & (
            SandboxSalesOrder.reference_number == made.order_id
        )
        if made.sales_order_id is not None:
            mine &= SandboxSalesOrder.id == int(made.sales_order_id)
            if not SandboxSalesOrder.select().where(mine).exists():
                raise Rejected(
                    "SALES_ORDER_MISSING", f"no sandbox sales order {made.sales_order_id}"
                )
        with db.single():
            SandboxSalesOrder.update(voided_at=clock.now()).where(
                mine & SandboxSalesOrder.voided_at.is_null()
            ).execute()


class SandboxLedger:
    """The sandbox's sales orders, read from its table: no call leaves the process."""

    calls = 0

    def sales_orders(self, *, since: datetime, until: datetime) -> Iterator[Listed]:
        """Every row made since ``since``: a sales order is made after its order, and an
        order created before ``until`` may be provisioned after it."""
        rows = (
            SandboxSalesOrder.select(
                SandboxSalesOrder.id,
                SandboxSalesOrder.partner,
                SandboxSalesOrder.reference_number,
                SandboxSalesOrder.created_at,
                SandboxSalesOrder.voided_at,
                SandboxSalesOrder.total_minor,
                SandboxSalesOrder.currency,
            )
            .where(SandboxSalesOrder.created_at >= since)
            .order_by(SandboxSalesOrder.id)
            .tuples()  # a month of rows: plain tuples, not a model object each
        )
        for row_id, partner, reference, made, voided, minor, currency in rows.iterator():
            number = _number(row_id)
            yield Listed(
                sales_order_id=str(row_id),
                number=number,
                reference=reference,
                state="confirmed" if voided is None else "void",
                total=None if minor is None else Money(minor, currency),
                day=made.date(),
                partner=partner,
            )


def _sales_order(row: SandboxSalesOrder) -> SalesOrder:
    number = _number(row.id)
    return SalesOrder(str(row.id), number, number)


def _number(row_id: int) -> str:
    return f"SBX-{row_id:08d}"
