"""The operator's command line, against the real database: output, JSON, exit codes."""

import json
import sqlite3
from pathlib import Path

from t2ctl.db.models import ApiKey, Partner, Product
from tests.conftest import Cli, LiveServer, order_body, write_config


def test_partners_add_prints_credentials_once_and_stores_only_hashes(cli: Cli) -> None:
    result = cli(
        "partners", "add", "t2mobile", "--webhook-url", "https://t2.example/hooks", "--json"
    )
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"partner", "apiKey", "webhookSecret"}
    assert created["apiKey"].startswith("t2k_")
    assert created["webhookSecret"].startswith("whsec_")
    key = ApiKey.get()
    assert created["apiKey"] not in (key.key_hash, key.key_id)
    assert created["webhookSecret"] not in Partner.get().webhook_secret

    listing = cli("partners", "list", "--json")
    assert json.loads(listing.stdout) == [
        {
            "name": "t2mobile",
            "webhookUrl": "https://t2.example/hooks",
            "allowedIps": [],
            "rateLimitPerMinute": 100,
            "createdAt": json.loads(listing.stdout)[0]["createdAt"],
        }
    ]
    assert created["apiKey"] not in cli("keys", "list").stdout


def test_partner_names_are_unique_and_bad_input_changes_nothing(cli: Cli) -> None:
    assert cli("partners", "add", "t2mobile", "--webhook-url", "http://h/x").exit_code == 0
    again = cli("partners", "add", "t2mobile", "--webhook-url", "http://h/x")
    assert again.exit_code == 1
    assert "t2ctl: error: a partner named 't2mobile' already exists" in again.stderr
    newline = cli("partners", "add", "t2mobile\n", "--webhook-url", "http://h/x")
    assert newline.exit_code == 1 and "name: use 1-64 lower-case letters" in newline.stderr
    bad = cli(
        "partners",
        "set",
        "t2mobile",
        "--allow-ip",
        "10.0.0.0/8",
        "--allow-ip",
        "nope",
        "--rate-limit",
        "fast",
    )
    assert bad.exit_code == 1
    assert "allow_ip: 'nope' is not an IP address or CIDR" in bad.stderr
    assert "rate_limit: 'fast' is not like 100/minute" in bad.stderr
    assert Partner.get().allowed_ips == []
    good = cli(
        "partners",
        "set",
        "t2mobile",
        "--allow-ip",
        "10.0.0.0/8",
        "--rate-limit",
        "250/minute",
        "--json",
    )
    assert json.loads(good.stdout)["allowedIps"] == ["10.0.0.0/8"]
    assert json.loads(good.stdout)["rateLimitPerMinute"] == 250
    reset = cli(
        "partners", "set", "t2mobile", "--allow-any-ip", "--rate-limit", "default", "--json"
    )
    assert json.loads(reset.stdout)["allowedIps"] == []
    assert json.loads(reset.stdout)["rateLimitPerMinute"] == 100
    both = cli("partners", "set", "t2mobile", "--allow-any-ip", "--allow-ip", "10.0.0.0/8")
    assert both.exit_code == 2
    missing = cli("partners", "set", "nobody", "--rate-limit", "5/minute")
    assert missing.exit_code == 3


def test_keys_create_list_and_revoke(cli: Cli, server: LiveServer, catalogue) -> None:
    cli("partners", "add", "t2mobile", "--webhook-url", "http://h/x")
    created = json.loads(cli("keys", "create", "--partner", "t2mobile", "--json").stdout)
    assert set(created) == {"keyId", "apiKey", "expiresOld"}
    http = server.session(created["apiKey"])
    assert http.get(server.endpoint("/products")).status_code == 200

    keys = json.loads(cli("keys", "list", "--json").stdout)
    assert len(keys) == 2 and {k["state"] for k in keys} == {"active"}
    revoked = cli("keys", "revoke", created["keyId"])
    assert revoked.exit_code == 0 and "revoked key" in revoked.stderr
    assert http.get(server.endpoint("/products")).status_code == 401
    states = {k["keyId"]: k["state"] for k in json.loads(cli("keys", "list", "--json").stdout)}
    assert states[created["keyId"]] == "revoked"
    assert cli("keys", "revoke", "000000000000").exit_code == 3


def test_products_import_and_list(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text(
        "productId,name,description,price,currency,termMonths,active\n"
        "M365-BASIC-12M,Microsoft 365 Basic,,15000.00,NGN,12,true\n"
    )
    result = cli("products", "import", str(path))
    assert result.exit_code == 0 and "1 added, 0 updated" in result.stderr
    listed = json.loads(cli("products", "list", "--json").stdout)
    assert listed[0]["price"] == {"value": "15000.00", "currency": "NGN"}
    assert "M365-BASIC-12M" in cli("products", "list").stdout

    path.write_text("productId,name\nX,Y\n")
    bad = cli("products", "import", str(path))
    assert bad.exit_code == 1
    assert "line 1: the header must be productId,name,description" in bad.stderr
    assert Product.select().count() == 1


def test_orders_list_and_show_mask_contact_details(cli: Cli, server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    for n in range(3):
        http.post(server.endpoint("/fulfilment"), json=order_body(f"T2-{n}"))
    listed = json.loads(cli("orders", "list", "--json").stdout)
    assert [o["orderId"] for o in listed] == ["T2-2", "T2-1", "T2-0"]
    assert (
        json.loads(cli("orders", "list", "--limit", "1", "--json").stdout)[0]["orderId"] == "T2-2"
    )
    assert cli("orders", "list", "--status", "fulfilled", "--json").stdout.strip() == "[]"
    assert len(json.loads(cli("orders", "list", "--since", "1h", "--json").stdout)) == 3

    table = cli("orders", "list").stdout
    shown = cli("orders", "show", "T2-1").stdout
    for text in (table, shown):
        assert "ada@example.ng" not in text and "+2348031234567" not in text
    assert "a***@example.ng" in shown and "+234*******567" in shown
    as_json = json.loads(cli("orders", "show", "T2-1", "--json").stdout)
    assert as_json["orderId"] == "T2-1" and as_json["partner"] == "t2mobile"
    assert as_json == {**http.get(server.endpoint("/orders/T2-1")).json(), "partner": "t2mobile"}


def test_exit_codes_not_found_and_usage(cli: Cli) -> None:
    missing = cli("orders", "show", "NOPE")
    assert missing.exit_code == 3 and "t2ctl: error: no order 'NOPE'" in missing.stderr
    assert missing.stdout == ""
    assert cli("orders", "list", "--status", "LOST").exit_code == 2
    assert cli("orders", "list", "--since", "last tuesday").exit_code == 2
    assert cli("orders", "frobnicate").exit_code == 2


def test_db_status_migrate_and_backup(cli: Cli, migrated, tmp_path: Path) -> None:
    status = json.loads(cli("db", "status", "--json").stdout)
    assert status[0]["name"] == "0001_initial" and status[0]["appliedAt"]
    assert "up to date" in cli("db", "migrate").stderr
    cli("partners", "add", "t2mobile", "--webhook-url", "http://h/x")
    backup = tmp_path / "backup.db"
    result = cli("db", "backup", str(backup))
    if migrated.database.is_sqlite:
        assert result.exit_code == 0
        with sqlite3.connect(backup) as copy:
            assert copy.execute("SELECT name FROM partner").fetchall() == [("t2mobile",)]
        assert backup.stat().st_mode & 0o777 == 0o600
        assert cli("db", "backup", str(backup)).exit_code == 1  # never overwrites
        nowhere = cli("db", "backup", str(tmp_path / "missing" / "b.db"))
        assert nowhere.exit_code == 1 and "backup to" in nowhere.stderr
        assert "Traceback" not in nowhere.stderr
    else:
        assert result.exit_code == 1 and "pg_dump" in result.stderr


def test_commands_refuse_an_unmigrated_database_and_name_the_fix(tmp_path: Path, settings) -> None:
    run = Cli(write_config(tmp_path / "config.toml", settings))
    if settings.database.is_sqlite:  # an empty file: one that does not exist is not found
        sqlite3.connect(settings.database.sqlite_path).close()
    result = run("partners", "list")
    assert result.exit_code == 1
    assert "run `t2ctl db migrate`" in result.stderr
    assert run("db", "migrate").exit_code == 0
    assert run("partners", "list").exit_code == 0


def test_config_check_and_show(cli: Cli, migrated) -> None:
    check = cli("config", "check")
    assert check.exit_code == 0 and "database reachable" in check.stderr
    assert "mode: sandbox" in check.stderr
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["mode"] == "sandbox"
    assert shown["security"]["master_key"] == "********"
    key = migrated.security.master_key.get_secret_value()
    assert key not in cli("config", "show").stdout


def test_config_check_reports_an_unreachable_database(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[database]\nurl = "sqlite:////nonexistent/dir/t2.db"\n')
    result = Cli(path)("config", "check")
    assert result.exit_code == 1
    assert "t2ctl: error: no database at /nonexistent/dir/t2.db" in result.stderr


def test_config_show_hides_the_rate_limit_storage_password(migrated, tmp_path: Path) -> None:
    storage = '\n[server]\nrate_limit_storage = "redis://:hunter2@cache.internal:6379/0"\n'
    show = Cli(write_config(tmp_path / "config.toml", migrated, storage))
    table, as_json = show("config", "show"), show("config", "show", "--json")
    assert "hunter2" not in table.stdout + table.stderr + as_json.stdout
    assert json.loads(as_json.stdout)["server"]["rate_limit_storage"] == (
        "redis://:********@cache.internal:6379/0"
    )
    assert "redis://:********@cache.internal:6379/0" in table.stdout
