"""`products sync`: the catalogue from Zoho Inventory's items (CONTRACT §3).

Each item maps to a Product: ``sku`` → productId, ``name``, ``description``, ``rate`` → the
price in ``zoho.currency``, ``status`` active → active, and termMonths from the custom field
labelled ``Term Months`` (12 when absent; read from ``custom_fields`` or from the
``cf_term_months`` key that list answers carry). Item ids are cached by sku on the way, so
orders need no item look-up. The products service makes the catalogue match what this reads.
"""

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from t2ctl.provisioning.zoho.client import Client
from t2ctl.provisioning.zoho.ids import remember_items

TERM_FIELD = "Term Months"
TERM_KEY = "cf_term_months"  # the same custom field as Zoho flattens it into list answers
DEFAULT_TERM = 12

Item = tuple[str, dict[str, Any]]
"""An item as a report names it (``item 4600000123 (Norton 360)``), and the Product (API
shape, still to be validated by the products service) it stands for."""


def read(
    client: Client, *, currency: str, on_page: Callable[[int], None] = lambda _count: None
) -> list[Item]:
    """Every item, page by page (``on_page`` is told how many each brought), as the Product
    it stands for. Item ids are cached by sku on the way, so orders need no item look-up."""
    items: list[Item] = []
    ids: dict[str, str] = {}
    for page in client.pages("/items", "items"):
        for item in page:
            items.append(
                (
                    f"item {item.get('item_id')} ({item.get('name', '?')})",
                    as_product(item, currency),
                )
            )
            if item.get("sku") and item.get("item_id"):
                ids[str(item["sku"])] = str(item["item_id"])
        on_page(len(page))
    remember_items(client.organization_id, ids)
    return items


def as_product(item: dict[str, Any], currency: str) -> dict[str, Any]:
    """The Product (API shape) a Zoho item stands for, still to be validated."""
    return {
        "productId": item.get("sku") or None,
        "name": item.get("name"),
        "description": item.get("description") or "",
        "price": {"value": _two_places(item.get("rate")), "currency": currency},
        "termMonths": _term(item),
        "active": item.get("status") == "active",
    }


def _two_places(rate: Any) -> str:
    try:
        return f"{Decimal(str(rate)).quantize(Decimal('0.01'))}"
    except (InvalidOperation, ValueError):
        return str(rate)


def _term(item: dict[str, Any]) -> Any:
    values = [
        f.get("value") for f in item.get("custom_fields") or [] if f.get("label") == TERM_FIELD
    ]
    values.append(item.get(TERM_KEY))
    for value in values:
        if value not in (None, ""):
            return int(value) if isinstance(value, float) and value.is_integer() else value
    return DEFAULT_TERM
