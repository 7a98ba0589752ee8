"""Who gets in: API keys rotated with a grace or revoked at once, the per-partner IP
allow-list (its plain 403 is in test_errors), and X-Forwarded-For believed only from a
trusted proxy. Over real HTTP to the real app, with keys managed through the real CLI; every
change lands in the audit log."""

import ipaddress
import json
import os
import pwd
import time
from collections.abc import Iterator

import pytest
import requests

from t2ctl import partners
from t2ctl.api.proxies import ClientAddress
from t2ctl.config import Settings
from t2ctl.db.models import AuditEvent
from tests.conftest import Cli, LiveServer, make_settings, serve_in_thread


def status(server: LiveServer, api_key: str, **headers: str) -> int:
    response = requests.get(
        server.endpoint("/products"), headers={"X-API-Key": api_key, **headers}, timeout=10
    )
    if response.status_code != 200:
        assert response.headers["Content-Type"] == "application/problem+json"
    return response.status_code


def test_a_rotated_key_works_through_its_grace_and_then_gets_401(
    server: LiveServer, cli: Cli
) -> None:
    first = server.add_partner("acme").key.api_key
    assert status(server, first) == 200

    result = cli("keys", "rotate", "--partner", "acme", "--grace", "3s", "--json")
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.stdout)
    assert set(rotated) == {"keyId", "apiKey", "expiresOld"}
    assert rotated["apiKey"].startswith(f"t2k_{rotated['keyId']}_")

    assert status(server, first) == 200, "the old key still works during the grace"
    assert status(server, rotated["apiKey"]) == 200, "and so does the new one"
    deadline = time.monotonic() + 10
    while status(server, first) == 200:
        assert time.monotonic() < deadline, "the old key never stopped working"
        time.sleep(0.25)
    assert status(server, first) == 401
    assert status(server, rotated["apiKey"]) == 200

    listed = {k["keyId"]: k for k in json.loads(cli("keys", "list", "--json").stdout)}
    assert listed[rotated["keyId"]]["state"] == "active"
    assert listed[rotated["keyId"]]["lastUsedAt"] is not None, "each key records its last use"
    (old,) = [k for k in listed.values() if k["keyId"] != rotated["keyId"]]
    assert (old["state"], old["expiresAt"]) == ("expired", rotated["expiresOld"])
    assert old["lastUsedAt"] is not None


def test_a_revoked_key_gets_401_at_once_and_the_partner_keeps_its_others(
    server: LiveServer, cli: Cli
) -> None:
    new = server.add_partner("acme")
    other = json.loads(cli("keys", "create", "--partner", "acme", "--json").stdout)
    assert status(server, new.key.api_key) == 200

    assert cli("keys", "revoke", new.key.key_id).exit_code == 0
    assert status(server, new.key.api_key) == 401
    assert status(server, other["apiKey"]) == 200, "a partner may hold several keys"
    assert cli("keys", "revoke", "nosuchkey").exit_code == 3


def test_a_grace_that_is_not_a_duration_changes_nothing(server: LiveServer, cli: Cli) -> None:
    key = server.add_partner("acme").key.api_key
    for grace in ("soon", "-5m", "5"):
        result = cli("keys", "rotate", "--partner", "acme", "--grace", grace)
        assert result.exit_code in (1, 2) and "grace" in result.stderr
    assert status(server, key) == 200
    assert len(json.loads(cli("keys", "list", "--json").stdout)) == 1
    assert not AuditEvent.select().where(AuditEvent.action == "keys.rotate").exists()


@pytest.fixture
def behind_proxy(migrated: Settings) -> Iterator[LiveServer]:
    """The API as if behind a reverse proxy on loopback: 127.0.0.1 is the trusted proxy."""
    settings = make_settings(
        migrated.database.url,
        security={"master_key": migrated.security.master_key.get_secret_value()},
        server={"trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]},
    )
    url, stop, app = serve_in_thread(settings)
    try:
        yield LiveServer(url, settings, app.extensions["t2ctl"].box, app)
    finally:
        stop()


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(server: LiveServer) -> None:
    """No trusted proxy is configured: the peer (127.0.0.1) is the client, whatever it says."""
    key = server.add_partner("acme").key.api_key
    partners.update("acme", sandbox=True, allow_ips=["203.0.113.0/24"])
    assert status(server, key, **{"X-Forwarded-For": "203.0.113.5"}) == 403
    assert status(server, key) == 403


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(behind_proxy: LiveServer) -> None:
    key = behind_proxy.add_partner("acme").key.api_key
    partners.update("acme", sandbox=True, allow_ips=["203.0.113.0/24"])
    forwarded = {
        "203.0.113.5": 200,  # the client the proxy saw
        "203.0.113.5:51234": 200,  # written with its port
        "198.51.100.7": 403,
        "203.0.113.5, 198.51.100.7": 403,  # a client cannot prepend its way in
        "198.51.100.7, 203.0.113.5, 10.1.2.3": 200,  # through two trusted proxies
        "not-an-address": 403,
    }
    for header, expected in forwarded.items():
        got = status(behind_proxy, key, **{"X-Forwarded-For": header})
        assert got == expected, f"X-Forwarded-For: {header}"
    assert status(behind_proxy, key) == 403, "with no header the proxy itself is the client"


def test_every_state_change_from_the_cli_is_audited_with_the_os_user(
    server: LiveServer, cli: Cli
) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert cli("partners", "add", "acme", "--webhook-url", "http://127.0.0.1:9/h").exit_code == 0
    bad = cli("partners", "set", "acme", "--allow-ip", "10.0.0.0/8", "--allow-ip", "nope")
    assert bad.exit_code == 1, "refused: nothing changed, nothing recorded"
    assert cli("partners", "set", "acme", "--allow-ip", "10.0.0.0/8").exit_code == 0
    rotated = cli("keys", "rotate", "--partner", "acme", "--grace", "1h", "--json")
    secret = cli("secrets", "rotate-webhook", "--partner", "acme", "--grace", "1d", "--json")
    assert rotated.exit_code == secret.exit_code == 0

    result = cli("audit", "list", "--json")
    assert result.exit_code == 0
    events = json.loads(result.stdout)
    assert [e["action"] for e in events] == [
        "secrets.rotate-webhook",
        "keys.rotate",
        "partners.set",
        "partners.add",
    ]
    assert {e["user"] for e in events} == {me}
    assert all(e["target"] == "acme" and e["at"] for e in events)
    assert events[2]["details"] == {"allowedIps": ["10.0.0.0/8"]}
    assert events[1]["details"]["grace"] == "1h" and len(events[1]["details"]["expiring"]) == 1
    recorded = json.dumps(events)
    assert json.loads(rotated.stdout)["apiKey"] not in recorded
    assert json.loads(secret.stdout)["webhookSecret"] not in recorded and "whsec_" not in recorded

    only_keys = json.loads(cli("audit", "list", "--action", "keys", "--json").stdout)
    assert [e["action"] for e in only_keys] == ["keys.rotate"]
    table = cli("audit", "list")
    assert "partners.add" in table.stdout and me in table.stdout
    assert cli("audit", "list", "--user", "nobody-here").stderr.strip().endswith("matches")


def forwarded(peer: str, header: str | None = None, **others: str) -> dict:
    """What the app behind ``ClientAddress`` (trusting 10.0.0.0/8 and fd00::/8) is handed."""
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    environ = {"REMOTE_ADDR": peer, **others}
    if header is not None:
        environ["HTTP_X_FORWARDED_FOR"] = header
    trusted = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    ClientAddress(app, trusted)(environ, lambda *_: None)
    return seen


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("::ffff:203.0.113.9", None, "203.0.113.9"),  # a dual-stack listener's IPv4
        ("10.0.0.2", "2001:db8::7", "2001:db8::7"),
        ("fd00::1", "[2001:db8::7]:443", "2001:db8::7"),
        ("10.0.0.2", "::ffff:198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, bogus, 10.0.0.3", "unknown"),  # garbage past trusted hops
        ("10.0.0.2", "bogus, 198.51.100.1", "198.51.100.1"),  # garbage the client wrote
        ("10.0.0.2", "10.0.0.9", "10.0.0.9"),  # every hop ours: the leftmost
    ],
)
def test_the_client_address_is_read_right_to_left_through_trusted_hops(
    peer: str, header: str | None, client: str
) -> None:
    seen = forwarded(peer, header)
    assert seen["REMOTE_ADDR"] == client
    assert seen["t2ctl.peer_addr"] == peer


def test_forwarding_headers_from_an_untrusted_peer_never_reach_the_app() -> None:
    seen = forwarded(
        "203.0.113.9", "198.51.100.1", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="x"
    )
    assert not [name for name in seen if name.startswith("HTTP_X_FORWARDED")]
    kept = forwarded("10.0.0.2", "198.51.100.1", HTTP_X_FORWARDED_PROTO="https")
    assert kept["HTTP_X_FORWARDED_PROTO"] == "https"
