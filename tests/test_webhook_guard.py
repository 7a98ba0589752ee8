"""The SSRF guard outside sandbox mode: only https, and never to a loopback, link-local or
private address unless ``webhooks.allow_private_networks`` lists it, judged on the address
the name resolves to when the connection is made. A receiver on loopback stands in for an
address inside our network; with the network allowed, it is reached over real TLS."""

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from t2ctl import clock, db, partners
from t2ctl.config import Settings
from t2ctl.db.models import WebhookDelivery
from t2ctl.webhooks import deliveries, outbox
from t2ctl.webhooks.delivery import Sender
from t2ctl.webhooks.guard import Guard, pool_manager
from tests.conftest import LiveServer, daemon_worker, drain, make_settings
from tests.hooks import Hook

ZOHO = {
    "enabled": True,
    "client_id": "client",
    "client_secret": "secret",
    "refresh_token": "refresh",
    "organization_id": "1",
}


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("fec0::1", "site-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 to 10.0.0.1
        ("2002:7f00:1::1", "loopback"),  # 6to4 from 127.0.0.1
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),  # Teredo
        ("100.64.0.1", "reserved"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_what_the_guard_counts_as_inside(address: str, kind: str | None) -> None:
    assert Guard().forbidden(ipaddress.ip_address(address)) == kind
    allowed = Guard((ipaddress.ip_network(address),))
    assert allowed.forbidden(ipaddress.ip_address(address)) is None


def live_settings(server: LiveServer, **webhooks: object) -> Settings:
    key = server.settings.security.master_key.get_secret_value()
    return make_settings(
        server.settings.database.url, security={"master_key": key}, zoho=ZOHO, webhooks=webhooks
    )


def event_for(server: LiveServer, url: str, *, sandbox: bool = False) -> partners.NewPartner:
    new = partners.add("t2mobile", url, box=server.box, sandbox=sandbox)
    with db.transaction():
        outbox.record(
            new.partner.id,
            "order.fulfilled",
            {"orderId": "T2-1"},
            occurred_at=clock.now(),
            order_ref="T2-1",
        )
    return new


def only_attempt() -> tuple[WebhookDelivery, object]:
    delivery = WebhookDelivery.get()
    (attempt,) = deliveries.attempts(delivery)
    return delivery, attempt


def test_outside_sandbox_a_name_resolving_to_loopback_is_refused(
    server: LiveServer, hook: Hook
) -> None:
    port = hook.url.split(":")[2].split("/")[0]
    event_for(server, f"https://localhost:{port}/hooks")
    drain(daemon_worker(server, live_settings(server)))

    delivery, attempt = only_attempt()
    assert attempt.outcome == "refused" and attempt.status_code is None
    assert "localhost resolves to" in attempt.error and "loopback" in attempt.error
    assert not hook.received, "nothing was sent"
    assert delivery.status == "pending", "tried again later: config may yet allow it"


def test_outside_sandbox_a_private_address_is_refused_without_connecting(
    server: LiveServer,
) -> None:
    event_for(server, "https://10.20.30.40/hooks")
    drain(daemon_worker(server, live_settings(server)))
    _, attempt = only_attempt()
    assert attempt.outcome == "refused" and "private" in attempt.error
    assert attempt.latency_ms is None


def test_outside_sandbox_http_is_refused(server: LiveServer, hook: Hook) -> None:
    event_for(server, hook.url, sandbox=True)  # saved in sandbox mode, then Zoho enabled
    drain(daemon_worker(server, live_settings(server)))
    _, attempt = only_attempt()
    assert attempt.outcome == "refused" and "only https" in attempt.error
    assert not hook.received


def test_an_allowed_private_network_is_reached_over_verified_tls(
    server: LiveServer, tls_hook: tuple[Hook, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook, ca_file = tls_hook
    # A proxy would reach the address out of the guard's sight: the environment's is ignored.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    new = event_for(server, hook.url)
    allowed = live_settings(
        server, allow_private_networks=["127.0.0.0/8", "::1/128"], ca_file=str(ca_file)
    )
    drain(daemon_worker(server, allowed))

    delivery, attempt = only_attempt()
    assert (delivery.status, attempt.status_code) == ("delivered", 204), attempt.error
    (got,) = hook.received
    assert Webhook(new.webhook_secret).verify(got.body, got.headers)["data"] == {"orderId": "T2-1"}


def test_connecting_to_the_checked_address_keeps_tls_verification(
    server: LiveServer, tls_hook: tuple[Hook, Path]
) -> None:
    """The guard pins the address; the certificate is still checked: without the CA that
    signed it, nothing is sent."""
    hook, _ = tls_hook
    event_for(server, hook.url)
    allowed = live_settings(server, allow_private_networks=["127.0.0.0/8", "::1/128"])
    drain(daemon_worker(server, allowed))
    _, attempt = only_attempt()
    assert attempt.outcome == "failed" and attempt.error.startswith("TLS")
    assert not hook.received


@dataclass(frozen=True)
class _Recording(Guard):
    """The guard, noting each name it is asked to check (one check: one new connection)."""

    checked: list[str] = field(default_factory=list)

    def check(self, host: str, port: int) -> list[str]:
        self.checked.append(host)
        return super().check(host, port)


def test_a_kept_alive_connection_is_reused_and_every_new_one_is_checked(hook: Hook) -> None:
    """Over plain HTTP, as the test's TLS receiver closes every connection: the pools are the
    ones the sender uses for https too."""
    guard = _Recording((ipaddress.ip_network("127.0.0.0/8"),))
    pools = pool_manager(guard)

    def send() -> int:
        return pools.request("POST", hook.url, body=b"{}").status  # read to its end

    hook.answer(200, body="ok", times=3)
    assert [send() for _ in range(3)] == [200] * 3
    assert len({got.peer for got in hook.received}) == 1, "one connection, kept alive"
    assert guard.checked == ["127.0.0.1"]
    # This receiver closes the connection after a 204 (it sends no Content-Length with it).
    assert [send(), send()] == [204, 204]
    assert len({got.peer for got in hook.received}) == 2
    assert guard.checked == ["127.0.0.1", "127.0.0.1"], "the new connection was checked"


def test_the_sender_keeps_its_connection_to_a_receiver_alive(hook: Hook) -> None:
    sender = Sender(timeout=10, guard=None)  # sandbox mode: http to loopback
    hook.answer(200, body="ok", times=3)  # this receiver closes the connection after a 204
    outcomes = [sender.send(hook.url, {}, "{}").outcome for _ in range(3)]
    assert outcomes == ["delivered"] * 3
    assert len({got.peer for got in hook.received}) == 1


def test_a_body_longer_than_the_excerpt_is_not_read_on_and_its_connection_is_closed(
    hook: Hook,
) -> None:
    sender = Sender(timeout=10, guard=None)
    hook.answer(200, body="x" * 5000, times=2)
    results = [sender.send(hook.url, {}, "{}") for _ in range(2)]
    assert [(r.outcome, len(r.excerpt or "")) for r in results] == [("delivered", 1024)] * 2
    assert len({got.peer for got in hook.received}) == 2, "a new connection for the second"
