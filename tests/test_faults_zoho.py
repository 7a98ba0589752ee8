"""The fault matrix, Zoho and the partner's receiver misbehaving at the wire: Zoho answering
429 with Retry-After, 5xx, too late (past t2ctl's timeout, the call taking effect
afterwards), not at all (the connection closed), or a byte at a time; the receiver down for a
while, then back. Orders are only delayed: each ends as it would have, with one sales order
and one order event (each test on SQLite and on PostgreSQL)."""

import time
from collections import Counter
from pathlib import Path

from t2ctl.db.models import WebhookAttempt, WebhookDelivery
from tests.conftest import ZohoEnv, write_config
from tests.faults import (
    CONFIRM,
    Fleet,
    Partner,
    assert_promise,
    fault_config,
    faulty_zoho,
    free_port,
    order,
    partner_key,
    settled,
    zoho_sales,
)
from tests.hooks import Hook, TlsReceiver
from tests.processes import wait_until


def test_zoho_failing_at_the_wire_delays_orders_but_loses_or_duplicates_none(
    zoho: ZohoEnv, tls_hook: tuple[Hook, Path], tmp_path: Path
) -> None:
    hook, ca_file = tls_hook
    faulty_zoho(zoho)
    standin = zoho.standin
    standin.fail("POST", "/salesorders", status=429, headers={"Retry-After": "1"}, times=2)
    standin.fail("POST", "/salesorders", status=503, times=2)
    standin.reset("POST", "/salesorders", times=2)
    standin.stall("POST", "/salesorders", 3, times=2)  # t2ctl gives up after 2 s
    standin.dribble("POST", "/salesorders", 1.5, times=2)
    standin.fail("POST", CONFIRM, status=500)
    standin.reset("POST", CONFIRM)
    standin.stall("POST", CONFIRM, 3)
    standin.fail("GET", "/contacts", status=502, body={"html": "bad gateway"})
    standin.reset("GET", "/contacts")
    standin.dribble("GET", "/contacts", 1.0)
    standin.stall("POST", "/contacts", 3)
    config = write_config(tmp_path / "config.toml", zoho.settings, fault_config(zoho, ca_file))
    started = time.monotonic()
    with Fleet(tmp_path, config, [free_port()], workers=1) as fleet:
        fleet.start()
        partner = Partner(fleet.urls, partner_key(zoho, hook.url))
        assert set(partner.submit_all(order(n, "T2-ZF") for n in range(40))) == {202}
        wait_until(lambda: settled(partner.accepted), timeout=120, what="every order settled")
        assert fleet.stop() == [0, 0]
    seconds = time.monotonic() - started

    assert standin.faults == [], "every fault was met"
    answered = standin.statuses()
    assert {0, 429, 500, 502, 503} <= set(answered)
    # The creates answered too late had taken effect: each was found, not made again.
    assert len(standin.api_calls("GET", "/salesorders")) >= 2
    found = assert_promise(partner.accepted, zoho_sales(standin), hook)
    assert found.duplicates == 0
    print(
        f"zoho faults: 40 orders, {dict(found.statuses)}, {seconds:.0f} s, lost "
        f"{len(found.lost)}, duplicates {found.duplicates}, zoho answered "
        f"{dict(sorted(Counter(answered).items()))} (0: no answer)"
    )


def test_a_receiver_down_for_a_while_gets_each_event_once_when_it_is_back(
    zoho: ZohoEnv, tls_receiver: TlsReceiver, tmp_path: Path
) -> None:
    hook = tls_receiver.hook
    faulty_zoho(zoho)
    config = write_config(
        tmp_path / "config.toml", zoho.settings, fault_config(zoho, tls_receiver.ca_file)
    )
    tls_receiver.stop()
    went_down = time.monotonic()
    with Fleet(tmp_path, config, [free_port()], workers=1) as fleet:
        fleet.start()
        partner = Partner(fleet.urls, partner_key(zoho, hook.url))
        assert set(partner.submit_all(order(n, "T2-RX") for n in range(20))) == {202}

        def each_tried_thrice() -> bool:
            tried = WebhookDelivery.select().where(WebhookDelivery.failures >= 3)
            return tried.count() == 20

        wait_until(each_tried_thrice, timeout=60, what="every delivery failed three times")
        down = time.monotonic() - went_down
        tls_receiver.start()
        came_back = time.monotonic()
        wait_until(lambda: settled(partner.accepted), timeout=60, what="every order settled")
        caught_up = time.monotonic() - came_back
        assert fleet.stop() == [0, 0]

    found = assert_promise(partner.accepted, zoho_sales(zoho.standin), hook)
    assert len(hook.received) == 20, "one request for each event: none repeated once delivered"
    refused = WebhookAttempt.select().where(WebhookAttempt.outcome == "failed").count()
    assert refused >= 60
    print(
        f"receiver down: 20 orders {dict(found.statuses)}, down {down:.0f} s, {refused} "
        f"refused attempts, all delivered {caught_up:.0f} s after it came back, duplicates "
        f"{found.duplicates}"
    )
