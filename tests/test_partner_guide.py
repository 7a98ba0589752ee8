"""The partner guide's programs, taken from docs/partner-guide.md as written: the Python
receiver run against real deliveries (it must verify them, answer 2xx, and drop a resent one
by its id), the catch-up programs, Python and Node.js, run against the live server's event
feed after an outage (each missed event handled once, none handled twice), and the curl
examples of listing, cancelling and the feed, run by the shell."""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from t2ctl import partners, sandbox
from t2ctl.db.models import WebhookDelivery
from t2ctl.webhooks import deliveries
from tests.conftest import (
    NORTON,
    LiveServer,
    daemon_worker,
    declining_worker,
    drain,
    order_body,
    post_orders,
    unavailable,
)

GUIDE = Path(__file__).parent.parent / "docs" / "partner-guide.md"


def guide_snippet(heading: str, language: str, nth: int = 0) -> str:
    """The ``nth`` block of ``language`` after ``heading``."""
    text = GUIDE.read_text()
    section = text[text.index(heading) :]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)[nth]


def run_example(server: LiveServer, api_key: str, example: str, **filled: str) -> dict:
    """A shell example as a partner pastes it, with its base URL and key from the environment
    (its ``export`` lines set placeholders) and each placeholder of ``filled`` replaced by a
    real value: the JSON it printed."""
    script = "\n".join(line for line in example.splitlines() if not line.startswith("export "))
    for placeholder, value in filled.items():
        assert placeholder in script
        script = script.replace(placeholder, value)
    env = {**os.environ, "T2CTL_API": server.url, "T2CTL_API_KEY": api_key}
    ran = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def test_the_curl_examples_list_cancel_and_read_the_feed(server: LiveServer, catalogue) -> None:
    new = server.add_partner()
    http = server.session(new.key.api_key)
    post_orders(server, http, "T2-F1", "T2-F2", **NORTON)
    drain(declining_worker(server))
    post_orders(server, http, "T2-20261127-000123")  # left PENDING
    key = new.key.api_key

    listed = run_example(server, key, guide_snippet("### Listing your orders", "sh"))
    first = http.get(server.endpoint("/orders"), params={"status": "FAILED", "limit": 1}).json()
    cursor = run_example(
        server,
        key,
        guide_snippet("### Listing your orders", "sh", 1),
        MjAyNi0xMS0yN1QwOTowMDowMC4xMjM0NTYrMDA6MDB8NDI=first["nextCursor"],
    )
    cancelled = run_example(server, key, guide_snippet("### Cancelling an order", "sh"))
    whole = http.get(server.endpoint("/events")).json()["data"]
    feed = run_example(
        server,
        key,
        guide_snippet("### The event feed", "sh"),
        msg_2bU5jMa0ZbTlrpW1dS9pXzkj=whole[0]["id"],
    )

    assert [o["orderId"] for o in listed["data"]] == ["T2-F2", "T2-F1"]
    assert listed["nextCursor"] is None
    assert [o["orderId"] for o in cursor["data"]] == ["T2-F1"]
    assert cancelled["status"] == "CANCELLED", "the example's order was still PENDING"
    assert cancelled["cancellation"]["reason"] == "Payment reversed by the customer's bank"
    assert feed["data"] == whole[1:] and feed["hasMore"] is False


def test_the_python_snippet_verifies_real_deliveries_and_drops_a_resend(
    server: LiveServer, catalogue, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    new = partners.add("t2mobile", "http://127.0.0.1:9/", box=server.box, sandbox=True)
    monkeypatch.setenv("T2CTL_WEBHOOK_SECRET", new.webhook_secret)
    source = tmp_path / "receiver.py"
    source.write_text(guide_snippet("#### Python", "python"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("receiver", None)  # the other backend's run imported its own
    importlib.invalidate_caches()
    receiver = importlib.import_module("receiver")  # as a partner would run the file
    running = sandbox.in_background(receiver.app)
    try:
        url = f"{running.url}/t2ctl/webhooks"
        partners.update("t2mobile", sandbox=True, webhook_url=url)
        http = server.session(new.key.api_key)
        assert http.post(server.endpoint("/fulfilment"), json=order_body("T2-1")).ok
        worker = daemon_worker(server)
        drain(worker)
        delivery = WebhookDelivery.get()
        assert delivery.status == "delivered" and delivery.last_status == 204
        assert capsys.readouterr().out == "order.fulfilled for order T2-1\n"

        deliveries.resend(delivery.id)
        drain(worker)
        assert WebhookDelivery.get_by_id(delivery.id).status == "delivered"
        assert capsys.readouterr().out == "", "handled once: the resend has the same id"

        forged = requests.post(
            url,
            data=delivery.body,
            headers={
                "webhook-id": "msg_forged",
                "webhook-timestamp": "1800000000",
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 401
    finally:
        running.stop()


# Run the catch-up program's function with a page of 2 (its own run asks for 200 a page), so
# that the paging by `after` while hasMore is exercised; the state is its file's.
PAGED = {
    "python": "import json, sys; sys.path.insert(0, {directory!r}); import catch_up as c; "
    "c.STATE.write_text(json.dumps(c.catch_up(json.loads(c.STATE.read_text()), limit=2)))",
    "js": "const fs = require('node:fs'); const {{ catchUp }} = require({path!r}); "
    "const file = process.env.T2CTL_EVENTS_STATE; "
    "catchUp(JSON.parse(fs.readFileSync(file, 'utf8')), 2)"
    ".then((s) => fs.writeFileSync(file, JSON.stringify(s)));",
}


def interpreter(language: str) -> list[str]:
    if language == "python":
        return [sys.executable]
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the guide's Node.js catch-up is not run")
    return [node]


@pytest.mark.parametrize(
    ("heading", "language"),
    [("#### Catching up in Python", "python"), ("#### Catching up in Node.js", "js")],
)
def test_the_catch_up_programs_handle_each_missed_event_once(
    server: LiveServer, catalogue, tmp_path: Path, heading: str, language: str
) -> None:
    command = interpreter(language)
    new = partners.add("t2mobile", "http://127.0.0.1:9/", box=server.box, sandbox=True)
    partners.update("t2mobile", sandbox=True, rate_limit="1000/minute")
    http = server.session(new.key.api_key)
    worker = daemon_worker(server)

    def outage(*order_ids: str) -> list[str]:
        """Orders fulfilled while nothing listens at the webhook URL: their ids in the feed."""
        for order_id in order_ids:
            assert http.post(server.endpoint("/fulfilment"), json=order_body(order_id)).ok
        drain(worker)
        return [d.webhook_id for d in WebhookDelivery.select().order_by(WebhookDelivery.id)]

    source = tmp_path / f"catch_up.{'py' if language == 'python' else 'js'}"
    source.write_text(guide_snippet(heading, language))
    state = tmp_path / "state.json"
    env = {
        **os.environ,
        "T2CTL_API": server.url,
        "T2CTL_API_KEY": new.key.api_key,
        "T2CTL_EVENTS_STATE": str(state),
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [*command, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = outage("T2-1", "T2-2", "T2-3")
    # T2-1's webhook reached the receiver before it went down: handled, so dropped here.
    state.write_text(json.dumps({"last": None, "handled": first[:1]}))
    assert run(str(source)) == "".join(f"order.fulfilled for order T2-{n}\n" for n in (2, 3))
    assert json.loads(state.read_text()) == {"last": first[-1], "handled": first}

    every = outage("T2-4", "T2-5", "T2-6")
    paged = PAGED[language].format(directory=str(tmp_path), path=str(source))
    lines = run("-c" if language == "python" else "-e", paged)
    assert lines == "".join(f"order.fulfilled for order T2-{n}\n" for n in (4, 5, 6))
    assert json.loads(state.read_text()) == {"last": every[-1], "handled": every}
    assert run(str(source)) == "", "caught up: nothing new, nothing twice"
