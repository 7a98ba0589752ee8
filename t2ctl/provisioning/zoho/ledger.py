"""Zoho's sales orders read back for reconciliation: the list, newest first, page by page
within the fleet's call budget (the client's pacer), until the pages reach days before any
order of the window could have had its sales order made."""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from t2ctl.provisioning import Listed
from t2ctl.provisioning.zoho.client import Client
from t2ctl.provisioning.zoho.provisioner import sales_order_state
from t2ctl.values import Money

CENT = Decimal("0.01")


class ZohoLedger:
    def __init__(self, client: Client, *, currency: str):
        self.client = client
        self.currency = currency  # zoho.currency: a listing without currency_code is in it

    @property
    def calls(self) -> int:
        return self.client.sent

    def sales_orders(self, *, since: datetime, until: datetime) -> Iterator[Listed]:
        """Sales orders dated on or after ``since``'s day (UTC, as the provisioner dates
        them): an order's sales order is made after the order, never before."""
        first = since.astimezone(UTC).date()
        pages = self.client.pages("/salesorders", "salesorders", sort_column="date", sort_order="D")
        for page in pages:
            for found in page:
                listed = self._listed(found)
                if listed.day >= first:
                    yield listed
            if page and _day(page[-1]) < first:
                return

    def _listed(self, found: dict[str, Any]) -> Listed:
        return Listed(
            sales_order_id=str(found["salesorder_id"]),
            number=str(found.get("salesorder_number", "")),
            reference=str(found.get("reference_number") or ""),
            state=sales_order_state(found),
            total=self._money(found.get("total"), found.get("currency_code")),
            day=_day(found),
        )

    def _money(self, total: Any, currency: Any) -> Money | None:
        """Zoho's total (a JSON number) as exact Money: through its decimal text, not float
        arithmetic; None when absent or not a number."""
        try:
            value = Decimal(str(total)).quantize(CENT, rounding=ROUND_HALF_UP)
        except (InvalidOperation, ValueError):
            return None
        return Money(int(value * 100), str(currency or self.currency))


def _day(found: dict[str, Any]) -> date:
    return date.fromisoformat(str(found.get("date", ""))[:10])
