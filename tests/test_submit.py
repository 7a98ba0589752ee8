"""``t2ctl orders submit --test``: test orders through a real running daemon's HTTP API, with a
key minted for the run that expires within minutes, and an audit record of it."""

import json
import re
from datetime import timedelta
from pathlib import Path

from t2ctl import clock
from t2ctl.config import Settings
from t2ctl.db.models import AuditEvent, Order
from tests.conftest import Cli, write_config
from tests.processes import serve


def test_test_orders_go_through_a_running_daemon_with_a_short_lived_audited_key(
    migrated: Settings, catalogue: list, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "config.toml", migrated, '\n[sandbox]\ndecline_products = ["NORTON-1Y"]\n'
    )
    cli = Cli(config)
    added = cli("partners", "add", "acme", "--webhook-url", "http://127.0.0.1:9/h", "--json")
    partner_key = json.loads(added.stdout)["apiKey"]
    with serve(tmp_path, config, "--port", "0") as daemon:
        url = daemon.wait_for(re.compile(r"listening on (http://[\d.:]+)")).group(1)
        ran = cli("orders", "submit", "--test", "--count", "3", "--url", url, "--json")
        assert ran.exit_code == 0, ran.output
        shown = json.loads(ran.stdout)
        assert [o["status"] for o in shown] == ["FULFILLED"] * 3
        assert all(o["fulfilment"]["activationReference"].startswith("SBX-") for o in shown)
        assert all(o["productId"] == "M365-BASIC-12M" for o in shown), "first active product"

        (event,) = AuditEvent.select().where(AuditEvent.action == "orders.submit-test")
        assert event.details["minted"] is True
        assert event.details["orderIds"] == [o["orderId"] for o in shown]
        keys = {k["keyId"]: k for k in json.loads(cli("keys", "list", "--json").stdout)}
        minted = keys[event.details["keyId"]]
        expires = clock.parse_moment(minted["expiresAt"])
        assert clock.now() < expires < clock.now() + timedelta(minutes=8)
        assert partner_key not in ran.output and minted["keyId"] not in ran.stdout

        declined = cli(
            "orders", "submit", "--test", "--product", "NORTON-1Y", "--url", url,
            "--api-key", partner_key,
        )  # fmt: skip
        assert declined.exit_code == 1, "a test order that is not FULFILLED fails the run"
        assert "FAILED" in declined.stdout and "cannot be provisioned" in declined.stdout
        assert len(json.loads(cli("keys", "list", "--json").stdout)) == 2, "no key minted"
        last = AuditEvent.select().order_by(AuditEvent.id.desc()).get()
        assert (last.action, last.details["minted"]) == ("orders.submit-test", False)
        assert daemon.stop() == 0
    assert Order.select().count() == 4


def test_submit_says_what_is_missing(migrated: Settings, catalogue: list, tmp_path: Path) -> None:
    cli = Cli(write_config(tmp_path / "config.toml", migrated))
    assert cli("orders", "submit").exit_code == 2, "--test is required"
    assert "partners: none yet" in cli("orders", "submit", "--test").stderr
    for name in ("acme", "globex"):
        cli("partners", "add", name, "--webhook-url", "http://127.0.0.1:9/h")
    several = cli("orders", "submit", "--test")
    assert several.exit_code == 1 and "--partner" in several.stderr
    nowhere = cli("orders", "submit", "--test", "--partner", "acme", "--url", "http://127.0.0.1:9")
    assert nowhere.exit_code == 1
    said = "t2ctl: error: no t2ctl serve answers at http://127.0.0.1:9; is it running?"
    assert said in nowhere.stderr and "HTTPConnectionPool" not in nowhere.stderr
    assert Order.select().count() == 0
