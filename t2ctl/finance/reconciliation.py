"""Reconciliation: does the system of record (Zoho, or the sandbox) say what the gateway says?

The orders created in a window that ended FULFILLED, CANCELLED or FAILED are compared with
the sales orders the ledger lists, matched by reference number = orderId, and where the order
knows its sales order's id, by that id (two partners may use one orderId). Each disagreement
of a kind the contract names is a ``Drift``:

- a FULFILLED order's sales order missing, a draft, void, or of another total;
- a CANCELLED order's sales order still open;
- a sales order whose reference names no order here at all (``unknown_reference``). One with
  no reference was made by hand in Zoho and is not ours to judge.

What the contract has no kind for is still said, as a finding (a warning to the operator):
a second sales order for one order (provisioning must never make two), or a FAILED order's
sales order left open.

A FULFILLED order whose cancellation is under way may already be void there: that is the
cancellation's progress, not drift. An order that changed while the ledger was read (a
cancellation finished meanwhile) is judged again as it stands, so a race is not reported.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

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
_JUDGED = ("FULFILLED", "CANCELLED", "FAILED")


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
    findings: list[str]  # disagreements the contract has no kind for, said to the operator

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
    orders = _orders(
        (Order.created_at >= since) & (Order.created_at < until) & Order.status.in_(_JUDGED)
    )
    listed = list(ledger.sales_orders(since=since, until=until))
    by_reference: dict[str, list[Listed]] = defaultdict(list)
    for sales_order in listed:
        by_reference[sales_order.reference].append(sales_order)
    claimed = _claimed(_owners({o.order_id for o in orders if o.sales_order_id is None}))
    claimed.update(o.sales_order_id for o in orders if o.sales_order_id is not None)
    mine = {o: _mine(o, by_reference.get(o.order_id, []), claimed) for o in orders}
    matched = {s.sales_order_id for found in mine.values() for s in found}
    strangers = [s for s in listed if s.sales_order_id not in matched and s.reference]
    owners = _owners({s.reference for s in strangers})
    unknown = [s for s in strangers if s.reference not in owners and s.day <= until.date()]
    drift = _settled(mine) + [_unknown(s) for s in unknown]
    findings = _left_open(mine) + _second(
        [s for s in strangers if s.reference in owners], {o.order_id for o in orders}, owners
    )
    checked = sum(1 for o in orders if o.status != "FAILED")
    return Result(since, until, checked, drift, ledger.calls, findings)


def record(result: Result, *, source: str, routine: bool, started_at: datetime) -> None:
    """Keep the run's outcome. ``routine``: over the default window up to its run, as the
    timer and the daily task run it; the last routine run feeds the drift gauge, so that a
    narrower look by hand never clears an alert."""
    with db.transaction():
        Reconciliation.create(
            started_at=started_at,
            finished_at=clock.now(),
            since=result.since,
            until=result.until,
            source=source,
            routine=routine,
            checked=result.checked,
            calls=result.calls,
            counts=result.counts,
            drift=[d.public() for d in result.drift[:DRIFT_KEPT]],
        )


def warn(result: Result) -> None:
    """Say in the log what a run nobody watches found: its findings, and its drift."""
    for finding in result.findings:
        logger.warning("reconcile: %s", finding, extra={"action": "reconcile_finding"})
    if not result.clean:
        logger.warning("reconcile: %s", result.summary(), extra={"action": "reconcile_drift"})


def last_routine() -> tuple[datetime, dict[str, int]] | None:
    """When the last routine run finished, and its drift by kind."""
    row = (
        Reconciliation.select(Reconciliation.finished_at, Reconciliation.counts)
        .where(Reconciliation.routine)
        .order_by(Reconciliation.finished_at.desc())
        .first()
    )
    return None if row is None else (row.finished_at, row.counts)


def _orders(where: Any) -> list[_Checked]:
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
        .where(where)
        .order_by(Order.created_at, Order.id)
        .tuples()
    )
    return [
        _Checked(partner, order_id, status, Money(minor, currency), so_id, asked is not None)
        for partner, order_id, status, minor, currency, so_id, asked in rows.iterator()
    ]


def _mine(order: _Checked, candidates: list[Listed], claimed: set[str]) -> list[Listed]:
    """The sales orders of ``order`` among those with its reference: the one whose id it
    knows, else any no other order (of any partner, at any time) knows as its own."""
    ours = [c for c in candidates if c.partner is None or c.partner == order.partner]
    if order.sales_order_id is not None:
        return [c for c in ours if c.sales_order_id == order.sales_order_id]
    return [c for c in ours if c.sales_order_id not in claimed]


def _settled(mine: dict[_Checked, list[Listed]]) -> list[Drift]:
    """The drift of each order, judged again as it now stands where it was found: an order
    cancelled while the ledger was read is not drift."""
    found = {o: d for o, sales in mine.items() if (d := _compare(o, sales))}
    if not found:
        return []
    keys = {(o.partner, o.order_id) for o in found}
    now = {
        (o.partner, o.order_id): o
        for named in _named({order_id for _, order_id in keys})
        for o in _orders(named)
        if (o.partner, o.order_id) in keys
    }
    drift = []
    for order, judged in found.items():
        current = now.get((order.partner, order.order_id), order)
        drift.extend(judged if current == order else _compare(current, mine[order]))
    return drift


def _compare(order: _Checked, mine: list[Listed]) -> list[Drift]:
    if order.status == "FAILED":
        return []  # nothing to agree on; what it left is a finding
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
        detail = "no sales order with its reference is there"
        if order.sales_order_id is not None:
            detail = f"its sales order (id {order.sales_order_id}) is not there"
        return [
            Drift(order.order_id, "missing_in_zoho", f"the order is FULFILLED here, but {detail}")
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


def _left_open(mine: dict[_Checked, list[Listed]]) -> list[str]:
    """A FAILED order's sales orders still open: provisioning did not clean up."""
    return [
        f"order {order.order_id} FAILED, but sales order {s.number} is {s.state}"
        for order, sales in mine.items()
        if order.status == "FAILED"
        for s in sales
        if s.state != "void"
    ]


def _second(named: list[Listed], window: set[str], owners: dict[str, set[str]]) -> list[str]:
    """Open sales orders naming an order of the window that no order knows as its own: a
    second one for that order (provisioning must never make two)."""
    owned = _claimed({ref: owners[ref] for ref in {s.reference for s in named} & window})
    return [
        f"sales order {s.number} ({s.state}) names order {s.reference}, which has its own"
        for s in named
        if s.reference in window and s.state != "void" and s.sales_order_id not in owned
    ]


def _unknown(stranger: Listed) -> Drift:
    return Drift(
        stranger.reference,
        "unknown_reference",
        f"sales order {stranger.number} of {stranger.day.isoformat()} names no order here",
    )


def _owners(references: Iterable[str]) -> dict[str, set[str]]:
    """Each of ``references`` that is an orderId here (of any partner, at any time), with
    the sales order ids its orders know as theirs (none, if none is known)."""
    owners: dict[str, set[str]] = {}
    for named in _named(references):
        query = Order.select(Order.order_id, Order.sales_order_id).where(named)
        for order_id, sales_order_id in cast("Iterable[tuple[str, str | None]]", query.tuples()):
            known = owners.setdefault(order_id, set())
            if sales_order_id is not None:
                known.add(sales_order_id)
    return owners


def _claimed(owners: dict[str, set[str]]) -> set[str]:
    """The sales order ids the orders of ``owners`` know as theirs."""
    return {sales_order_id for known in owners.values() for sales_order_id in known}


def _named(references: Iterable[str]) -> Iterator[Any]:
    """Conditions that select the orders whose orderId is among ``references``, of any
    partner, a chunk at a time (a statement holds a bounded number of parameters)."""
    wanted = sorted(set(references))
    everyone = _everyone()
    for start in range(0, len(wanted), _IN_CHUNKS):
        yield Order.partner.in_(everyone) & Order.order_id.in_(wanted[start : start + _IN_CHUNKS])


def _everyone() -> list[int]:
    """Every partner's id: naming them lets the (partner, orderId) index find orders by
    orderId alone (partners are few)."""
    return list(Partner.select(Partner.id).scalars())
