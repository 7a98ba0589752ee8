"""Provisioning in Zoho Inventory: a confirmed sales order per order, never two.

The sales order's progress is written down around each step (``zoho_sales_order``): the row
says ``creating`` before the create call is sent, then ``draft``, then ``confirmed``. Only a
row left in ``creating`` means an earlier attempt's outcome is unknown (a crash or a lost
answer after the request went out): then, and only then, Zoho is asked for a sales order with
that ``reference_number`` before one is created. Contact ids (by a keyed digest of the email)
and item ids (by sku) are cached, so a returning customer's order costs two calls: create and
confirm.
"""

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from t2ctl import clock, db
from t2ctl.db.models import ZohoContact, ZohoItem, ZohoSalesOrder
from t2ctl.provisioning import Rejected, Request, SalesOrder, Unreachable
from t2ctl.provisioning.zoho.client import Client, RateLimited, ZohoError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Id:
    value: str
    cached: bool


class ZohoProvisioner:
    def __init__(self, client: Client, *, digest_key: bytes):
        self.client = client
        self.org = client.organization_id
        self.digest_key = digest_key

    def provision(self, request: Request, *, resume: bool) -> SalesOrder:
        """``resume`` is not needed here: the progress row says more precisely what an
        earlier attempt did."""
        try:
            progress = self._progress(request.order_id)
            if progress is None or progress.state == "creating":
                found = self._find(request.order_id) if progress is not None else None
                progress = self._record(request.order_id, found or self._create(request))
            if progress.state != "confirmed":
                self._confirm(progress)
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

    def _create(self, request: Request) -> dict[str, Any]:
        contact = self.contact(request)
        item = self.item(request.product_id)
        self._write(request.order_id, state="creating")
        # Written before the call: a crash from here on leaves "creating", the one state in
        # which the next attempt looks the sales order up before creating one.
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
            )
        except RateLimited:
            self._forget(request.order_id)  # turned away unprocessed: nothing was created
            raise
        except ZohoError:
            self._forget(request.order_id)  # a refusal created nothing
            if contact.cached or item.cached:
                self._drop_cached(request, contact, item)
                raise Unreachable("Zoho refused cached ids; retrying with fresh look-ups") from None
            raise
        return body["salesorder"]

    def _find(self, reference: str) -> dict[str, Any] | None:
        found = [
            order
            for order in self.client.get("/salesorders", reference_number=reference).get(
                "salesorders", []
            )
            if order.get("reference_number") == reference
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

    def _confirm(self, progress: ZohoSalesOrder) -> None:
        try:
            self.client.post(f"/salesorders/{progress.salesorder_id}/status/confirmed")
        except ZohoError:
            # Refused: perhaps an earlier attempt confirmed it before its answer was lost.
            current = self.client.get(f"/salesorders/{progress.salesorder_id}")["salesorder"]
            if current.get("status") == "draft":
                raise
        self._write(progress.reference_number, state="confirmed")
        progress.state = "confirmed"

    # -- progress rows -----------------------------------------------------------------

    def _progress(self, reference: str) -> ZohoSalesOrder | None:
        return ZohoSalesOrder.get_or_none(
            (ZohoSalesOrder.organization_id == self.org)
            & (ZohoSalesOrder.reference_number == reference)
        )

    def _record(self, reference: str, order: dict[str, Any]) -> ZohoSalesOrder:
        self._write(
            reference,
            state="draft" if order.get("status", "draft") == "draft" else "confirmed",
            salesorder_id=str(order["salesorder_id"]),
            salesorder_number=str(order["salesorder_number"]),
        )
        return self._progress(reference)

    def _write(self, reference: str, **changes: Any) -> None:
        with db.transaction():
            ZohoSalesOrder.insert(
                organization_id=self.org,
                reference_number=reference,
                updated_at=clock.now(),
                **changes,
            ).on_conflict(
                conflict_target=[ZohoSalesOrder.organization_id, ZohoSalesOrder.reference_number],
                update={"updated_at": clock.now(), **changes},
            ).execute()

    def _forget(self, reference: str) -> None:
        with db.transaction():
            ZohoSalesOrder.delete().where(
                (ZohoSalesOrder.organization_id == self.org)
                & (ZohoSalesOrder.reference_number == reference)
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
                # Perhaps a concurrent order of the same customer created it first.
                contact_id = self._find_contact(request.customer_email)
                if contact_id is None:
                    raise
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
