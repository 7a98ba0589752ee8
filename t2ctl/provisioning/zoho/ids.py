"""Zoho's contact and item ids, cached so a returning customer's order costs two calls to
Zoho: create and confirm its sales order.

Contacts are cached by a keyed digest of the customer's email (``zoho_contact``): found by
email, or created, on a miss. Items are cached by sku (``zoho_item``): filled by ``products
sync``, or looked up on a miss. A cached id Zoho no longer knows is dropped, to be found
again.
"""

import hashlib
import hmac
from dataclasses import dataclass

from t2ctl import clock, db
from t2ctl.db.models import ZohoContact, ZohoItem
from t2ctl.provisioning import Rejected, Request, Unreachable
from t2ctl.provisioning.zoho.client import Client, ZohoError


@dataclass(frozen=True)
class Id:
    """A Zoho id, and whether it came from the cache (so may have gone stale)."""

    value: str
    cached: bool


class IdCache:
    """One organization's contact and item ids: read from the cache, else asked of Zoho."""

    def __init__(self, client: Client, *, digest_key: bytes):
        self.client = client
        self.org = client.organization_id
        self.digest_key = digest_key

    def contact(self, request: Request) -> Id:
        """The customer's contact id: cached, found by email, or created."""
        digest = self._digest(request.customer_email)
        cached = ZohoContact.get_or_none(self._contact_key(digest))
        if cached is not None:
            return Id(cached.contact_id, cached=True)
        contact_id = self._find_contact(request.customer_email)
        if contact_id is None:
            contact_id = self._create_or_find_contact(request)
        with db.transaction():
            ZohoContact.insert(
                organization_id=self.org,
                email_digest=digest,
                contact_id=contact_id,
                created_at=clock.now(),
            ).on_conflict_ignore().execute()
        return Id(contact_id, cached=False)

    def item(self, sku: str) -> Id:
        """The item id for a productId: cached (``products sync`` fills it) or looked up."""
        cached = ZohoItem.get_or_none(self._item_key(sku))
        if cached is not None:
            return Id(cached.item_id, cached=True)
        items = [
            i for i in self.client.get("/items", sku=sku).get("items", []) if i.get("sku") == sku
        ]
        if not items:
            raise Rejected(
                "PRODUCT_UNAVAILABLE", "The product is not available in the inventory system."
            )
        remember_items(self.org, {sku: str(items[0]["item_id"])})
        return Id(str(items[0]["item_id"]), cached=False)

    def drop(self, request: Request, contact: Id, item: Id) -> None:
        """Forget whichever of the two came from the cache: Zoho no longer knows one."""
        with db.transaction():
            if contact.cached:
                ZohoContact.delete().where(
                    self._contact_key(self._digest(request.customer_email))
                ).execute()
            if item.cached:
                ZohoItem.delete().where(self._item_key(request.product_id)).execute()

    def _contact_key(self, digest: str):
        return (ZohoContact.organization_id == self.org) & (ZohoContact.email_digest == digest)

    def _item_key(self, sku: str):
        return (ZohoItem.organization_id == self.org) & (ZohoItem.sku == sku)

    def _create_or_find_contact(self, request: Request) -> str:
        """Create the contact; if refused, perhaps a concurrent order of the same customer
        created it first, and Zoho's search does not show it yet: try again later rather
        than fail."""
        try:
            return self._create_contact(request)
        except ZohoError:
            contact_id = self._find_contact(request.customer_email)
            if contact_id is None:
                raise Unreachable("the customer's contact could not be created or found") from None
            return contact_id

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
