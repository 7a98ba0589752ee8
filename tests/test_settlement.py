"""The settlement report: what each partner sold in a period, from orders run for real
(submitted over HTTP, fulfilled by a worker, cancelled over HTTP), then dated where the
scenario needs them. Every figure is checked, in JSON, CSV and the table. Each test runs on
SQLite and on PostgreSQL."""

import csv
import io
import json
from datetime import UTC, datetime

import requests

from t2ctl import partners, products
from t2ctl.db.models import Order
from t2ctl.values import Money
from tests.conftest import NORTON, Cli, LiveServer, daemon_worker, drain, order_body, submit

REASON = {"reason": "Payment reversed by the customer's bank"}


def partner_session(server: LiveServer, name: str) -> requests.Session:
    new = server.add_partner(name)
    partners.update(name, sandbox=True, rate_limit="100/minute")
    return server.session(new.key.api_key)


def run(server: LiveServer, http: requests.Session, *bodies: dict) -> None:
    for body in bodies:
        assert http.post(server.endpoint("/fulfilment"), json=body).status_code == 202
    drain(daemon_worker(server))


def cancel(server: LiveServer, http: requests.Session, *order_ids: str) -> None:
    for order_id in order_ids:
        answer = http.post(server.endpoint(f"/orders/{order_id}/cancel"), json=REASON)
        assert answer.status_code in (200, 202), answer.text
    drain(daemon_worker(server))


def dated(order_id: str, *, fulfilled: datetime | None = None, cancelled=None) -> None:
    """Move an order's fulfilment (and cancellation) to when the scenario says it was."""
    changes = {"fulfilled_at": fulfilled} if fulfilled else {}
    if cancelled:
        changes["cancelled_at"] = cancelled
    Order.update(**changes).where(Order.order_id == order_id).execute()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def november(server: LiveServer) -> None:
    """Two partners, two products, in November 2026 (Lagos time, UTC+1):

    t2mobile: T-1, T-2 and the renewal T-3 (of T-1) of M365 in November; T-6 of M365 at
    23:30 UTC on 31 October, which is November in Lagos; T-7 of M365 at 23:30 UTC on 30
    November, December in Lagos; T-4 of Norton fulfilled and cancelled in November; T-5 of
    Norton fulfilled in October and cancelled in November; T-8 cancelled before it ran.
    mtn-ng: M-1 of Norton; M-2 of M365, cancelled; M-3 of two Nortons.
    """
    t2 = submit(server)
    run(server, t2, order_body("T-1"), order_body("T-2", customer=_other("CUST-2")))
    run(server, t2, order_body("T-3", renewalOf="T-1"))
    run(server, t2, *(order_body(i, customer=_other(i)) for i in ("T-6", "T-7")))
    run(server, t2, *(order_body(i, customer=_other(i), **NORTON) for i in ("T-4", "T-5")))
    cancel(server, t2, "T-4", "T-5")
    assert t2.post(server.endpoint("/fulfilment"), json=order_body("T-8")).status_code == 202
    cancel(server, t2, "T-8")
    mtn = partner_session(server, "mtn-ng")
    run(server, mtn, order_body("M-1", **NORTON), order_body("M-2"))
    run(
        server,
        mtn,
        order_body(
            "M-3",
            quantity=2,
            productId="NORTON-1Y",
            amount={"value": "19999.98", "currency": "NGN"},
        ),
    )
    cancel(server, mtn, "M-2")
    for order_id in ("T-1", "T-2", "T-3", "M-1", "M-2", "M-3"):
        dated(order_id, fulfilled=at("2026-11-10T10:00:00"))
    dated("T-4", fulfilled=at("2026-11-02T08:00:00"), cancelled=at("2026-11-03T08:00:00"))
    dated("T-5", fulfilled=at("2026-10-28T08:00:00"), cancelled=at("2026-11-04T08:00:00"))
    dated("T-6", fulfilled=at("2026-10-31T23:30:00"))
    dated("T-7", fulfilled=at("2026-11-30T23:30:00"))
    dated("M-2", cancelled=at("2026-11-20T12:00:00"))
    dated("T-8", cancelled=at("2026-11-05T08:00:00"))  # never fulfilled: no refund


def _other(customer_id: str) -> dict:
    return {"id": customer_id, "name": "Bola Ade", "email": "bola@example.ng"}


def ngn(value: str) -> dict:
    return {"value": value, "currency": "NGN"}


NOVEMBER_ROWS = [
    {
        "partner": "mtn-ng",
        "productId": "M365-BASIC-12M",
        "currency": "NGN",
        "fulfilled": 1,
        "renewals": 0,
        "cancelled": 1,
        "gross": ngn("15000.00"),
        "refunded": ngn("15000.00"),
        "net": ngn("0.00"),
    },
    {
        "partner": "mtn-ng",
        "productId": "NORTON-1Y",
        "currency": "NGN",
        "fulfilled": 2,
        "renewals": 0,
        "cancelled": 0,
        "gross": ngn("29999.97"),
        "refunded": ngn("0.00"),
        "net": ngn("29999.97"),
    },
    {
        "partner": "t2mobile",
        "productId": "M365-BASIC-12M",
        "currency": "NGN",
        "fulfilled": 4,
        "renewals": 1,
        "cancelled": 0,
        "gross": ngn("60000.00"),
        "refunded": ngn("0.00"),
        "net": ngn("60000.00"),
    },
    {
        "partner": "t2mobile",
        "productId": "NORTON-1Y",
        "currency": "NGN",
        "fulfilled": 1,
        "renewals": 0,
        "cancelled": 2,
        "gross": ngn("9999.99"),
        "refunded": ngn("19999.98"),
        "net": ngn("-9999.99"),
    },
]
NOVEMBER_TOTALS = [
    {
        "currency": "NGN",
        "fulfilled": 8,
        "cancelled": 3,
        "gross": ngn("114999.96"),
        "refunded": ngn("34999.98"),
        "net": ngn("79999.98"),
    }
]


def test_a_month_of_orders_renewals_and_cancellations_of_two_partners(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    november(server)

    answer = cli(
        "report", "settlement", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "json"
    )

    assert answer.exit_code == 0, answer.output
    report = json.loads(answer.stdout)
    assert report == {
        "from": "2026-11-01",
        "to": "2026-12-01",
        "rows": NOVEMBER_ROWS,
        "totals": NOVEMBER_TOTALS,
    }

    spreadsheet = cli(
        "report", "settlement", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "csv"
    )
    assert spreadsheet.exit_code == 0
    lines = spreadsheet.stdout.splitlines()
    assert lines[0] == "partner,productId,currency,fulfilled,renewals,cancelled,gross,refunded,net"
    assert list(csv.DictReader(io.StringIO(spreadsheet.stdout))) == [
        {
            **{k: str(v) for k, v in row.items() if not isinstance(v, dict)},
            **{k: row[k]["value"] for k in ("gross", "refunded", "net")},
        }
        for row in NOVEMBER_ROWS
    ]

    table = cli("report", "settlement", "--from", "2026-11-01", "--to", "2026-12-01")
    assert table.exit_code == 0
    (total,) = [line for line in table.stdout.splitlines() if " total " in line]
    assert [cell.strip() for cell in total.split("│")[3:10]] == [
        "NGN",
        "8",
        "1",
        "3",
        "114999.96",
        "34999.98",
        "79999.98",
    ]
    assert "Africa/Lagos" in table.stdout


def test_a_partner_and_the_next_month(server: LiveServer, catalogue, cli: Cli) -> None:
    november(server)

    mtn = json.loads(
        cli(
            "report",
            "settlement",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--partner",
            "mtn-ng",
            "--format",
            "json",
        ).stdout
    )
    december = json.loads(
        cli(
            "report", "settlement", "--from", "2026-12-01", "--to", "2027-01-01", "--format", "json"
        ).stdout
    )

    assert mtn["rows"] == [r for r in NOVEMBER_ROWS if r["partner"] == "mtn-ng"]
    assert mtn["totals"][0]["net"] == ngn("29999.97")
    (late,) = december["rows"]
    assert (late["partner"], late["productId"], late["fulfilled"]) == (
        "t2mobile",
        "M365-BASIC-12M",
        1,
    )
    assert december["totals"][0]["gross"] == ngn("15000.00")


def test_an_empty_period_is_an_empty_report_and_bad_periods_are_refused(
    server: LiveServer, catalogue, cli: Cli
) -> None:
    november(server)

    empty = cli(
        "report", "settlement", "--from", "2025-01-01", "--to", "2025-02-01", "--format", "json"
    )
    header = cli(
        "report", "settlement", "--from", "2025-01-01", "--to", "2025-02-01", "--format", "csv"
    )
    table = cli("report", "settlement", "--from", "2025-01-01", "--to", "2025-02-01")
    backwards = cli("report", "settlement", "--from", "2026-12-01", "--to", "2026-11-01")
    not_a_date = cli("report", "settlement", "--from", "November", "--to", "2026-12-01")
    nobody = cli(
        "report", "settlement", "--from", "2026-11-01", "--to", "2026-12-01", "--partner", "nobody"
    )

    assert empty.exit_code == 0
    assert json.loads(empty.stdout) == {
        "from": "2025-01-01",
        "to": "2025-02-01",
        "rows": [],
        "totals": [],
    }
    assert header.exit_code == 0
    assert header.stdout.splitlines() == [
        "partner,productId,currency,fulfilled,renewals,cancelled,gross,refunded,net"
    ]
    assert table.exit_code == 0 and "no sales from 2025-01-01 to 2025-02-01" in table.stderr
    assert backwards.exit_code == 2 and "before --from" in backwards.stderr
    assert not_a_date.exit_code == 2 and "not a date" in not_a_date.stderr
    assert nobody.exit_code == 3 and "no partner named 'nobody'" in nobody.stderr


def test_currencies_are_never_added_together(server: LiveServer, catalogue, cli: Cli) -> None:
    products.upsert(
        [products.ProductData("VPN-USD", "Secure VPN", "", Money.parse("12.50", "USD"), 12, True)]
    )
    http = submit(server)
    dollars = {"productId": "VPN-USD", "amount": {"value": "25.00", "currency": "USD"}}
    run(server, http, order_body("T-N"), order_body("T-D", quantity=2, **dollars))
    dated("T-N", fulfilled=at("2026-11-10T10:00:00"))
    dated("T-D", fulfilled=at("2026-11-11T10:00:00"))

    report = json.loads(
        cli(
            "report", "settlement", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "json"
        ).stdout
    )

    assert [(t["currency"], t["gross"], t["net"]) for t in report["totals"]] == [
        ("NGN", ngn("15000.00"), ngn("15000.00")),
        ("USD", {"value": "25.00", "currency": "USD"}, {"value": "25.00", "currency": "USD"}),
    ]
    assert [(r["productId"], r["currency"], r["fulfilled"]) for r in report["rows"]] == [
        ("M365-BASIC-12M", "NGN", 1),
        ("VPN-USD", "USD", 1),
    ]
