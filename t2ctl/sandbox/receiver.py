"""A webhook receiver that verifies Standard Webhooks signatures, as T2Mobile's would.

It checks each delivery with the ``standardwebhooks`` library (not with t2ctl's own signing
code), answers 204 to a good one and 401 to a bad one, and reports each through ``echo``.
"""

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

PATH = "/hooks"


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    event: str
    verified: bool
    body: dict[str, Any] | None


class Receiver:
    def __init__(self, secrets: list[str], *, echo: Callable[[Delivery], None] | None = None):
        self.verifiers = [Webhook(secret) for secret in secrets]
        self.echo = echo
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()

    def register(self, app: Flask) -> None:
        app.add_url_rule(PATH, "receiver", self._receive, methods=["POST"])
        app.add_url_rule(f"{PATH}/<path:_rest>", "receiver_sub", self._receive, methods=["POST"])

    def _receive(self, _rest: str = "") -> Response:
        data = request.get_data(as_text=True)
        headers = dict(request.headers)
        verified = any(self._verifies(verifier, data, headers) for verifier in self.verifiers)
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        event = body.get("type", "?") if isinstance(body, dict) else "?"
        delivery = Delivery(request.headers.get("webhook-id", "?"), event, verified, body)
        with self.lock:
            self.deliveries.append(delivery)
        if self.echo is not None:
            self.echo(delivery)
        return Response(status=204 if verified else 401)

    @staticmethod
    def _verifies(verifier: Webhook, data: str, headers: dict[str, str]) -> bool:
        try:
            verifier.verify(data, headers)
        except WebhookVerificationError:
            return False
        return True
