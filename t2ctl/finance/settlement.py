"""The settlement report: what each partner sold in a period, per product and currency.

An order counts as sold in the period it was fulfilled (``fulfilled_at``), and as refunded
in the period it was cancelled (``cancelled_at``), when it had been fulfilled: a cancelled
order stays in its month's gross and is taken back in its cancellation's month, so a
closed month's report never changes. Amounts are summed in minor units by the database, as
integers: never a float. One aggregate query makes the whole report, over two indexes:
(partner, fulfilled_at) and (partner, cancelled_at).
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import peewee
from peewee import Case, fn

from t2ctl import clock, partners
from t2ctl.db.models import Order, Partner, Product
from t2ctl.values import Money

# The CSV's header and the JSON's row names, in order.
FIELDS = (
    "partner",
    "productId",
    "currency",
    "fulfilled",
    "renewals",
    "cancelled",
    "gross",
    "refunded",
    "net",
)


@dataclass(frozen=True)
class Line:
    """One partner's sales of one product in one currency, or a currency's total (then
    ``partner`` and ``product_id`` are None)."""

    partner: str | None
    product_id: str | None
    currency: str
    fulfilled: int
    renewals: int
    cancelled: int
    gross: Money
    refunded: Money

    @property
    def net(self) -> Money:
        return Money(self.gross.minor - self.refunded.minor, self.currency)

    def public(self) -> dict[str, Any]:
        return {
            "partner": self.partner,
            "productId": self.product_id,
            "currency": self.currency,
            "fulfilled": self.fulfilled,
            "renewals": self.renewals,
            "cancelled": self.cancelled,
            "gross": self.gross.public(),
            "refunded": self.refunded.public(),
            "net": self.net.public(),
        }

    def csv(self) -> dict[str, Any]:
        """The row for a spreadsheet: the JSON's names, amounts as decimal strings."""
        return {
            **self.public(),
            **{k: getattr(self, k).value for k in ("gross", "refunded", "net")},
        }


@dataclass(frozen=True)
class Report:
    start: date
    end: date  # exclusive
    timezone: str
    rows: list[Line]

    @property
    def totals(self) -> list[Line]:
        """One line per currency: amounts in different currencies are never added."""
        by_currency: dict[str, list[Line]] = defaultdict(list)
        for row in self.rows:
            by_currency[row.currency].append(row)
        return [
            Line(
                None,
                None,
                currency,
                sum(r.fulfilled for r in rows),
                sum(r.renewals for r in rows),
                sum(r.cancelled for r in rows),
                Money(sum(r.gross.minor for r in rows), currency),
                Money(sum(r.refunded.minor for r in rows), currency),
            )
            for currency, rows in sorted(by_currency.items())
        ]

    def public(self) -> dict[str, Any]:
        totals = [{k: v for k, v in t.public().items() if k in TOTAL_FIELDS} for t in self.totals]
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "rows": [row.public() for row in self.rows],
            "totals": totals,
        }


TOTAL_FIELDS = ("currency", "fulfilled", "cancelled", "gross", "refunded", "net")


def report(start: date, end: date, *, timezone: str, partner: str | None = None) -> Report:
    """The report for ``[start, end)``, days in ``timezone``; ``partner`` narrows it to one
    (NotFound if there is none of that name)."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    low, high = clock.local(start, timezone), clock.local(end, timezone)
    names = {p.id: p.name for p in Partner.select(Partner.id, Partner.name)}
    if partner is not None:
        names = {partners.get(partner).id: partner}
    products = {p.id: p.product_id for p in Product.select(Product.id, Product.product_id)}
    sold = _sold(list(names), low, high).alias("sold")
    found = (
        Order.select(
            sold.c.partner_id,
            sold.c.product_id,
            sold.c.currency,
            *(fn.SUM(sold.c[name]) for name in _MEASURES),
        )
        .from_(sold)
        .group_by(sold.c.partner_id, sold.c.product_id, sold.c.currency)
        .tuples()
    )
    # PostgreSQL sums integers as numeric (Decimal): exact, and made int again here.
    rows = sorted(
        (
            Line(
                names[partner_id],
                products[product_id],
                currency,
                int(f),
                int(r),
                int(c),
                Money(int(g), currency),
                Money(int(d), currency),
            )
            for partner_id, product_id, currency, f, r, c, g, d in cast(
                "Iterable[tuple[Any, ...]]", found
            )
        ),
        key=lambda line: (line.partner, line.product_id, line.currency),
    )
    return Report(start, end, timezone, rows)


_MEASURES = ("fulfilled", "renewals", "cancelled", "gross", "refunded")


def _sold(partner_ids: list[int], low: datetime, high: datetime) -> peewee.CompoundSelectQuery:
    """Each order fulfilled in ``[low, high)``, and again each fulfilled order cancelled in
    it, with what it adds to each measure: two halves, each a range of one index (partner,
    fulfilled_at) or (partner, cancelled_at) per partner (partners are few), so that no
    database has to choose one index for an OR of both."""
    zero, one = peewee.SQL("0"), peewee.SQL("1")
    fulfilled = Order.select(
        Order.partner,
        Order.product,
        Order.currency,
        one.alias("fulfilled"),
        Case(None, [(Order.renewal_of.is_null(False), 1)], 0).alias("renewals"),
        zero.alias("cancelled"),
        Order.amount_minor.alias("gross"),
        zero.alias("refunded"),
    ).where(
        Order.partner.in_(partner_ids) & (Order.fulfilled_at >= low) & (Order.fulfilled_at < high)
    )
    cancelled = Order.select(
        Order.partner, Order.product, Order.currency, zero, zero, one, zero, Order.amount_minor
    ).where(
        Order.partner.in_(partner_ids)
        & (Order.cancelled_at >= low)
        & (Order.cancelled_at < high)
        & Order.fulfilled_at.is_null(False)
    )
    return fulfilled + cancelled  # UNION ALL
