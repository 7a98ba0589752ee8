"""Provisioning in Zoho Inventory: a confirmed sales order per order, never two.

The sales order's progress is written down around each step (``zoho_sales_order``, one row
per order): ``creating`` just before the create call is sent, then ``draft`` with Zoho's
ids, then ``confirmed``. Only a row left in ``creating`` means an earlier attempt's outcome
is unknown (a crash, or an answer lost after the request went out): then, and only then,
Zoho is asked for a sales order with that ``reference_number`` before one is created.

The attempt that writes ``creating`` (right before the request is sent, after any wait for
a token or a slot in the pace) owns the row until its ``deadline``, by which its call has
surely ended (three times the client's timeout): another attempt that finds the row earlier
(the first lost its job lease but still waits on Zoho) waits rather than look and create
beside it. Every change of the row is conditional on the attempt that owns it, and a take-
over on the deadline it saw. The look-up asks for the contact the create was sent with.

The contact and item ids a create needs come from ``ids``, which caches them.

A void (a cancellation's undoing) asks Zoho for the sales order's status first and sends the
void only while it is not void yet, then records ``void``: a crash after the void went out
finds it void on the next attempt, and sends nothing again. (Two runs of one cancellation
at once, after a lost job lease, may both send it: Zoho refuses the second, which is then
found void.) After a failed provisioning, the sales order to void is the one the progress
row names, or the one Zoho holds under the order's reference when a create's outcome was
unknown.
"""

import logging
import secrets
from datetime import timedelta
from typing import Any

from t2ctl import clock, db
from t2ctl.db.models import ZohoSalesOrder
from t2ctl.provisioning import Made, Rejected, Request, SalesOrder, Unreachable
from t2ctl.provisioning.zoho.client import Client, TurnedAway, ZohoError
from t2ctl.provisioning.zoho.ids import Id, IdCache

logger = logging.getLogger(__name__)

# Zoho's sales order statuses: once confirmed, one moves on to shipping and invoicing.
CONFIRMED = {
    "confirmed",
    "open",
    "onhold",
    "overdue",
    "closed",
    "fulfilled",
    "partially_packed",
    "packed",
    "partially_shipped",
    "shipped",
    "partially_invoiced",
    "invoiced",
}
VOID = {"void", "rejected"}  # any other status (draft, pending_approval...) needs confirming
MISSING = {1002}  # Zoho's "does not exist": a cached id may have gone stale
DEADLINE_TIMEOUTS = 3  # connect and read are timed apart; the rest is margin


class ZohoProvisioner:
    def __init__(self, client: Client, *, digest_key: bytes):
        self.client = client
        self.org = client.organization_id
        self.ids = IdCache(client, digest_key=digest_key)
        self.grace = timedelta(seconds=client.timeout * DEADLINE_TIMEOUTS)

    def provision(self, request: Request, *, resume: bool) -> SalesOrder:
        """``resume`` is not needed here: the progress row says more precisely what an
        earlier attempt did."""
        attempt = secrets.token_hex(8)
        try:
            progress = self._progress(request)
            if progress is None or progress.state == "creating":
                progress = self._created(request, progress, attempt)
            if progress.state == "void":
                raise ZohoError("the sales order was voided or rejected", status=200, code="void")
            if progress.state != "confirmed":
                self._confirm(request, progress)
        except ZohoError as exc:
            logger.error(
                "order %s refused by Zoho: %s",
                request.order_id,
                exc,
                extra={"action": "zoho_rejected", "order_id": request.order_id},
            )
            raise Rejected(
                "PROVISIONING_REJECTED",
                "The subscription could not be provisioned: the order was refused by the "
                "inventory system.",
            ) from exc
        return _sales_order(progress)

    def void(self, made: Made) -> None:
        key = self._key(made.partner, made.order_id)
        progress = ZohoSalesOrder.get_or_none(key)
        if progress is not None and progress.state == "void":
            return
        sales_order_id = made.sales_order_id or self._left_by(made.order_id, progress)
        if sales_order_id is None:
            return  # the failed provisioning made nothing
        path = f"/salesorders/{sales_order_id}"
        try:
            if sales_order_state(self.client.get(path)["salesorder"]) != "void":
                self._send_void(path)
        except ZohoError as exc:
            logger.error(
                "order %s: Zoho refused to void sales order %s: %s",
                made.order_id,
                sales_order_id,
                exc,
                extra={"action": "zoho_void_refused", "order_id": made.order_id},
            )
            raise Rejected(
                "VOID_REFUSED", f"Zoho refused to void sales order {sales_order_id}: {exc}"
            ) from exc
        with db.transaction():
            ZohoSalesOrder.update(state="void", updated_at=clock.now()).where(key).execute()
        logger.info(
            "order %s: sales order %s voided",
            made.order_id,
            sales_order_id,
            extra={"action": "zoho_sales_order_voided", "order_id": made.order_id},
        )

    def _left_by(self, reference: str, progress: ZohoSalesOrder | None) -> str | None:
        """The sales order a failed provisioning left, if any: the one its progress row
        names, or, when a create's outcome is unknown, the one Zoho holds once that create
        has surely ended."""
        if progress is None:
            return None  # no create was sent, or it was refused
        if progress.salesorder_id is not None:
            return progress.salesorder_id
        now = clock.now()
        if progress.deadline is not None and progress.deadline > now:
            raise Unreachable(
                "a create of this order's sales order may still be on its way",
                retry_after=progress.deadline - now,
            )
        found = self._find(reference, progress.contact_id) if progress.contact_id else None
        return None if found is None else str(found["salesorder_id"])

    def _send_void(self, path: str) -> None:
        """Void; refused, it may be that an earlier void went through and its answer was
        lost: then the status says void."""
        try:
            self.client.post(f"{path}/status/void")
        except ZohoError:
            if sales_order_state(self.client.get(path)["salesorder"]) != "void":
                raise

    # -- the sales order ---------------------------------------------------------------

    def _created(
        self, request: Request, progress: ZohoSalesOrder | None, attempt: str
    ) -> ZohoSalesOrder:
        """The order's sales order: found, if an earlier attempt's create may have gone
        through, else created now."""
        found = None
        if progress is not None:
            self._take_over(progress, attempt)
            if progress.contact_id is not None:  # the create may have been sent
                found = self._find(request.order_id, progress.contact_id)
        if found is None:
            found = self._create(request, self.ids.contact(request), attempt)
        self._write(
            request,
            attempt,
            state=sales_order_state(found),
            salesorder_id=str(found["salesorder_id"]),
            salesorder_number=str(found["salesorder_number"]),
        )
        return self._written(request)

    def _create(self, request: Request, contact: Id, attempt: str) -> dict[str, Any]:
        item = self.ids.item(request.product_id)
        # Right before each send, "creating" is written: a crash or a lost answer from then
        # on makes the next attempt look the sales order up before it creates one.
        try:
            body = self.client.post(
                "/salesorders",
                {
                    "customer_id": contact.value,
                    "reference_number": request.order_id,
                    "date": clock.now().date().isoformat(),
                    "line_items": [
                        {
                            "item_id": item.value,
                            "rate": float(request.unit_price.value),
                            "quantity": request.quantity,
                        }
                    ],
                },
                before_send=lambda: self._begin(request, attempt, contact.value),
            )
        except (TurnedAway, ZohoError) as exc:
            self._forget(request, attempt)  # turned away or refused: nothing was created
            if (
                isinstance(exc, ZohoError)
                and exc.code in MISSING
                and (contact.cached or item.cached)
            ):
                self.ids.drop(request, contact, item)
                raise Unreachable("Zoho no longer knows a cached id; looking it up again") from exc
            raise
        return body["salesorder"]

    def _find(self, reference: str, contact_id: str) -> dict[str, Any] | None:
        """The sales order an earlier attempt created for this order, if Zoho has one."""
        pages = self.client.pages(
            "/salesorders", "salesorders", reference_number=reference, customer_id=contact_id
        )
        found = [
            order
            for page in pages
            for order in page
            if order.get("reference_number") == reference
            and str(order.get("customer_id")) == contact_id
        ]
        if len(found) > 1:
            logger.error(
                "Zoho holds %d sales orders with reference %s; using the first",
                len(found),
                reference,
                extra={"action": "zoho_duplicate_reference", "order_id": reference},
            )
        if found:
            logger.info(
                "order %s: found the sales order an earlier attempt created",
                reference,
                extra={"action": "zoho_sales_order_found", "order_id": reference},
            )
        return min(found, key=lambda o: int(o["salesorder_id"])) if found else None

    def _confirm(self, request: Request, progress: ZohoSalesOrder) -> None:
        try:
            self.client.post(f"/salesorders/{progress.salesorder_id}/status/confirmed")
            state = "confirmed"
        except ZohoError:
            # Refused: perhaps an earlier attempt confirmed it before its answer was lost.
            current = self.client.get(f"/salesorders/{progress.salesorder_id}")["salesorder"]
            state = sales_order_state(current)
            if state != "confirmed":
                raise
        self._write(request, progress.attempt, state=state)
        progress.state = state

    # -- progress rows -----------------------------------------------------------------

    def _key(self, partner: int, reference: str):
        return (
            (ZohoSalesOrder.organization_id == self.org)
            & (ZohoSalesOrder.partner == partner)
            & (ZohoSalesOrder.reference_number == reference)
        )

    def _progress(self, request: Request) -> ZohoSalesOrder | None:
        return ZohoSalesOrder.get_or_none(self._key(request.partner, request.order_id))

    def _written(self, request: Request) -> ZohoSalesOrder:
        """The progress row this attempt has just written."""
        return ZohoSalesOrder.get(self._key(request.partner, request.order_id))

    def _begin(self, request: Request, attempt: str, contact_id: str) -> None:
        """Write ``creating``, owned by this attempt, just before the create is sent."""
        now = clock.now()
        fields = {
            "attempt": attempt,
            "contact_id": contact_id,
            "deadline": now + self.grace,
            "updated_at": now,
        }
        with db.transaction():
            inserted = (
                ZohoSalesOrder.insert(
                    organization_id=self.org,
                    partner=request.partner,
                    reference_number=request.order_id,
                    state="creating",
                    **fields,
                )
                .on_conflict_ignore()
                .as_rowcount()
                .execute()
            )
            owned = inserted or (
                ZohoSalesOrder.update(**fields)
                .where(
                    self._key(request.partner, request.order_id)
                    & (ZohoSalesOrder.attempt == attempt)
                )
                .execute()
            )
        if not owned:
            raise Unreachable("another attempt is creating this order's sales order")

    def _take_over(self, progress: ZohoSalesOrder, attempt: str) -> None:
        """Own a ``creating`` row left by an earlier attempt, once its call has surely ended."""
        now = clock.now()
        if progress.deadline is not None and progress.deadline > now:
            raise Unreachable(
                "an earlier attempt may still be creating this order's sales order",
                retry_after=progress.deadline - now,
            )
        with db.transaction():
            owned = (
                ZohoSalesOrder.update(attempt=attempt, deadline=now + self.grace, updated_at=now)
                .where(
                    (ZohoSalesOrder.id == progress.id)
                    & (ZohoSalesOrder.attempt == progress.attempt)
                    & (ZohoSalesOrder.deadline == progress.deadline)  # not extended since read
                    & (ZohoSalesOrder.state == "creating")
                )
                .execute()
            )
        if not owned:
            raise Unreachable("another attempt took this order's sales order over")

    def _write(self, request: Request, attempt: str | None, **changes: Any) -> None:
        """Record progress, only while ``attempt`` still owns the row."""
        with db.transaction():
            owned = (
                ZohoSalesOrder.update(**changes, deadline=None, updated_at=clock.now())
                .where(
                    self._key(request.partner, request.order_id)
                    & (ZohoSalesOrder.attempt == attempt)
                )
                .execute()
            )
        if not owned:
            logger.error(
                "order %s: another attempt took over the sales order while this one worked",
                request.order_id,
                extra={"action": "zoho_progress_lost", "order_id": request.order_id},
            )
            raise Unreachable("another attempt took this order's sales order over")

    def _forget(self, request: Request, attempt: str) -> None:
        with db.transaction():
            ZohoSalesOrder.delete().where(
                self._key(request.partner, request.order_id) & (ZohoSalesOrder.attempt == attempt)
            ).execute()


def sales_order_state(order: dict[str, Any]) -> str:
    """Our progress state for a Zoho status: confirmed, void, or draft (still to confirm)."""
    status = str(order.get("status", "draft"))
    if status in CONFIRMED:
        return "confirmed"
    return "void" if status in VOID else "draft"


def _sales_order(progress: ZohoSalesOrder) -> SalesOrder:
    """A confirmed row as the provisioner's answer; its number is the activation reference."""
    if progress.salesorder_id is None or progress.salesorder_number is None:
        raise AssertionError(f"sales order row {progress.id} is confirmed without its ids")
    number = progress.salesorder_number
    return SalesOrder(progress.salesorder_id, number, number)
