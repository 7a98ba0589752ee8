"""One sales order per order whatever the crash: a real `t2ctl serve --role worker` process,
talking HTTP to the Zoho stand-in, is SIGKILLed while one of its calls is held at each step,
and a second daemon finishes the order after the first one's lease runs out (each test on
SQLite and on PostgreSQL)."""

from pathlib import Path

import pytest

from t2ctl.db.models import Order
from tests.conftest import LiveServer, ZohoEnv, order_body, order_job, submit, write_config
from tests.processes import serve, wait_until

CONFIRM = r"/salesorders/\d+/status/confirmed"
STEPS = {
    # held before Zoho acts on it, then dropped: the create never happened
    "before create": ("POST", "/salesorders", False, 1),
    # Zoho created it, the answer never arrived: found by reference_number, then confirmed
    "after create, before confirm": ("POST", "/salesorders", True, 1),
    # Zoho confirmed it, the answer never arrived: confirmed again is refused, then checked
    "after confirm, before our commit": ("POST", CONFIRM, True, 0),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_sigkill_at_each_step_leaves_one_confirmed_sales_order(
    server: LiveServer, zoho: ZohoEnv, tmp_path: Path, step: str
) -> None:
    method, path, after, lookups = STEPS[step]
    config = write_config(
        tmp_path / "config.toml",
        server.settings,
        # A short Zoho timeout: a create left unanswered is looked up once it has passed.
        zoho.config_toml(requests_per_minute=100, timeout_seconds=2)
        + "\n[worker]\nlease_seconds = 5\n",
    )
    held = zoho.standin.hold(method, path, after=after)
    http = submit(server, order_body("T2-K"))

    with serve(tmp_path, config, "--role", "worker") as first:
        assert held.reached.wait(60), f"the call was never made; log:\n{first.log}"
        first.kill()  # SIGKILL: no drain, no release; the lease is left to expire
    held.release(drop=not after)
    assert (Order.get().status, order_job().state) == ("PROCESSING", "running")

    with serve(tmp_path, config, "--role", "worker") as second:
        wait_until(lambda: Order.get().status == "FULFILLED", timeout=60, what="FULFILLED")
        assert second.stop() == 0

    (sales,) = zoho.standin.salesorders.values()
    assert (sales["reference_number"], sales["status"]) == ("T2-K", "confirmed")
    fulfilment = http.get(server.endpoint("/orders/T2-K")).json()["fulfilment"]
    assert fulfilment["salesOrderId"] == sales["salesorder_id"]
    assert fulfilment["activationReference"] == sales["salesorder_number"]
    assert len(zoho.standin.api_calls("GET", "/salesorders")) == lookups
    # Taken back after the lease; a "creating" row may make it wait once more, for the
    # first daemon's call deadline.
    assert order_job().state == "done" and order_job().attempts in (2, 3)
