"""A partner's webhook receiver as tests need it: over real HTTP on loopback, it records every
request as it arrived (raw body and headers) and answers as the test tells it to."""

import datetime as dt
import ipaddress
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, make_server

from t2ctl import sandbox

PATH = "/hooks"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str
    peer: str = ""  # the sender's address and port: one per connection

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class Hook:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self.url = ""

    def answer(self, status: int, *, times: int = 1, body: str = "", **headers: str) -> None:
        """The next ``times`` requests get this answer; after them, 204."""
        with self._lock:
            self._answers.extend(Answer(status, headers, body) for _ in range(times))

    def app(self) -> Flask:
        app = Flask("hook")

        @app.route("/<path:path>", methods=["GET", "POST"])
        def receive(path: str) -> Response:
            headers = {name.lower(): value for name, value in request.headers.items()}
            peer = f"{request.remote_addr}:{request.environ.get('REMOTE_PORT')}"
            got = Received(f"/{path}", headers, request.get_data(as_text=True), peer)
            with self._lock:
                self.received.append(got)
                answer = self._answers.popleft() if self._answers else Answer(204)
            return Response(answer.body, status=answer.status, headers=answer.headers)

        return app


def running_hook() -> tuple[Hook, sandbox.Running]:
    hook = Hook()
    running = sandbox.in_background(hook.app())
    hook.url = running.url + PATH
    return hook, running


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 signed by its own key, written to
    ``directory``: its path (the CA to trust) and its key's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "hook.pem", directory / "hook.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsReceiver:
    """``hook`` served over TLS at ``hook.url``; ``stop()`` takes it down (connections are
    refused) and ``start()`` brings it back on the same port."""

    def __init__(self, hook: Hook, ca_file: Path, key_file: Path):
        self.hook = hook
        self.ca_file = ca_file
        self.key_file = key_file
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = make_server(
            "127.0.0.1",
            self.port,
            self.hook.app(),
            threaded=True,
            ssl_context=(str(self.ca_file), str(self.key_file)),
        )
        self.port = self._server.port
        self.hook.url = f"https://localhost:{self.port}{PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
