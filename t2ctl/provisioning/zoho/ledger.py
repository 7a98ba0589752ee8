"""Zoho's sales orders read back for reconciliation: the list (every status), newest first,
page by page within the fleet's call budget (the client's pacer), until the pages reach
days before any order of the window could have had its sales order made.

Pages are offsets into a list that provisioning keeps adding to at its top, so a sales order
may be listed twice (pushed onto the next page): each is yielded once. A page Zoho fails to
give for a while (network, 429, 5xx) is asked for again, a few times, before the run gives up.
"""

import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from t2ctl import clock
from t2ctl.provisioning import Listed, Unreachable
from t2ctl.provisioning.zoho.client import PER_PAGE, Client
from t2ctl.provisioning.zoho.provisioner import sales_order_state
from t2ctl.values import Money

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
ATTEMPTS = 5  # per page; the waits between them double from BACKOFF
BACKOFF = timedelta(seconds=2)


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
        seen: set[str] = set()
        number = 1
        while True:
            body = self._page(number)
            page = body.get("salesorders") or []
            for found in page:
                listed = self._listed(found, first)
                if listed.day >= first and listed.sales_order_id not in seen:
                    seen.add(listed.sales_order_id)
                    yield listed
            older = page and _day(page[-1], first) < first
            if older or not (body.get("page_context") or {}).get("has_more_page"):
                return
            number += 1

    def _page(self, number: int) -> dict[str, Any]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self.client.get(
                    "/salesorders",
                    page=number,
                    per_page=PER_PAGE,
                    filter_by="Status.All",
                    sort_column="date",
                    sort_order="D",
                )
            except Unreachable as exc:
                if attempt == ATTEMPTS:
                    raise Unreachable(
                        f"Zoho's sales orders could not be listed (page {number}, "
                        f"{ATTEMPTS} tries): {exc}"
                    ) from exc
                wait = clock.retry_wait(exc.retry_after, BACKOFF * 2 ** (attempt - 1))
                logger.warning(
                    "listing Zoho's sales orders, page %d: %s; again in %s",
                    number,
                    exc,
                    clock.approximate(wait),
                    extra={"action": "zoho_list_retry"},
                )
                time.sleep(wait.total_seconds())
        raise AssertionError("the last attempt returns or raises")

    def _listed(self, found: dict[str, Any], first: date) -> Listed:
        return Listed(
            sales_order_id=str(found["salesorder_id"]),
            number=str(found.get("salesorder_number", "")),
            reference=str(found.get("reference_number") or ""),
            state=sales_order_state(found),
            total=self._money(found.get("total"), found.get("currency_code")),
            day=_day(found, first),
        )

    def _money(self, total: Any, currency: Any) -> Money | None:
        """Zoho's total (a JSON number) as exact Money: through its decimal text, not float
        arithmetic; None when absent or not a number."""
        try:
            value = Decimal(str(total)).quantize(CENT, rounding=ROUND_HALF_UP)
        except (InvalidOperation, ValueError):
            return None
        return Money(int(value * 100), str(currency or self.currency))


def _day(found: dict[str, Any], otherwise: date) -> date:
    """The sales order's date; ``otherwise`` when Zoho lists none (kept, never the reason
    to stop paging)."""
    try:
        return date.fromisoformat(str(found.get("date", ""))[:10])
    except ValueError:
        return otherwise
