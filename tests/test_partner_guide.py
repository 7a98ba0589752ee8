"""The partner guide's Python receiver, taken from docs/partner-guide.md as written, run
against real deliveries: it must verify them, answer 2xx, and drop a resent one by its id."""

import importlib
import re
import sys
from pathlib import Path

import pytest
import requests

from t2ctl import partners, sandbox
from t2ctl.db.models import WebhookDelivery
from t2ctl.webhooks import deliveries
from tests.conftest import LiveServer, daemon_worker, drain, order_body

GUIDE = Path(__file__).parent.parent / "docs" / "partner-guide.md"


def guide_snippet(heading: str, language: str) -> str:
    text = GUIDE.read_text()
    section = text[text.index(heading) :]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


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
