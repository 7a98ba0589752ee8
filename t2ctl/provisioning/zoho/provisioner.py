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

Contact ids (by a keyed digest of the email) and item ids (by sku) are cached, so a
returning customer's order costs two calls: create and confirm.
"""

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from t2ctl import clock, db
from t2ctl.db.models import ZohoContact, ZohoItem, ZohoSalesOrder
from t2ctl.provisioning import Rejected, Request, SalesOrder, Unreachable
from t2ctl.provisioning.zoho.client import Client, TurnedAway, ZohoError

logger = logging.getLogger(__name__)

# Zoho's sales order statuses: once confirmed, one moves on to shipping and invoicing.
CONFIRMED = {
    "confirmed",
    "open",
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


@dataclass(frozen=True)
class _Id:
    value: str
    cached: bool


class ZohoProvisioner:
    def __init__(self, client: Client, *, digest_key: bytes):
        self.client = client
        self.org = client.organization_id
        self.digest_key = digest_key
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
        number = progress.salesorder_number
        return SalesOrder(progress.salesorder_id, number, number)

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
            found = self._create(request, self.contact(request), attempt)
        self._write(
            request,
            attempt,
            state=_state(found),
            salesorder_id=str(found["salesorder_id"]),
            salesorder_number=str(found["salesorder_number"]),
        )
        return self._progress(request)

    def _create(self, request: Request, contact: _Id, attempt: str) -> dict[str, Any]:
        item = self.item(request.product_id)
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
                self._drop_cached(request, contact, item)
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
            state = _state(current)
            if state != "confirmed":
                raise
        self._write(request, progress.attempt, state=state)
        progress.state = state

    # -- progress rows -----------------------------------------------------------------

    def _key(self, request: Request):
        return (
            (ZohoSalesOrder.organization_id == self.org)
            & (ZohoSalesOrder.partner == request.partner)
            & (ZohoSalesOrder.reference_number == request.order_id)
        )

    def _progress(self, request: Request) -> ZohoSalesOrder | None:
        return ZohoSalesOrder.get_or_none(self._key(request))

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
                .where(self._key(request) & (ZohoSalesOrder.attempt == attempt))
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
                .where(self._key(request) & (ZohoSalesOrder.attempt == attempt))
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
                self._key(request) & (ZohoSalesOrder.attempt == attempt)
            ).execute()

    # -- contacts and items --------------------------------------------------------------

    def contact(self, request: Request) -> _Id:
        """The customer's contact id: cached, found by email, or created."""
        digest = self._digest(request.customer_email)
        cached = ZohoContact.get_or_none(
            (ZohoContact.organization_id == self.org) & (ZohoContact.email_digest == digest)
        )
        if cached is not None:
            return _Id(cached.contact_id, cached=True)
        contact_id = self._find_contact(request.customer_email)
        if contact_id is None:
            try:
                contact_id = self._create_contact(request)
            except ZohoError:
                # Perhaps a concurrent order of the same customer created it first, and
                # Zoho's search does not show it yet: try again later rather than fail.
                contact_id = self._find_contact(request.customer_email)
                if contact_id is None:
                    raise Unreachable(
                        "the customer's contact could not be created or found"
                    ) from None
        with db.transaction():
            ZohoContact.insert(
                organization_id=self.org,
                email_digest=digest,
                contact_id=contact_id,
                created_at=clock.now(),
            ).on_conflict_ignore().execute()
        return _Id(contact_id, cached=False)

    def _find_contact(self, email: str) -> str | None:
        contacts = self.client.get("/contacts", email=email).get("contacts", [])
        for contact in contacts:
            if str(contact.get("email", "")).lower() == email.lower():
                return str(contact["contact_id"])
        return None

    def _create_contact(self, request: Request) -> str:
        first, _, last = request.customer_name.rpartition(" ")
        person = {
            "first_name": first or last,
            "last_name": last if first else "",
            "email": request.customer_email,
            "is_primary_contact": True,
        }
        if request.customer_phone:
            person["mobile"] = request.customer_phone
        body = self.client.post(
            "/contacts",
            {
                # Zoho wants contact names unique; T2Mobile's customer id makes them so.
                "contact_name": f"{request.customer_name} ({request.customer_id})",
                "contact_type": "customer",
                "contact_persons": [person],
            },
        )
        return str(body["contact"]["contact_id"])

    def item(self, sku: str) -> _Id:
        """The item id for a productId: cached (``products sync`` fills it) or looked up."""
        cached = ZohoItem.get_or_none(
            (ZohoItem.organization_id == self.org) & (ZohoItem.sku == sku)
        )
        if cached is not None:
            return _Id(cached.item_id, cached=True)
        items = [
            i for i in self.client.get("/items", sku=sku).get("items", []) if i.get("sku") == sku
        ]
        if not items:
            raise Rejected(
                "PRODUCT_UNAVAILABLE", "The product is not available in the inventory system."
            )
        remember_items(self.org, {sku: str(items[0]["item_id"])})
        return _Id(str(items[0]["item_id"]), cached=False)

    def _drop_cached(self, request: Request, contact: _Id, item: _Id) -> None:
        with db.transaction():
            if contact.cached:
                ZohoContact.delete().where(
                    (ZohoContact.organization_id == self.org)
                    & (ZohoContact.email_digest == self._digest(request.customer_email))
                ).execute()
            if item.cached:
                ZohoItem.delete().where(
                    (ZohoItem.organization_id == self.org) & (ZohoItem.sku == request.product_id)
                ).execute()

    def _digest(self, email: str) -> str:
        """A keyed digest: the cache finds a customer without holding their address."""
        return hmac.new(self.digest_key, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def _state(order: dict[str, Any]) -> str:
    """Our progress state for a Zoho status: confirmed, void, or draft (still to confirm)."""
    status = str(order.get("status", "draft"))
    if status in CONFIRMED:
        return "confirmed"
    return "void" if status in VOID else "draft"


def remember_items(organization_id: str, ids: dict[str, str]) -> None:
    """Cache item ids by sku (from ``products sync`` or a look-up)."""
    now = clock.now()
    with db.transaction():
        for sku, item_id in ids.items():
            ZohoItem.insert(
                organization_id=organization_id, sku=sku, item_id=item_id, updated_at=now
            ).on_conflict(
                conflict_target=[ZohoItem.organization_id, ZohoItem.sku],
                update={ZohoItem.item_id: item_id, ZohoItem.updated_at: now},
            ).execute()
