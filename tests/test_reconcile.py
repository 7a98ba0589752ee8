"""Reconciliation: orders run for real (over HTTP, by the daemon's handlers) against the
Zoho stand-in or the sandbox, then each kind of drift made there behind the gateway's back,
as a person in Zoho would; ``t2ctl reconcile`` must name each with its orderId, exit 1, and
stay within the fleet's Zoho call budget while it pages. Each test runs on SQLite and on
PostgreSQL."""

import json
import re
import threading
from datetime import timedelta
from pathlib import Path

import requests

from t2ctl import clock, wiring
from t2ctl.config import MetricsSettings
from t2ctl.db.models import Order, Reconciliation, SandboxSalesOrder
from t2ctl.monitoring import metrics
from tests.conftest import (
    NORTON,
    Cli,
    LiveServer,
    ZohoEnv,
    daemon_worker,
    drain,
    order_body,
    submit,
    write_config,
)
from tests.test_zoho import CONFIRM_PATH, zoho_worker

REASON = {"reason": "Payment reversed by the customer's bank"}
KINDS = {
    "T2-MISSING": "missing_in_zoho",
    "T2-DRAFT": "not_confirmed",
    "T2-VOIDED": "voided_in_zoho",
    "T2-CANCELLED": "not_voided",
    "T2-AMOUNT": "amount_mismatch",
    "T2-GHOST": "unknown_reference",
}


def bodies(*order_ids: str) -> list[dict]:
    return [
        order_body(i, customer={"id": i, "name": "Ada Obi", "email": f"{i}@example.ng"})
        for i in order_ids
    ]


def cancel(server: LiveServer, http: requests.Session, order_id: str) -> None:
    answer = http.post(server.endpoint(f"/orders/{order_id}/cancel"), json=REASON)
    assert answer.status_code in (200, 202), answer.text


def reconciled(cli: Cli, *args: str) -> tuple[int, dict, str]:
    answer = cli("reconcile", "--json", *args)
    return answer.exit_code, json.loads(answer.stdout), answer.stderr


def drift_of(found: dict) -> dict[str, str]:
    return {d["orderId"]: d["kind"] for d in found["drift"]}


def zoho_cli(server: LiveServer, zoho: ZohoEnv, tmp_path: Path, **keys: object) -> Cli:
    return Cli(write_config(tmp_path / "zoho.toml", server.settings, zoho.config_toml(**keys)))


def test_each_drift_made_in_zoho_behind_the_gateways_back_is_named(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path
) -> None:
    ids = [i for i in KINDS if i != "T2-GHOST"]
    http = submit(server, *bodies("T2-FINE", *ids), order_body("T2-NORTON", **NORTON))
    worker = zoho_worker(server, zoho)
    drain(worker)
    cancel(server, http, "T2-CANCELLED")
    drain(worker)
    assert {o.status for o in Order.select()} == {"FULFILLED", "CANCELLED"}
    cli = zoho_cli(server, zoho, tmp_path)

    code, clean, notes = reconciled(cli)

    assert (code, clean) == (0, {"checked": 7, "clean": True, "drift": []})
    assert "7 order(s) checked, 1 call(s)" in notes

    standin = zoho.standin
    standin.delete_sales_order("T2-MISSING")
    standin.edit_sales_order("T2-DRAFT", status="draft")
    standin.edit_sales_order("T2-VOIDED", status="void")
    standin.edit_sales_order("T2-CANCELLED", status="confirmed")
    standin.edit_sales_order("T2-AMOUNT", total=14000.0)
    standin.add_sales_order("T2-GHOST", 15000.0, date=clock.now().date().isoformat())
    standin.add_sales_order("", 500.0, date=clock.now().date().isoformat())  # by hand: not ours

    code, found, _ = reconciled(cli)

    assert code == 1
    assert (found["checked"], found["clean"]) == (7, False)
    assert drift_of(found) == KINDS
    details = {d["kind"]: d["detail"] for d in found["drift"]}
    assert "totals 14000.00 NGN; the order's amount is 15000.00 NGN" in details["amount_mismatch"]
    assert "still confirmed" in details["not_voided"]
    table = cli("reconcile")
    assert table.exit_code == 1
    assert all(order_id in table.stdout for order_id in KINDS)
    (run,) = Reconciliation.select().order_by(Reconciliation.id.desc()).limit(1)
    assert run.counts == dict.fromkeys(KINDS.values(), 1), "each of the contract's kinds once"
    assert Reconciliation.select().count() == 3


def test_the_window_leaves_older_orders_out(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path
) -> None:
    submit(server, *bodies("T2-OLD", "T2-NEW"))
    drain(zoho_worker(server, zoho))
    zoho.standin.delete_sales_order("T2-OLD")
    Order.update(created_at=clock.now() - timedelta(days=45)).where(
        Order.order_id == "T2-OLD"
    ).execute()
    cli = zoho_cli(server, zoho, tmp_path)

    assert reconciled(cli)[:2] == (0, {"checked": 1, "clean": True, "drift": []})
    code, found, _ = reconciled(cli, "--since", "60d")
    assert (code, drift_of(found)) == (1, {"T2-OLD": "missing_in_zoho"})
    later = (clock.now() + timedelta(days=1)).date().isoformat()
    assert cli("reconcile", "--since", later, "--until", "1d").exit_code == 2


def test_paging_through_zoho_stays_within_the_call_budget(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path
) -> None:
    """450 sales orders of today and 250 of two months ago, 200 a page, newest first: three
    pages reach past the window, the fourth is never asked for. The budget is two calls a
    second, and the stand-in answers 429 to a third within any second."""
    today = clock.now().date()
    for n in range(450):
        zoho.standin.add_sales_order(f"T2-GHOST-{n:03d}", 100.0, date=today.isoformat())
    for n in range(250):
        zoho.standin.add_sales_order(
            f"T2-AGO-{n:03d}", 100.0, date=(today - timedelta(days=60)).isoformat()
        )
    zoho.standin.limit = 2
    cli = zoho_cli(server, zoho, tmp_path, requests_per_minute=2, rate_period="1s")

    code, found, notes = reconciled(cli)

    assert code == 1
    assert len(found["drift"]) == 450
    assert {d["kind"] for d in found["drift"]} == {"unknown_reference"}
    listed = zoho.standin.api_calls("GET", "/salesorders")
    assert [c.status for c in listed] == [200, 200, 200], "three pages, none turned away"
    assert 429 not in zoho.standin.statuses()
    assert "3 call(s)" in notes


def test_in_sandbox_mode_it_compares_with_the_sandboxs_own_sales_orders(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    ids = [i for i in KINDS if i not in ("T2-GHOST", "T2-DRAFT")]
    http = submit(server, *bodies("T2-FINE", *ids))
    drain(daemon_worker(server))
    cancel(server, http, "T2-CANCELLED")
    drain(daemon_worker(server))

    assert reconciled(cli)[:2] == (0, {"checked": 5, "clean": True, "drift": []})

    def row(reference: str):
        return SandboxSalesOrder.reference_number == reference

    SandboxSalesOrder.delete().where(row("T2-MISSING")).execute()
    SandboxSalesOrder.update(voided_at=clock.now()).where(row("T2-VOIDED")).execute()
    SandboxSalesOrder.update(voided_at=None).where(row("T2-CANCELLED")).execute()
    SandboxSalesOrder.update(total_minor=1).where(row("T2-AMOUNT")).execute()
    SandboxSalesOrder.create(partner=None, reference_number="T2-GHOST", created_at=clock.now())

    code, found, _ = reconciled(cli)

    assert code == 1
    assert drift_of(found) == {k: v for k, v in KINDS.items() if k != "T2-DRAFT"}


def test_the_daily_task_is_off_until_set_and_its_drift_becomes_a_gauge(
    server: LiveServer, catalogue, tmp_path: Path
) -> None:
    off = Cli(write_config(tmp_path / "off.toml", server.settings))
    on = Cli(
        write_config(
            tmp_path / "on.toml", server.settings, '\n[schedule]\nreconcile_at = "04:30"\n'
        )
    )
    submit(server, *bodies("T2-1"))
    drain(daemon_worker(server))
    SandboxSalesOrder.delete().execute()

    assert "reconcile" not in off("schedule", "list").stdout
    assert off("schedule", "run", "reconcile").exit_code == 3
    planned = json.loads(on("schedule", "list", "--json").stdout)
    assert {"task": "reconcile", "cadence": "every day at 04:30"}.items() <= next(
        p for p in planned if p["task"] == "reconcile"
    ).items()
    ran = on("schedule", "run", "reconcile")
    assert ran.exit_code == 0, ran.output
    assert "1 missing_in_zoho" in ran.stderr

    listener = metrics.serve(MetricsSettings(port=0), wiring.gauges)
    try:
        scraped = requests.get(f"http://127.0.0.1:{listener.port}/metrics", timeout=5).text
    finally:
        listener.stop()
    assert 't2ctl_reconcile_drift{kind="missing_in_zoho"} 1.0' in scraped
    assert 't2ctl_reconcile_drift{kind="unknown_reference"} 0.0' in scraped
    (run,) = Reconciliation.select()
    assert run.source == "schedule"
    (stamp,) = re.findall(r"^t2ctl_reconcile_last_run_timestamp_seconds (\S+)$", scraped, re.M)
    assert float(stamp) == run.finished_at.timestamp()


def test_what_normal_operation_leaves_is_not_drift(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path
) -> None:
    """A cancellation under way whose void has reached Zoho; two partners with one orderId,
    one of them cancelled before it ran; an order cancelled while reconcile reads Zoho."""
    http = submit(server, *bodies("T2-VOIDING", "T2-SAME", "T2-RACE"))
    other = server.add_partner("mtn-ng")
    theirs = server.session(other.key.api_key)
    assert theirs.post(server.endpoint("/fulfilment"), json=order_body("T2-SAME")).status_code
    cancel(server, theirs, "T2-SAME")  # PENDING: cancelled at once, nothing made
    drain(zoho_worker(server, zoho))
    cancel(server, http, "T2-VOIDING")  # noted; its cancel_order job has voided, not recorded
    zoho.standin.edit_sales_order("T2-VOIDING", status="void")
    cli = zoho_cli(server, zoho, tmp_path)

    assert reconciled(cli)[:2] == (0, {"checked": 4, "clean": True, "drift": []})

    # T2-RACE is cancelled and voided while the listing is being read.
    held = zoho.standin.hold("GET", "/salesorders")
    racing = threading.Thread(target=lambda: reconciled(cli))
    racing.start()
    assert held.reached.wait(10)
    cancel(server, http, "T2-RACE")
    drain(zoho_worker(server, zoho))
    held.release()
    racing.join(30)
    (run,) = Reconciliation.select().order_by(Reconciliation.id.desc()).limit(1)
    assert run.counts["voided_in_zoho"] == 0 and run.drift == []


def test_a_second_sales_order_or_one_a_failed_order_left_is_said_apart(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path
) -> None:
    """Neither has a kind in the contract: each is a warning beside a clean result."""
    http = submit(server, *bodies("T2-ONE"))
    drain(zoho_worker(server, zoho))
    zoho.standin.fail("POST", CONFIRM_PATH, status=400, body={"code": 36012, "message": "No"})
    (failing,) = bodies("T2-FAILS")
    assert http.post(server.endpoint("/fulfilment"), json=failing).status_code == 202
    drain(zoho_worker(server, zoho))
    assert Order.get(Order.order_id == "T2-FAILS").status == "FAILED"
    zoho.standin.add_sales_order("T2-ONE", 15000.0, date=clock.now().date().isoformat())
    cli = zoho_cli(server, zoho, tmp_path)

    code, found, notes = reconciled(cli)

    assert (code, found) == (0, {"checked": 1, "clean": True, "drift": []})
    assert re.search(r"also: order T2-FAILS FAILED, but sales order SO-\d+ is draft", notes)
    assert re.search(r"also: sales order SO-\d+ \(confirmed\) names order T2-ONE, which", notes)


def test_a_narrower_run_by_hand_leaves_the_gauge_to_the_routine_one(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    submit(server, *bodies("T2-OLD", "T2-NEW"))
    drain(daemon_worker(server))
    SandboxSalesOrder.delete().where(SandboxSalesOrder.reference_number == "T2-OLD").execute()
    assert cli("reconcile").exit_code == 1
    Order.update(created_at=clock.now() - timedelta(days=3)).where(
        Order.order_id == "T2-OLD"
    ).execute()

    assert cli("reconcile", "--since", "1d").exit_code == 0

    assert wiring.gauges().reconciled.drift["missing_in_zoho"] == 1
    assert [r.routine for r in Reconciliation.select().order_by(Reconciliation.id)] == [
        True,
        False,
    ]


def test_a_zoho_that_fails_for_a_while_is_asked_again_and_one_that_refuses_stops_the_run(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path
) -> None:
    submit(server, *bodies("T2-1"))
    drain(zoho_worker(server, zoho))
    cli = zoho_cli(server, zoho, tmp_path)
    zoho.standin.fail("GET", "/salesorders", status=503)

    assert reconciled(cli)[:2] == (0, {"checked": 1, "clean": True, "drift": []})

    zoho.standin.fail(
        "GET", "/salesorders", status=400, body={"code": 2, "message": "Invalid sort_column"}
    )
    refused = cli("reconcile", "--json")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "Invalid sort_column" in refused.stderr
    assert Reconciliation.select().count() == 1, "a run that did not finish is not recorded"


def test_sandbox_sales_orders_from_before_totals_were_kept_are_not_judged_by_amount(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    submit(server, *bodies("T2-1"))
    drain(daemon_worker(server))
    SandboxSalesOrder.update(total_minor=None, currency=None).execute()

    assert reconciled(cli)[:2] == (0, {"checked": 1, "clean": True, "drift": []})
