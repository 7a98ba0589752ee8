"""The product catalogue: what partners may order, at what price, for how long."""

import csv
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from t2ctl import clock, db, values
from t2ctl.db.models import Product
from t2ctl.errors import FieldError, NotFound, ValidationFailed
from t2ctl.values import Money

CSV_HEADER = ["productId", "name", "description", "price", "currency", "termMonths", "active"]
API_FIELDS = {"productId", "name", "description", "price", "termMonths", "active"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class ProductData:
    """One validated catalogue entry, ready to upsert."""

    product_id: str
    name: str
    description: str
    price: Money
    term_months: int
    active: bool


_UPDATED_ON_IMPORT = [
    Product.name,
    Product.description,
    Product.price_minor,
    Product.currency,
    Product.term_months,
    Product.active,
    Product.updated_at,
]


@dataclass(frozen=True)
class ImportResult:
    added: int
    updated: int


@dataclass(frozen=True)
class SyncResult:
    added: list[str]
    updated: list[str]
    unchanged: int
    deactivated: list[str]
    skipped: list[FieldError]


def price(product: Product) -> Money:
    return Money(product.price_minor, product.currency)


def public(product: Product) -> dict[str, Any]:
    """The Product as the API and ``--json`` show it."""
    return {
        "productId": product.product_id,
        "name": product.name,
        "description": product.description,
        "price": price(product).public(),
        "termMonths": product.term_months,
        "active": product.active,
    }


def listing(*, active_only: bool = False) -> list[Product]:
    query = Product.select().order_by(Product.product_id)
    if active_only:
        query = query.where(Product.active)
    return list(query)


_BY_ID = db.Prepared(lambda product_id: Product.select().where(Product.product_id == product_id), 1)


def find(product_id: str) -> Product | None:
    return _BY_ID.first(product_id)


def get(product_id: str) -> Product:
    product = find(product_id)
    if product is None:
        raise NotFound(f"no product {product_id!r}")
    return product


def import_file(path: Path) -> ImportResult:
    """Upsert every product in a .json or .csv file, or none if any row is invalid."""
    rows = _read_rows(path)
    entries, problems = [], []
    for line, row in rows:
        try:
            entries.append(entry(row))
        except ValidationFailed as exc:
            problems += [FieldError(f"line {line}: {e.field}", e.message) for e in exc.errors]
    if problems:
        raise ValidationFailed(problems, f"{path.name}: nothing imported, fix these rows first")
    return upsert(entries)


def upsert(entries: list[ProductData]) -> ImportResult:
    """Insert new products and update known ones, by productId, in one transaction.

    An insert-or-update per row, so two imports racing on a new product cannot collide.
    """
    now = clock.now()
    ids = {entry.product_id for entry in entries}
    with db.transaction():
        known = {
            p.product_id
            for p in Product.select(Product.product_id).where(Product.product_id.in_(list(ids)))
        }
        for entry in entries:
            Product.insert(
                product_id=entry.product_id,
                name=entry.name,
                description=entry.description,
                price_minor=entry.price.minor,
                currency=entry.price.currency,
                term_months=entry.term_months,
                active=entry.active,
                created_at=now,
                updated_at=now,
            ).on_conflict(
                conflict_target=[Product.product_id], preserve=_UPDATED_ON_IMPORT
            ).execute()
    return ImportResult(added=len(ids - known), updated=len(known))


def sync(items: list[tuple[str, dict[str, Any]]]) -> SyncResult:
    """Make the catalogue match a system of record's items, each a label to report it by and
    a product in the API's shape. An item that is not a valid product is skipped and reported,
    and its product, if there is one, is left as it is rather than deactivated."""
    entries: list[ProductData] = []
    skipped: list[FieldError] = []
    unmapped: set[str] = set()
    for label, row in items:
        try:
            entries.append(entry(row))
        except ValidationFailed as exc:
            skipped += [FieldError(label, f"{e.field} {e.message}") for e in exc.errors]
            unmapped.add(str(row.get("productId") or ""))
    return replace(_match(entries, keep=frozenset(unmapped)), skipped=skipped)


def _match(entries: list[ProductData], *, keep: frozenset[str]) -> SyncResult:
    """Upsert each of ``entries``, and deactivate every active product not among them or in
    ``keep`` (ids the source still has but could not map), in one transaction."""
    wanted = {e.product_id: e for e in entries}
    with db.transaction():
        known = {p.product_id: p for p in Product.select()}
        added = sorted(pid for pid in wanted if pid not in known)
        updated = sorted(
            pid for pid, e in wanted.items() if pid in known and _differs(known[pid], e)
        )
        upsert(entries)
        deactivated = sorted(
            pid for pid, p in known.items() if p.active and pid not in wanted and pid not in keep
        )
        if deactivated:
            Product.update(active=False, updated_at=clock.now()).where(
                Product.product_id.in_(deactivated)
            ).execute()
    unchanged = len(wanted) - len(added) - len(updated)
    return SyncResult(added, updated, unchanged, deactivated, skipped=[])


def _differs(product: Product, entry: ProductData) -> bool:
    return (
        product.name,
        product.description,
        price(product),
        product.term_months,
        product.active,
    ) != (entry.name, entry.description, entry.price, entry.term_months, entry.active)


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows numbered as a person finds them: the CSV line, or the JSON list position from 1."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValidationFailed([FieldError("file", exc.strerror or str(exc))], str(path)) from None
    if suffix == ".json":
        return _json_rows(text)
    if suffix == ".csv":
        return _csv_rows(text)
    raise ValidationFailed([FieldError("file", "must end in .json or .csv")], str(path))


def _json_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            [FieldError(f"line {exc.lineno}", f"not valid JSON: {exc.msg}")], "invalid JSON"
        ) from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ValidationFailed([FieldError("file", "must be a JSON list of products")], "")
    return list(enumerate(data, start=1))


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames != CSV_HEADER:
        raise ValidationFailed(
            [FieldError("line 1", f"the header must be {','.join(CSV_HEADER)}")], "bad header"
        )
    rows = []
    for row in reader:
        if None in row or any(value is None for value in row.values()):
            rows.append((reader.line_num, {"_columns": True}))
            continue
        price = {"value": row.pop("price"), "currency": row.pop("currency")}
        product: dict[str, Any] = {**row, "price": price}
        rows.append((reader.line_num, product))
    return rows


def entry(row: dict[str, Any]) -> ProductData:
    """Validate one product in the API's shape; raise ValidationFailed naming every problem."""
    problems: list[FieldError] = []
    if row.get("_columns"):
        raise ValidationFailed([FieldError("row", f"needs exactly {len(CSV_HEADER)} columns")])
    problems += [FieldError(key, "unknown field") for key in row if key not in API_FIELDS]
    product_id = _text(
        row, "productId", problems, pattern=values.ID_PATTERN, hint=values.ID_HINT, max_length=64
    )
    name = _text(
        row,
        "name",
        problems,
        pattern=values.TEXT_PATTERN,
        hint="must be printable text of at most 200 characters",
        max_length=200,
    )
    description = row.get("description") or ""
    if not isinstance(description, str) or "\x00" in description:
        problems.append(FieldError("description", "must be text without NUL characters"))
    money = _money(row.get("price"), problems)
    term = _integer(row.get("termMonths"), "termMonths", problems, 1, 120)
    active = _boolean(row.get("active", True), problems)
    if problems:
        raise ValidationFailed(problems)
    return ProductData(product_id, name, description, money, term, active)


def _text(
    row: dict, key: str, problems: list[FieldError], *, pattern: str, hint: str, max_length: int
) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(FieldError(key, "is required"))
        return ""
    if len(value) > max_length or not re.fullmatch(pattern, value):
        problems.append(FieldError(key, hint))
    return value.strip()


def _money(value: Any, problems: list[FieldError]) -> Money:
    if not isinstance(value, dict) or set(value) != {"value", "currency"}:
        problems.append(FieldError("price", 'must be {"value": "15000.00", "currency": "NGN"}'))
        return Money(0, "NGN")
    try:
        return Money.parse(str(value["value"]), str(value["currency"]))
    except ValueError as exc:
        problems.append(FieldError("price", str(exc)))
        return Money(0, "NGN")


def _integer(value: Any, key: str, problems: list[FieldError], low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(FieldError(key, f"must be a whole number from {low} to {high}"))
        return low
    return value


def _boolean(value: Any, problems: list[FieldError]) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    problems.append(FieldError("active", "must be true or false"))
    return False
