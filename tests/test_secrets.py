"""Secrets stay secret: the log filter, nothing raw in logs or the database after a whole
Zoho-enabled flow run by real processes, and a master-key rotation that leaves everything
readable under the new key alone while a wrong key stops the daemon at the door."""

import io
import json
import logging
import re
from pathlib import Path

import peewee
import pytest
import requests
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from t2ctl import db
from t2ctl.config import Settings
from t2ctl.db.models import MODELS, AuditEvent, Order, ZohoToken
from t2ctl.errors import T2Error
from t2ctl.jobs import models as job_models
from t2ctl.security import atrest, redaction
from t2ctl.security.crypto import SecretBox, Undecryptable
from tests.conftest import LiveServer, ZohoEnv, order_body, submit, write_config
from tests.hooks import Hook
from tests.processes import run, serve, wait_until

EMAIL = "ada.obi@example.ng"
PHONE = "+2348031234567"


def test_the_log_filter_masks_secrets_and_contacts_but_keeps_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    redaction.install([handler])
    log = logging.getLogger("t2ctl.test.redaction")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    redaction.protect(["my-configured-client-secret"])
    try:
        log.warning("customer %s phone %s / %s", EMAIL, PHONE, "08031234567")
        log.warning("call 2348031234567 or 09011112222. Item Microsoft 365 Basic (M365-BASIC-12M)")
        log.warning("order ORD-08099998888 for 12.5 units, 2026-11-27T10:00:00.123456+01:00")
        log.warning("key %s and %s", "t2k_0a1b2c3d4e5f_Zm9vYmFyYmF6cXV4", "whsec_c2VjcmV0c2VjcmV0")
        log.warning("POST /oauth/v2/token?refresh_token=1000.r&client_secret=x&grant_type=r")
        log.warning('{"access_token": "1000.%s.%s"}', "a" * 32, "b" * 32)
        log.warning("header Authorization: Bearer abc.def and postgresql://t2:pw@db/t2")
        log.warning("the client secret is my-configured-client-secret")
        log.debug("GET /inventory/v1/contacts?email=ada%40example.ng HTTP/1.1 200")  # urllib3
        try:
            raise RuntimeError(f"refused for {EMAIL} with token gAAAAAB{'x' * 40}")
        except RuntimeError:
            log.exception("order T2-20261127-000123 job 42 sales order 4815000000044080 failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    for raw in (
        EMAIL,
        PHONE,
        "08031234567",
        "Zm9vYmFyYmF6cXV4",
        "c2VjcmV0c2VjcmV0",
        "1000.r",
        "client_secret=x",
        "a" * 32,
        "abc.def",
        ":pw@",
        "my-configured-client-secret",
        "x" * 40,
        "2348031234567",
        "09011112222",
        "ada%40example.ng",
    ):
        assert raw not in text, f"{raw!r} reached the log:\n{text}"
    for kept in (
        "a***@example.ng",
        "+234*******567",
        "t2k_0a1b2c3d4e5f_***",  # the key id stays: the log still says which key
        "T2-20261127-000123 job 42 sales order 4815000000044080",
        "RuntimeError: refused for a***@example.ng",
        "Microsoft 365 Basic (M365-BASIC-12M)",
        "order ORD-08099998888 for 12.5 units, 2026-11-27T10:00:00.123456+01:00",
    ):
        assert kept in text, f"{kept!r} missing from:\n{text}"


def database_text(settings: Settings) -> bytes:
    """Everything the database holds: the SQLite file's raw bytes (and its WAL); on
    Postgres, whose files are the server's, every row of every table as text."""
    if settings.database.is_sqlite:
        path = settings.database.sqlite_path
        return b"".join(
            p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
        )
    tables = db.database.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()
    rows = [
        row[0]
        for (table,) in tables
        for row in db.database.execute_sql(f'SELECT t::text FROM "{table}" t').fetchall()
    ]
    return "\n".join(rows).encode()


def zoho_and_tls(zoho: ZohoEnv, ca_file: Path) -> str:
    """Config sections: Zoho at its stand-in, and webhooks to the TLS receiver on loopback."""
    return (
        zoho.config_toml(requests_per_minute=100)
        + '\n[webhooks]\nallow_private_networks = ["127.0.0.0/8", "::1/128"]\n'
        + f'ca_file = "{ca_file}"\n'
    )


def test_a_zoho_flow_leaves_no_secret_or_contact_in_logs_or_the_database(
    zoho: ZohoEnv, tls_hook: tuple[Hook, Path], tmp_path: Path
) -> None:
    hook, ca_file = tls_hook
    settings = zoho.settings
    config = write_config(tmp_path / "config.toml", settings, zoho_and_tls(zoho, ca_file))
    logs: list[str] = []

    def t2ctl(*args: str) -> str:
        done = run(tmp_path, "--config", str(config), *args)
        assert done.returncode == 0, done.stderr
        logs.append(done.stderr)
        return done.stdout

    revealed = json.loads(t2ctl("partners", "add", "acme", "--webhook-url", hook.url, "--json"))
    rotated = json.loads(t2ctl("keys", "rotate", "--partner", "acme", "--grace", "1h", "--json"))
    secret = json.loads(
        t2ctl("secrets", "rotate-webhook", "--partner", "acme", "--grace", "1h", "--json")
    )["webhookSecret"]
    t2ctl("partners", "set", "acme", "--rate-limit", "1000/minute")
    logs.append(t2ctl("products", "sync"))
    logs.append(t2ctl("config", "check") + t2ctl("config", "show"))
    zoho.standin.fail(
        "POST",
        "/salesorders$",
        status=400,
        body={"code": 3062, "message": f"The email address {EMAIL} is not allowed"},
    )
    with serve(tmp_path, config, "--port", "0") as daemon:
        api = daemon.wait_for(re.compile(r"listening on (http://[\d.:]+)")).group(1)
        bodies = {
            "T2-LEAK-A": order_body("T2-LEAK-A"),
            "T2-LEAK-B": order_body(
                "T2-LEAK-B",
                customer={"id": "C-2", "name": "Ada Obi", "email": EMAIL, "phone": PHONE},
            ),
        }
        for body, headers in zip(
            bodies.values(),
            [
                {"Authorization": f"Bearer {revealed['apiKey']}"},
                {"X-API-Key": rotated["apiKey"]},
            ],
            strict=True,
        ):
            answer = requests.post(f"{api}/t2mobile/fulfilment", json=body, headers=headers)
            assert answer.status_code == 202, answer.text
        bogus = {"X-API-Key": rotated["apiKey"][:-4] + "AAAA"}
        assert requests.get(f"{api}/t2mobile/products", headers=bogus).status_code == 401
        outcome = {}
        key = {"X-API-Key": rotated["apiKey"]}

        def settled() -> bool:
            for order_id in bodies:
                outcome[order_id] = requests.get(
                    f"{api}/t2mobile/orders/{order_id}", headers=key
                ).json()
            done = all(o["status"] in ("FULFILLED", "FAILED") for o in outcome.values())
            return done and len(hook.received) >= 2

        wait_until(settled, timeout=60, what="both orders settled and announced")
        assert daemon.stop() == 0
    logs.append(daemon.log)
    # Zoho refused one sales order, quoting the customer's address: logged, and masked there.
    assert {o["status"] for o in outcome.values()} == {"FULFILLED", "FAILED"}
    assert "refused by Zoho" in daemon.log and "a***@example.ng" in daemon.log
    for got in hook.received:
        Webhook(secret).verify(got.body, got.headers)
    logs.append(t2ctl("orders", "list") + t2ctl("orders", "show", "T2-LEAK-B"))
    logs.append(t2ctl("webhooks", "list") + t2ctl("audit", "list"))

    stored = database_text(settings)
    assert b"T2-LEAK-B" in stored and ZohoToken.select().count() == 1, "the scan sees the data"
    encrypted = {(column.model, column.name) for _, column in atrest.ENCRYPTED}
    holding_tokens = {
        (model, field.name)
        for model in [*MODELS, *job_models.MODELS]
        for field in model._meta.sorted_fields
        if isinstance(field, peewee.TextField | peewee.CharField)
        and model.select().where(field.startswith("gAAAAA")).exists()
    }
    assert holding_tokens == encrypted, "every encrypted column is listed for rotation"
    said = "\n".join(logs)
    needles = {
        "first API key": revealed["apiKey"],
        "rotated API key": rotated["apiKey"],
        # t2k_<hex id>_<secret>: the secret is urlsafe base64 and may itself hold a "_"
        "API key secret part": revealed["apiKey"].split("_", 2)[2],
        "first webhook secret": revealed["webhookSecret"],
        "webhook secret, base64": revealed["webhookSecret"].removeprefix("whsec_"),
        "rotated webhook secret": secret,
        "refresh token": zoho.standin.refresh_token,
        "client secret": zoho.standin.client_secret,
        "master key": settings.security.master_keys[0],
        "customer email": EMAIL,
        "other customer email": order_body()["customer"]["email"],
        "customer phone": PHONE,
    }
    for what, needle in needles.items():
        assert needle not in said, f"the {what} reached a log or a table"
        assert needle.encode() not in stored, f"the {what} is in the database in plain"


def keys_config(path: Path, settings: Settings, keys: list[str], extra: str) -> Path:
    """A config file for ``settings``' database under the master key list ``keys``."""
    config = write_config(path, settings, extra)
    text = config.read_text()
    old = settings.security.master_key.get_secret_value()
    config.write_text(text.replace(f'master_key = "{old}"', f'master_key = "{",".join(keys)}"'))
    return config


def opened_by(box: SecretBox) -> tuple[int, int]:
    """(how many stored tokens ``box`` opens, how many there are), over every encrypted
    column."""
    opened = stored = 0
    for _, column in atrest.ENCRYPTED:
        for (token,) in column.model.select(column).where(column.is_null(False)).tuples():
            stored += 1
            try:
                box.decrypt(token)
                opened += 1
            except Undecryptable:
                pass
    return opened, stored


def test_a_master_key_rotation_leaves_everything_readable_under_the_new_key_alone(
    zoho: ZohoEnv, tls_hook: tuple[Hook, Path], tmp_path: Path
) -> None:
    hook, ca_file = tls_hook
    settings = zoho.settings
    old = settings.security.master_keys[0]
    new = Fernet.generate_key().decode()
    extra = zoho_and_tls(zoho, ca_file)

    def t2ctl(keys: list[str], *args: str):
        config = keys_config(tmp_path / "config.toml", settings, keys, extra)
        return run(tmp_path, "--config", str(config), *args)

    added = t2ctl([old], "partners", "add", "acme", "--webhook-url", hook.url, "--json")
    assert added.returncode == 0, added.stderr
    added = json.loads(added.stdout)
    grace = t2ctl([old], "secrets", "rotate-webhook", "--partner", "acme", "--grace", "1d")
    assert grace.returncode == 0, grace.stderr
    config = keys_config(tmp_path / "config.toml", settings, [old], extra)
    with serve(tmp_path, config, "--port", "0") as daemon:
        api = daemon.wait_for(re.compile(r"listening on (http://[\d.:]+)")).group(1)
        key = {"X-API-Key": added["apiKey"]}
        assert requests.post(f"{api}/t2mobile/fulfilment", json=order_body("T2-R1"), headers=key)
        wait_until(lambda: Order.get().status == "FULFILLED", what="the first order FULFILLED")
        assert daemon.stop() == 0
    assert opened_by(SecretBox([old])) == (5, 5)  # email, phone, 2 webhook secrets, token

    one = t2ctl([old], "secrets", "rotate-master-key")
    assert one.returncode == 1 and "put a new key in front" in one.stderr
    rotated = t2ctl([new, old], "secrets", "rotate-master-key", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout) == {
        "partner webhook secret": 1,
        "retired webhook secret": 1,
        "Zoho access token": 1,
        "customer email": 1,
        "customer phone": 1,
    }
    assert opened_by(SecretBox([new])) == (5, 5)
    assert opened_by(SecretBox([old])) == (0, 5), "every token is rewritten under the new key"
    (event,) = AuditEvent.select().where(AuditEvent.action == "secrets.rotate-master-key")
    assert event.details["customer email"] == 1

    config = keys_config(tmp_path / "config.toml", settings, [new], extra)
    with serve(tmp_path, config, "--port", "0") as daemon:  # the old key is gone
        api = daemon.wait_for(re.compile(r"listening on (http://[\d.:]+)")).group(1)
        key = {"X-API-Key": added["apiKey"]}
        assert requests.post(f"{api}/t2mobile/fulfilment", json=order_body("T2-R2"), headers=key)
        wait_until(
            lambda: (
                len(hook.received) >= 2
                and Order.select().where(Order.status == "FULFILLED").count() == 2
            ),
            what="the second order FULFILLED and both announced",
        )
        assert daemon.stop() == 0
    shown = t2ctl([new], "orders", "show", "T2-R2")
    assert shown.returncode == 0 and "a***@example.ng" in shown.stdout
    for got in hook.received:  # signed with the stored secrets, decrypted under the new key
        Webhook(added["webhookSecret"]).verify(got.body, got.headers)

    for keys in ([Fernet.generate_key().decode()], [old]):
        refused = t2ctl(keys, "serve", "--port", "0")
        assert refused.returncode == 1
        assert "refusing to start" in refused.stderr and "cannot be decrypted" in refused.stderr
        assert "security.master_key" in refused.stderr and "rotate-master-key" in refused.stderr
        assert old not in refused.stderr and new not in refused.stderr


def test_rotation_pages_through_many_rows_and_a_foreign_token_rolls_it_all_back(
    server: LiveServer, catalogue: list
) -> None:
    """In-process, with pages of two rows: seven orders (each an email, five a phone) and
    the partner's secret. A token no key opens stops the rotation, and nothing is changed."""
    no_phone = {k: v for k, v in order_body()["customer"].items() if k != "phone"}
    http = submit(
        server,
        *[order_body(f"T2-P{n}", customer=no_phone) for n in (1, 2)],
        *[order_body(f"T2-P{n}") for n in range(3, 8)],
    )
    assert http.get(server.endpoint("/orders/T2-P7")).status_code == 200
    old = server.settings.security.master_keys[0]
    new = Fernet.generate_key().decode()
    counts = atrest.rotate(SecretBox([new, old]), batch=2)
    assert counts["customer email"] == 7 and counts["customer phone"] == 5
    assert counts["partner webhook secret"] == 1
    assert opened_by(SecretBox([new])) == (13, 13)

    stranger = SecretBox([Fernet.generate_key().decode()]).encrypt("x@example.ng")
    Order.update(customer_email=stranger).where(Order.order_id == "T2-P7").execute()
    before = list(Order.select(Order.customer_email).order_by(Order.id).tuples())
    with pytest.raises(T2Error, match=r"customer email of row \d+ cannot be decrypted"):
        atrest.rotate(SecretBox([Fernet.generate_key().decode(), new]), batch=2)
    assert list(Order.select(Order.customer_email).order_by(Order.id).tuples()) == before
    with pytest.raises(T2Error, match="configure the key it was encrypted with"):
        atrest.check(SecretBox([new]))  # the newest order is among those checked
