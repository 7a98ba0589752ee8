"""`config check` and `products sync` with Zoho enabled, against the stand-in over HTTP."""

import json
from pathlib import Path

from t2ctl import products
from t2ctl.db.models import Order, Product, ZohoItem
from t2ctl.values import Money
from tests.conftest import Cli, LiveServer, ZohoEnv, drain, order_body, submit, write_config
from tests.test_zoho import zoho_worker


def zoho_cli(zoho: ZohoEnv, tmp_path: Path, **overrides: object) -> Cli:
    return Cli(write_config(tmp_path / "zoho.toml", zoho.settings, zoho.config_toml(**overrides)))


def test_config_check_mints_a_token_and_finds_the_organization(
    zoho: ZohoEnv, tmp_path: Path
) -> None:
    result = zoho_cli(zoho, tmp_path)("config", "check")
    assert result.exit_code == 0, result.stderr
    assert f"Zoho token minted by {zoho.url}" in result.stderr
    assert "Zoho organization 10234695 (IconTech (sandbox)) is reachable" in result.stderr
    assert len(zoho.standin.minted) == 1


def test_config_check_reports_an_invalid_refresh_token(zoho: ZohoEnv, tmp_path: Path) -> None:
    result = zoho_cli(zoho, tmp_path, refresh_token="1000.revoked-token")("config", "check")
    assert result.exit_code == 1
    assert "zoho.refresh_token was refused (invalid_code)" in result.stderr
    assert "1000.revoked-token" not in result.stderr + result.stdout
    assert not zoho.standin.minted


def test_config_check_reports_a_wrong_client_and_a_wrong_organization(
    zoho: ZohoEnv, tmp_path: Path
) -> None:
    wrong_client = zoho_cli(zoho, tmp_path, client_secret="not-it")("config", "check")
    assert wrong_client.exit_code == 1
    assert "zoho.client_id or zoho.client_secret was refused (invalid_client)" in (
        wrong_client.stderr
    )
    wrong_org = zoho_cli(zoho, tmp_path, organization_id="999")("config", "check")
    assert wrong_org.exit_code == 1
    assert (
        "zoho.organization_id 999 is not an organization this token can see; "
        "it sees: 10234695 (IconTech (sandbox))"
    ) in wrong_org.stderr


def test_config_check_reports_an_unreachable_data_centre(zoho: ZohoEnv, tmp_path: Path) -> None:
    result = zoho_cli(zoho, tmp_path, accounts_url="http://127.0.0.1:9")("config", "check")
    assert result.exit_code == 1
    assert "Zoho accounts server http://127.0.0.1:9 could not be reached" in result.stderr


def test_products_sync_reads_three_pages_and_reports_what_changed(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path
) -> None:
    standin = zoho.standin
    standin.items.clear()
    standin.add_item("M365-BASIC-12M", "Microsoft 365 Basic", 16000.0, term_months=12)
    standin.add_item("VPN-6M", "Secure VPN", 4999.5, description="Six months", term_months=6)
    standin.add_item("OLD-ITEM", "Old item", 10.0, active=False)
    standin.add_item("", "An item without a sku", 10.0)
    # Zoho still sells Norton, but its term cannot be read: skipped, and not deactivated.
    standin.add_item("NORTON-1Y", "Norton 360", 9999.99, term_months="twelve")
    flattened = standin.add_item("VPN-3M", "Secure VPN", 2999.0)
    standin.items[flattened]["cf_term_months"] = 3  # the custom field as list answers flatten it
    for n in range(444):
        standin.add_item(f"BULK-{n:03d}", f"Bulk item {n}", 100.0)  # no Term Months: 12
    products.upsert(
        [products.ProductData("LOCAL-ONLY", "Local", "", Money.parse("1.00", "NGN"), 1, True)]
    )
    cli = zoho_cli(zoho, tmp_path)

    result = cli("products", "sync", "--json")

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(zoho.standin.api_calls("GET", "/items")) == 3, "450 items, 200 a page"
    assert report["updated"] == ["M365-BASIC-12M"]
    assert len(report["added"]) == 447 and "VPN-6M" in report["added"]
    assert report["deactivated"] == ["LOCAL-ONLY"]
    assert report["unchanged"] == 0
    assert [s["reason"] for s in report["skipped"]] == [
        "productId is required",
        "termMonths must be a whole number from 1 to 120",
    ]
    assert products.get("NORTON-1Y").active
    assert products.get("VPN-3M").term_months == 3
    vpn = products.get("VPN-6M")
    assert (products.price(vpn), vpn.term_months, vpn.description) == (
        Money.parse("4999.50", "NGN"),
        6,
        "Six months",
    )
    assert products.get("BULK-000").term_months == 12
    assert not products.get("OLD-ITEM").active
    # Every item with a sku has its id cached (449 of 450), a skipped one too: Zoho still
    # sells NORTON-1Y, its product stays active, and its orders need no item look-up.
    assert ZohoItem.select().count() == 449
    assert ZohoItem.select().where(ZohoItem.sku == "NORTON-1Y").exists()

    again = cli("products", "sync")
    assert again.exit_code == 0
    assert (
        "synced from Zoho: 0 added, 0 updated, 448 unchanged, 0 deactivated, 2 item(s) skipped"
        in again.stderr
    )

    # The item ids are cached: an order needs no item look-up.
    before = len(standin.api_calls())
    submit(
        server,
        order_body("T2-1", productId="VPN-6M", amount={"value": "4999.50", "currency": "NGN"}),
    )
    drain(zoho_worker(server, zoho))
    assert Order.get().status == "FULFILLED"
    assert not [c for c in standin.api_calls()[before:] if c.path == "/items"]
    # 448 synced, OLD-ITEM inactive; NORTON-1Y kept.
    assert Product.select().where(Product.active).count() == 448


def test_products_sync_refuses_in_sandbox_mode(cli: Cli) -> None:
    result = cli("products", "sync")
    assert result.exit_code == 1
    assert "zoho.enabled is false (sandbox mode)" in result.stderr


def test_config_check_reports_a_token_without_the_scope(zoho: ZohoEnv, tmp_path: Path) -> None:
    refusal = {"code": 57, "message": "You are not authorized to perform this operation"}
    zoho.standin.fail("GET", "/organizations", status=401, times=2, body=refusal)
    result = zoho_cli(zoho, tmp_path)("config", "check")
    assert result.exit_code == 1
    assert "refused the access token (code 57" in result.stderr
    assert "scope ZohoInventory.FullAccess.all" in result.stderr
