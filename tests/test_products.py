"""The catalogue: partners see active products with an ETag; operators import files."""

import json
from pathlib import Path

import pytest

from t2ctl import products
from t2ctl.db.models import Product
from t2ctl.errors import ValidationFailed
from tests.conftest import LiveServer

HEADER = "productId,name,description,price,currency,termMonths,active\n"


def test_partners_see_only_active_products_and_304_when_unchanged(
    server: LiveServer, catalogue
) -> None:
    http = server.session(server.add_partner().key.api_key)
    first = http.get(server.endpoint("/products"))
    assert first.status_code == 200
    listed = first.json()["products"]
    assert [p["productId"] for p in listed] == ["M365-BASIC-12M", "NORTON-1Y"]
    assert listed[1] == {
        "productId": "NORTON-1Y",
        "name": "Norton 360",
        "description": "One device, one year",
        "price": {"value": "9999.99", "currency": "NGN"},
        "termMonths": 12,
        "active": True,
    }
    etag = first.headers["ETag"]
    unchanged = http.get(server.endpoint("/products"), headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""

    products.upsert([products.ProductData(**{**catalogue[1].__dict__, "active": False})])
    changed = http.get(server.endpoint("/products"), headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert [p["productId"] for p in changed.json()["products"]] == ["M365-BASIC-12M"]


def test_csv_import_upserts_by_product_id(migrated, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text(
        HEADER + "M365-BASIC-12M,M365 Basic,,15000.00,NGN,12,true\n"
        'NORTON-1Y,Norton,"One device, one year",9999.99,NGN,12,false\n'
    )
    assert products.import_file(path) == products.ImportResult(added=2, updated=0)
    path.write_text(HEADER + "M365-BASIC-12M,M365 Basic,,16000.00,NGN,12,true\n")
    assert products.import_file(path) == products.ImportResult(added=0, updated=1)
    m365 = products.get("M365-BASIC-12M")
    assert str(products.price(m365)) == "16000.00 NGN"
    assert products.get("NORTON-1Y").description == "One device, one year"


def test_json_import_takes_the_api_shape(migrated, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text(
        json.dumps(
            [
                {
                    "productId": "KASPERSKY-6M",
                    "name": "Kaspersky",
                    "description": "Six months",
                    "price": {"value": "4500.50", "currency": "NGN"},
                    "termMonths": 6,
                    "active": True,
                }
            ]
        )
    )
    assert products.import_file(path).added == 1
    assert products.public(products.get("KASPERSKY-6M"))["price"]["value"] == "4500.50"


def test_an_invalid_row_rejects_the_whole_file_naming_the_line(migrated, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text(HEADER + "GOOD-1,Good,,100.00,NGN,12,true\nBAD 2,Bad,,100,NGN,0,maybe\n")
    with pytest.raises(ValidationFailed) as caught:
        products.import_file(path)
    assert [e.field for e in caught.value.errors] == [
        "line 3: productId",
        "line 3: price",
        "line 3: termMonths",
        "line 3: active",
    ]
    assert Product.select().count() == 0


def test_a_trailing_newline_does_not_slip_past_a_pattern(migrated, tmp_path: Path) -> None:
    """Python's ``$`` also matches before a final newline; the checks match the whole text."""
    path = tmp_path / "catalogue.json"
    row = {
        "productId": "NEWLINE-1",
        "name": "Newline",
        "description": "",
        "termMonths": 12,
    }
    for price in ({"value": "100.00\n", "currency": "NGN"}, {"value": "1.00", "currency": "NGN\n"}):
        path.write_text(json.dumps([{**row, "price": price}]))
        with pytest.raises(ValidationFailed) as caught:
            products.import_file(path)
        assert [e.field for e in caught.value.errors] == ["line 1: price"]
    assert Product.select().count() == 0
