"""Sandbox provisioning: the Zoho flow against a table of our own, with no outside call.

It behaves as a careful client of a real sales order service would: one row per sales order
created, a look-up by reference before creating when an earlier attempt may have got
part-way, and optional latency after the create, where a crash is most dangerous.
"""

import time
from datetime import timedelta

from t2ctl import clock, db
from t2ctl.db.models import SandboxSalesOrder
from t2ctl.provisioning import Made, Rejected, Request, SalesOrder


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
        with db.transaction():
            row = SandboxSalesOrder.create(
                partner=request.partner, reference_number=request.order_id, created_at=clock.now()
            )
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
        with db.transaction():
            SandboxSalesOrder.update(voided_at=clock.now()).where(
                mine & SandboxSalesOrder.voided_at.is_null()
            ).execute()


def _sales_order(row: SandboxSalesOrder) -> SalesOrder:
    number = f"SBX-{row.id:08d}"
    return SalesOrder(str(row.id), number, number)
