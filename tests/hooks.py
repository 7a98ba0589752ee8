"""A partner's webhook receiver as tests need it: over real HTTP on loopback, it records every
request as it arrived (raw body and headers) and answers as the test tells it to."""

import threading
from collections import deque
from dataclasses import dataclass, field

from flask import Flask, Response, request

from t2ctl import sandbox

PATH = "/hooks"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str

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
            got = Received(f"/{path}", headers, request.get_data(as_text=True))
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
