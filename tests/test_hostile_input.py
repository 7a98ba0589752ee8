"""Hostile input: whatever a partner (or anyone holding a key) sends is refused with a clear
4xx naming the field, or stored and given back exactly, on SQLite and PostgreSQL: over real
HTTP, in webhooks, at Zoho; and it reaches an operator's terminal (tables, logs) escaped."""

import json
import re
from pathlib import Path

import requests
from standardwebhooks import Webhook

from t2ctl.db.models import WebhookDelivery
from t2ctl.orders import intake, records
from tests.conftest import Cli, LiveServer, ZohoEnv, daemon_worker, drain, order_body, submit
from tests.hooks import Hook
from tests.processes import LISTENING, serve
from tests.test_sandbox import Sandbox
from tests.test_webhooks import partner_to
from tests.test_zoho import zoho_worker

CUSTOMER = order_body()["customer"]


def post_raw(server: LiveServer, http: requests.Session, raw: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    return http.post(server.endpoint("/fulfilment"), data=raw, headers=headers)


def test_an_order_id_no_order_can_have_is_a_404_without_a_query(
    server: LiveServer, catalogue
) -> None:
    """PostgreSQL refuses a NUL in a query's text: that was a 500 there, and a 404 on SQLite."""
    http = server.session(server.add_partner().key.api_key)
    for path in ("%00", "T2-1%00", "%E2%80%AE", "x" * 65, "a%0d%0ab", "%F0%9F%98%80"):
        response = http.get(server.endpoint(f"/orders/{path}"))
        assert response.status_code == 404, (path, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["detail"] == (
            "No order has that id: an orderId must be 1-64 of A-Z a-z 0-9 . _ : -."
        )


def test_a_key_given_twice_is_a_400_naming_it(server: LiveServer, catalogue) -> None:
    """Which orderId would the partner mean? A proxy may read the first, a dict keeps the last."""
    http = server.session(server.add_partner().key.api_key)
    text = json.dumps(order_body("T2-DUP-1"))
    twice = text.replace('"orderId": "T2-DUP-1"', '"orderId": "T2-DUP-1", "orderId": "T2-DUP-2"')
    nested = text.replace('"id": "CUST-88"', '"id": "CUST-88", "id": "CUST-99"')
    for raw, key in ((twice, "orderId"), (nested, "id")):
        response = post_raw(server, http, raw.encode())
        assert response.status_code == 400
        assert response.json()["detail"] == f'The body gives the key "{key}" twice in one object.'
    assert http.get(server.endpoint("/orders/T2-DUP-1")).status_code == 404
    assert http.get(server.endpoint("/orders/T2-DUP-2")).status_code == 404


# Accepted in every free-text field, and given back as sent: not normalised, not trimmed.
KEPT = [
    "'; DROP TABLE orders; --",
    "Robert'); DELETE FROM partners WHERE ('1'='1",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[/] [bold red]loud[/bold red] [link=https://evil.example]click[/link]",
    "\u202eexe.txt\u202c",  # a right-to-left override
    "\u2067isolate\u2069",
    "👩\u200d👩\u200d👧\u200d👦🇳🇬",  # a ZWJ sequence and a flag
    "Z\u0335\u0321\u0322a\u0334l\u0337g\u0337o\u0337",  # stacked combining marks
    "e\u0301",  # é decomposed: not made é
    "a\u200bb\ufeffc",  # zero-width space, BOM
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",  # outside the BMP
    "%00%0d%0a\\x00\\n\\u0000",  # escapes as text are only text
    '{"orderId": "x"}',
    "null",
    " leading and trailing ",
]
# Refused in customer.id and customer.name (printable text); kept in metadata, which is the
# partner's own and JSON-escaped at rest.
CONTROL = ["a\x00b", "\x1b[31mred\x1b[0m", "\x9b31m", "line\nbreak", "tab\there", "\x7f", "\r"]
LONE_SURROGATE = "\ud800"
ORDER_IDS = [".", "..", "...", ":", "-", "_", "a:b.c-d_e", "0" * 64, "Z" * 64]
BAD_ORDER_IDS = ["a" * 65, "a b", "a/b", "é", "", "a\x00", "a\n"]


def body_with(order_id: str, text: str, *, key: str | None = None) -> dict:
    return order_body(
        order_id,
        customer={"id": text[:64], "name": text, "email": "ada@example.ng"},
        metadata={key if key is not None else text: text},
    )


def test_hostile_text_is_refused_naming_the_field_or_kept_exactly(
    server: LiveServer, catalogue, hook: Hook
) -> None:
    new = partner_to(server, hook.url)
    http = server.session(new.key.api_key)
    sent: dict[str, dict] = {}
    kept = [*KEPT, "😀" * 200, "ß" * 200]  # at the limits: 64 of them in the id, 200 in the name
    for n, text in enumerate(kept):
        sent[f"KEPT-{n}"] = body_with(f"KEPT-{n}", text)
    for n, text in enumerate(CONTROL):
        sent[f"META-{n}"] = order_body(f"META-{n}", metadata={text: text})
    for order_id in ORDER_IDS:
        sent[order_id] = order_body(order_id)
    sent["LONG-META"] = order_body("LONG-META", metadata={"long": "x" * 60_000})  # < 64 KiB
    location = {}
    for order_id, body in sent.items():
        response = http.post(server.endpoint("/fulfilment"), json=body)
        assert response.status_code == 202, (order_id, response.text)
        location[order_id] = server.url + response.headers["Location"]
    # Clients drop the dot segments . and .. from a path: the Location percent-encodes them.
    assert location["."].endswith("/t2mobile/orders/%2E")
    assert location[".."].endswith("/t2mobile/orders/%2E%2E")

    refused = [
        *[("customer.id", order_body(customer={**CUSTOMER, "id": t})) for t in CONTROL],
        *[("customer.name", order_body(customer={**CUSTOMER, "name": t})) for t in CONTROL],
        ("customer.id", order_body(customer={**CUSTOMER, "id": "😀" * 65})),
        ("customer.name", order_body(customer={**CUSTOMER, "name": "ß" * 201})),
        ("customer.name", order_body(customer={**CUSTOMER, "name": LONE_SURROGATE})),
        ("metadata.x", order_body(metadata={"x": LONE_SURROGATE})),
        # pydantic writes the key in the path with U+FFFD for each byte of the surrogate
        ("metadata.\ufffd\ufffd\ufffd.[key]", order_body(metadata={LONE_SURROGATE: "x"})),
        *[("orderId", order_body(bad)) for bad in BAD_ORDER_IDS],
    ]
    for field, body in refused:
        response = http.post(server.endpoint("/fulfilment"), json=body)
        assert response.status_code == 422, (field, body, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], response.text
    too_long = order_body("TOO-LONG", metadata={"long": "x" * 66_000})
    assert http.post(server.endpoint("/fulfilment"), json=too_long).status_code == 413
    for order_id in ("T2-20261127-000123", "TOO-LONG"):
        assert http.get(server.endpoint(f"/orders/{order_id}")).status_code == 404

    for order_id, body in sent.items():
        shown = http.get(location[order_id]).json()
        assert (shown["orderId"], shown["customer"]["id"]) == (order_id, body["customer"]["id"])
        replay = http.post(server.endpoint("/fulfilment"), json=body)
        assert replay.status_code == 200, replay.text  # what is stored is what was sent
        stored = intake.stored_request(records.get(new.partner, order_id), server.box)
        assert stored.customer_name == body["customer"]["name"]
        assert stored.metadata == body["metadata"]
    composed = {**sent["KEPT-9"], "customer": {**sent["KEPT-9"]["customer"], "name": "é"}}
    assert http.post(server.endpoint("/fulfilment"), json=composed).status_code == 409

    drain(daemon_worker(server))
    events = [Webhook(new.webhook_secret).verify(got.body, got.headers) for got in hook.received]
    carried = {e["data"]["orderId"]: e["data"]["customer"]["id"] for e in events}
    assert carried == {order_id: body["customer"]["id"] for order_id, body in sent.items()}
    assert {e["type"] for e in events} == {"order.fulfilled"}


# What must never reach an operator's terminal raw (t2ctl.cli.output escapes it).
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_the_cli_shows_hostile_text_escaped_and_json_keeps_it_exact(
    server: LiveServer, catalogue, hook: Hook, cli: Cli
) -> None:
    """A table cell was rich markup ("[/x]" crashed `orders show`) and a partner's response
    excerpt reached the terminal raw (ESC clears the screen, OSC retitles the window)."""
    new = partner_to(server, hook.url)
    customer_id = "\u202eevil [/x] [bold]"
    name = "[link=https://evil.example]click[/link] Ada"
    hook.answer(500, body="\x1b[2J\x1b]0;pwned\x07 [/x] \x9b31m")
    body = order_body("T2-EVIL", customer={"id": customer_id, "name": name, "email": "a@b.ng"})
    http = server.session(new.key.api_key)
    assert http.post(server.endpoint("/fulfilment"), json=body).status_code == 202
    drain(daemon_worker(server))

    delivery = str(WebhookDelivery.get().id)
    listed = cli("orders", "list")
    shown = cli("orders", "show", "T2-EVIL")
    sent = cli("webhooks", "show", delivery)
    for result in (listed, shown, sent):
        assert result.exit_code == 0, result.output
        assert not RAW_CONTROL.search(result.stdout), result.stdout
    for result in (listed, shown):
        assert "\\u202eevil [/x] [bold]" in result.stdout  # escaped, and not read as markup
    assert name in shown.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07 [/x] \\x9b31m" in sent.stdout

    exact = json.loads(cli("orders", "show", "T2-EVIL", "--json").stdout)
    assert exact["customer"]["id"] == customer_id
    excerpt = json.loads(cli("webhooks", "show", delivery, "--json").stdout)["history"][0]
    assert excerpt["excerpt"] == "\x1b[2J\x1b]0;pwned\x07 [/x] \x9b31m"


# A path anyone may request, without a key: the access log quotes it.
HOSTILE_PATH = "/t2mobile/%1b%5b2J%1b%5d0%3bpwned%07%c2%9b31m%e2%80%aeevil%0d%0aFAKE%20line"
DECODED_PATH = "/t2mobile/\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\r\nFAKE line"


def test_a_hostile_request_path_reaches_the_log_escaped(tmp_path: Path) -> None:
    """The text log (a person at a terminal) got ESC, OSC, CSI and a CR LF raw from an
    unauthenticated request: a cleared screen, a retitled window, a forged log line. The JSON
    log keeps the path exact, with nothing a terminal would act on left raw."""
    for log_format in ("text", "json"):
        env = {"T2CTL_LOG__FORMAT": log_format}
        (tmp_path / log_format).mkdir()
        with serve(tmp_path / log_format, None, "--port", "0", "--role", "api", env=env) as daemon:
            url = daemon.wait_for(LISTENING)[1]
            assert requests.get(url + HOSTILE_PATH).status_code == 404
            assert daemon.stop() == 0
        lines = daemon.log.splitlines()
        assert not [line for line in lines if RAW_CONTROL.search(line)], daemon.log
        assert not [line for line in lines if line.startswith("FAKE")], daemon.log
        if log_format == "text":
            escaped = "/t2mobile/\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil\\r\\nFAKE line"
            assert f'"GET {escaped}" 404' in daemon.log
        else:
            (access,) = [r for r in daemon.records if r.get("action") == "http_request"]
            assert access["path"] == DECODED_PATH


def test_hostile_names_reach_zoho_exactly(server: LiveServer, zoho: ZohoEnv) -> None:
    """In Zoho mode the customer's name and id become the contact's name, as sent."""
    names = [t for t in KEPT if t == t.strip()]  # Zoho trims a contact name, as its stand-in
    bodies = [
        order_body(
            f"ZOHO-{n}",
            customer={"id": name[:64], "name": name, "email": f"c{n}@example.ng"},
        )
        for n, name in enumerate(names)
    ]
    submit(server, *bodies)
    drain(zoho_worker(server, zoho))
    contacts = {c["email"]: c["contact_name"] for c in zoho.standin.contacts.values()}
    assert contacts == {
        b["customer"]["email"]: f"{b['customer']['name']} ({b['customer']['id']})" for b in bodies
    }
    assert {s["reference_number"] for s in zoho.standin.salesorders.values()} == {
        b["orderId"] for b in bodies
    }


def test_the_sandbox_receiver_prints_what_it_got_escaped(tmp_path: Path) -> None:
    """Anyone who reaches `t2ctl sandbox` may post to its receiver, which prints each delivery's
    type and webhook-id, verified or not, on the operator's terminal."""
    sandbox = Sandbox(tmp_path)
    try:
        body = json.dumps({"type": "\x1b[2J\x1b]0;pwned\x07\u202e", "data": {}})
        headers = {"webhook-id": "msg_\x9b31m", "content-type": "application/json"}
        answer = requests.post(sandbox.url() + "/hooks", data=body, headers=headers, timeout=10)
        assert answer.status_code == 401
    finally:
        assert sandbox.stop() == 0
    printed = "".join(sandbox.out)
    assert not RAW_CONTROL.search(printed), printed
    assert "webhook msg_\\x9b31m \\x1b[2J\\x1b]0;pwned\\x07\\u202e: REJECTED" in printed
