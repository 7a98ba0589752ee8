"""Reconciliation: does the system of record (Zoho, or the sandbox) say what the gateway says?

The orders created in a window that ended FULFILLED or CANCELLED are compared with the sales
orders the ledger lists, matched by reference number = orderId (and, where the order knows
its sales order's id, by that id too: two partners may use the same orderId). Each
disagreement is a ``Drift`` of one of the contract's kinds. A sales order whose reference
names no order at all is ``unknown_reference``; one with no reference is not ours to judge
(someone made it by hand in Zoho) and is left alone.

A FULFILLED order whose cancellation is under way may already be void in Zoho: that is the
cancellation's own progress, not drift.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from t2ctl import clock, db
from t2ctl.db.models import Order, Partner, Reconciliation
from t2ctl.provisioning import Ledger, Listed
from t2ctl.values import Money

logger = logging.getLogger(__name__)

KINDS = (
    "missing_in_zoho",
    "not_confirmed",
    "voided_in_zoho",
    "not_voided",
    "amount_mismatch",
    "unknown_reference",
)
WINDOW = timedelta(days=30)  # the default: orders created in the last 30 days
DRIFT_KEPT = 1000  # drift entries a run's record keeps; its counts are always whole
_IN_CHUNKS = 500  # references looked up per query


@dataclass(frozen=True)
class Drift:
    order_id: str
    kind: str
    detail: str

    def public(self) -> dict[str, str]:
        return {"orderId": self.order_id, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class Result:
    since: datetime
    until: datetime
    checked: int
    drift: list[Drift]
    calls: int

    @property
    def clean(self) -> bool:
        return not self.drift

    @property
    def counts(self) -> dict[str, int]:
        """Every kind, found or not, with how many of it."""
        found = Counter(d.kind for d in self.drift)
        return {kind: found[kind] for kind in KINDS}

    def public(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "clean": self.clean,
            "drift": [d.public() for d in self.drift],
        }

    def summary(self) -> str:
        found = ", ".join(f"{n} {kind}" for kind, n in self.counts.items() if n)
        return (
            f"{self.checked} order(s) checked, {self.calls} call(s) to the system of record: "
            + (f"drift: {found}" if found else "all agree")
        )


@dataclass(frozen=True)
class _Checked:
    """An order in the window, as reconciliation needs it."""

    partner: int
    order_id: str
    status: str
    amount: Money
    sales_order_id: str | None
    cancelling: bool


def reconcile(ledger: Ledger, *, since: datetime, until: datetime) -> Result:
    """Compare the window's orders with the ledger's sales orders; nothing is changed."""
    orders = _orders(since, until)
    listed = list(ledger.sales_orders(since=since, until=until))
    by_reference: dict[str, list[Listed]] = defaultdict(list)
    for sales_order in listed:
        by_reference[sales_order.reference].append(sales_order)
    claimed = {o.sales_order_id for o in orders if o.sales_order_id is not None}
    matched: set[str] = set()
    drift: list[Drift] = []
    for order in orders:
        mine = _mine(order, by_reference.get(order.order_id, []), claimed)
        matched.update(s.sales_order_id for s in mine)
        drift.extend(_compare(order, mine))
    strangers = [
        s
        for s in listed
        if s.sales_order_id not in matched and s.reference and s.day <= until.date()
    ]
    drift.extend(_unknown(strangers))
    return Result(since, until, len(orders), drift, ledger.calls)


def record(result: Result, *, source: str, started_at: datetime) -> None:
    """Keep the run's outcome: the last one feeds the drift gauge."""
    with db.transaction():
        Reconciliation.create(
            started_at=started_at,
            finished_at=clock.now(),
            since=result.since,
            until=result.until,
            source=source,
            checked=result.checked,
            calls=result.calls,
            counts=result.counts,
            drift=[d.public() for d in result.drift[:DRIFT_KEPT]],
        )
    if result.clean:
        logger.info("reconcile: %s", result.summary(), extra={"action": "reconciled"})
    else:
        logger.warning("reconcile: %s", result.summary(), extra={"action": "reconcile_drift"})


def latest() -> Reconciliation | None:
    return Reconciliation.select().order_by(Reconciliation.finished_at.desc()).first()


def _orders(since: datetime, until: datetime) -> list[_Checked]:
    rows = (
        Order.select(
            Order.partner,
            Order.order_id,
            Order.status,
            Order.amount_minor,
            Order.currency,
            Order.sales_order_id,
            Order.cancel_requested_at,
        )
        .where(
            (Order.created_at >= since)
            & (Order.created_at < until)
            & Order.status.in_(("FULFILLED", "CANCELLED"))
        )
        .order_by(Order.created_at, Order.id)
        .tuples()
    )
    return [
        _Checked(partner, order_id, status, Money(minor, currency), so_id, asked is not None)
        for partner, order_id, status, minor, currency, so_id, asked in rows.iterator()
    ]


def _mine(order: _Checked, candidates: list[Listed], claimed: set[str]) -> list[Listed]:
    """The sales orders of ``order`` among those with its reference: the one whose id it
    knows, else any no other order of the window knows as its own."""
    ours = [c for c in candidates if c.partner is None or c.partner == order.partner]
    if order.sales_order_id is not None:
        return [c for c in ours if c.sales_order_id == order.sales_order_id]
    return [c for c in ours if c.sales_order_id not in claimed]


def _compare(order: _Checked, mine: list[Listed]) -> list[Drift]:
    if order.status == "CANCELLED":
        return [
            Drift(
                order.order_id,
                "not_voided",
                f"the order is CANCELLED here, but sales order {s.number} is still {s.state}",
            )
            for s in mine
            if s.state != "void"
        ]
    if not mine:
        known = f" (sales order id {order.sales_order_id})" if order.sales_order_id else ""
        return [
            Drift(
                order.order_id,
                "missing_in_zoho",
                f"the order is FULFILLED here{known}, but no sales order with its reference "
                "is there",
            )
        ]
    found = mine[0]
    if found.state == "draft":
        return [Drift(order.order_id, "not_confirmed", f"sales order {found.number} is a draft")]
    if found.state == "void" and not order.cancelling:
        return [
            Drift(
                order.order_id,
                "voided_in_zoho",
                f"the order is FULFILLED here, but sales order {found.number} is void",
            )
        ]
    if found.total is not None and found.total != order.amount:
        return [
            Drift(
                order.order_id,
                "amount_mismatch",
                f"sales order {found.number} totals {found.total}; the order's amount is "
                f"{order.amount}",
            )
        ]
    return []


def _unknown(strangers: list[Listed]) -> list[Drift]:
    """Sales orders whose reference names no order here, at any time, of any partner."""
    known = _known_references({s.reference for s in strangers})
    return [
        Drift(
            s.reference,
            "unknown_reference",
            f"sales order {s.number} of {s.day.isoformat()} names no order here",
        )
        for s in strangers
        if s.reference not in known
    ]


def _known_references(references: Iterable[str]) -> set[str]:
    wanted = sorted(references)
    # Naming every partner lets the (partner, orderId) index answer: partners are few.
    everyone = list(Partner.select(Partner.id).scalars())
    known: set[str] = set()
    for start in range(0, len(wanted), _IN_CHUNKS):
        chunk = wanted[start : start + _IN_CHUNKS]
        query = (
            Order.select(Order.order_id)
            .where(Order.partner.in_(everyone) & Order.order_id.in_(chunk))
            .distinct()
        )
        known.update(query.scalars())
    return known
