"""Hostile connections against a real ``t2ctl serve``, over raw sockets: idle and slow
clients do not lock others out, slow requests are cut off, oversized headers are refused.

Each test prints its figures (``pytest -s`` shows them): the connections held open, how long
the other client waited for its answer, and how long the slow ones lasted.
"""

import json
import logging
import re
import resource
import select
import selectors
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from cryptography.fernet import Fernet
from waitress import wasyncore

from t2ctl import httpserver
from t2ctl.config import ServerSettings
from tests.processes import LISTENING, Daemon, serve

LIMIT = 50
IDLE_TIMEOUT = 3  # where the idle timeout is tested; elsewhere it is long, out of the way
READ_TIMEOUT = 2
MAX_HEADER_BYTES = 4096
PROMPT = 5.0  # a generous bound on "answered promptly"; the figures printed are the real ones
LATE = 2.5  # how late a timeout may act: the server checks twice a second, on a busy machine
METRICS = re.compile(r"metrics on (http://\S+/metrics)")


def start(
    cwd: Path, *, limit: int = LIMIT, idle_timeout: int = 60, database: str | None = None
) -> Daemon:
    lines = [
        "[server]",
        f"connection_limit = {limit}",
        f'idle_timeout = "{idle_timeout}s"',
        f'read_timeout = "{READ_TIMEOUT}s"',
        f"max_header_bytes = {MAX_HEADER_BYTES}",
    ]
    if database is not None:
        lines += ["[database]", f'url = "{database}"', "[security]"]
        lines += [f'master_key = "{Fernet.generate_key().decode()}"']
    config = cwd / "config.toml"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    return serve(cwd, config, "--port", "0")


def address(daemon: Daemon) -> tuple[str, int]:
    parts = urlsplit(daemon.wait_for(LISTENING).group(1))
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def timed_get(daemon: Daemon, path: str = "/t2mobile/health") -> tuple[requests.Response, float]:
    host, port = address(daemon)
    began = time.monotonic()
    response = requests.get(f"http://{host}:{port}{path}", timeout=30)
    return response, time.monotonic() - began


def closed_by_metric(daemon: Daemon, reason: str) -> float:
    text = requests.get(daemon.wait_for(METRICS).group(1), timeout=5).text
    series = rf'^t2ctl_http_connections_closed_total{{reason="{reason}"}} (\S+)$'
    found = re.search(series, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@contextmanager
def connections(daemon: Daemon, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send nothing, closed on the way out."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(address(daemon), timeout=10))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed(socks: list[socket.socket], *, within: float) -> int:
    """How many of ``socks`` the server has closed, waiting up to ``within`` seconds."""
    gone = 0
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(deadline - time.monotonic(), 0)):
                if _drained(key.fileobj):
                    selector.unregister(key.fileobj)
                    gone += 1
    return gone


def _drained(sock) -> bool:
    try:
        return sock.recv(65536) == b""
    except OSError:  # reset
        return True


class Dribble:
    """Slow clients: each sends ``head`` at once, then one byte every ``every`` seconds until
    the server answers or closes. Records when each was cut off, and what it was told."""

    def __init__(self, socks: list[socket.socket], head: bytes, every: float = 0.25):
        self.socks, self.head, self.every = socks, head, every
        self.began: dict[socket.socket, float] = {}
        self.lasted: dict[socket.socket, float] = {}
        self.answers: dict[socket.socket, bytes] = {sock: b"" for sock in socks}

    def run(self, *, give_up: float, meanwhile=None) -> None:
        """Dribble until every connection is cut off or ``give_up`` seconds have passed;
        ``meanwhile()`` is called once, when every head has been sent."""
        with selectors.DefaultSelector() as selector:
            for sock in self.socks:
                sock.setblocking(False)
                sock.send(self.head)
                self.began[sock] = time.monotonic()
                selector.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + give_up
            while selector.get_map() and time.monotonic() < deadline:
                self._listen(selector)
                if meanwhile is not None:
                    meanwhile()
                    meanwhile = None
                for sock in [k.fileobj for k in selector.get_map().values()]:
                    if not self.answers[sock]:  # once answered, only read the rest
                        self._send(selector, sock)

    def _listen(self, selector: selectors.BaseSelector) -> None:
        for key, _ in selector.select(timeout=self.every):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            self.answers[sock] += data
            if not data:
                self._cut(selector, sock)

    def _send(self, selector: selectors.BaseSelector, sock) -> None:
        try:
            sock.send(b"a")
        except BlockingIOError:
            pass
        except OSError:
            self._cut(selector, sock)

    def _cut(self, selector: selectors.BaseSelector, sock) -> None:
        self.lasted[sock] = time.monotonic() - self.began[sock]
        selector.unregister(sock)

    def longest(self) -> float:
        return max(self.lasted.values())


def status_and_body(answer: bytes) -> tuple[int, str, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("content-type", ""), json.loads(body)


def test_many_idle_connections_over_the_limit_do_not_lock_others_out(tmp_path: Path) -> None:
    with start(tmp_path) as daemon, connections(daemon, 4 * LIMIT) as idle:
        response, waited = timed_get(daemon)
        assert response.status_code == 200
        assert waited < PROMPT
        shed = closed(idle, within=0.5)
        assert shed >= 3 * LIMIT  # the server holds at most LIMIT of them
        assert closed_by_metric(daemon, "idle") >= 3 * LIMIT
        assert any(r.get("action") == "connections_closed" for r in daemon.records)
        print(f"\n{len(idle)} idle, limit {LIMIT}: health in {waited:.3f}s, {shed} shed")


def test_more_than_1024_connections_are_served(tmp_path: Path) -> None:
    """poll(), not select(): a socket numbered over 1024 is served like any other."""
    count = 1200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 200:  # this test's own sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    with start(tmp_path, limit=1500) as daemon, connections(daemon, count) as idle:
        response, waited = timed_get(daemon)
        assert response.status_code == 200 and waited < PROMPT
        files = len(list(Path(f"/proc/{daemon.proc.pid}/fd").iterdir()))
        assert files > count > 1024
        assert closed(idle, within=0.2) == 0  # under its limit, the server keeps them all
        print(f"\n{count} idle connections ({files} open files): health in {waited:.3f}s")


def test_a_slow_loris_is_cut_off_and_others_are_answered_meanwhile(tmp_path: Path) -> None:
    count = LIMIT + 30
    head = b"GET /t2mobile/health HTTP/1.1\r\nHost: t2ctl\r\nX-Slow: "
    with start(tmp_path) as daemon, connections(daemon, count) as socks:
        slow = Dribble(socks, head)
        with ThreadPoolExecutor(max_workers=1) as other:
            asked = []  # once the slow ones hold their connections, while they go on
            slow.run(
                give_up=3 * READ_TIMEOUT + 10,
                meanwhile=lambda: asked.append(other.submit(timed_get, daemon)),
            )
            response, waited = asked[0].result()
        assert response.status_code == 200 and waited < PROMPT
        assert len(slow.lasted) == count, "every slow connection is cut off"
        # Over the limit, the oldest are shed to let the rest in: those wait in the listen
        # queue for at most SLOW_GRACE, then get READ_TIMEOUT of their own.
        assert slow.longest() < READ_TIMEOUT + httpserver.SLOW_GRACE + LATE
        timed_out = [a for a in slow.answers.values() if a]
        assert timed_out and all(status_and_body(a)[0] == 408 for a in timed_out)
        print(
            f"\n{count} slow-loris connections, limit {LIMIT}: health in {waited:.3f}s, "
            f"all cut off within {slow.longest():.2f}s ({len(timed_out)} told 408)"
        )


def test_a_slowly_sent_body_is_cut_off_with_408(tmp_path: Path) -> None:
    head = (
        b"POST /t2mobile/fulfilment HTTP/1.1\r\nHost: t2ctl\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000\r\n\r\n{"
    )
    with start(tmp_path) as daemon, connections(daemon, 5) as socks:
        slow = Dribble(socks, head)
        slow.run(give_up=READ_TIMEOUT + 10)
        assert len(slow.lasted) == len(socks)
        assert min(slow.lasted.values()) >= READ_TIMEOUT
        assert slow.longest() < READ_TIMEOUT + LATE
        for answer in slow.answers.values():
            status, media, body = status_and_body(answer)
            assert (status, media) == (408, "application/problem+json")
            assert body["detail"] == f"the request did not arrive within {READ_TIMEOUT}s"
        assert closed_by_metric(daemon, "read_timeout") == len(socks)
        print(f"\n{len(socks)} slow bodies: cut off after {slow.longest():.2f}s")


@pytest.mark.parametrize(
    ("request_bytes", "status", "slug"),
    [
        (
            b"GET /t2mobile/health HTTP/1.1\r\nHost: t2ctl\r\nX-Big: "
            + b"a" * (2 * MAX_HEADER_BYTES)
            + b"\r\n\r\n",
            431,
            "headers-too-large",
        ),
        (
            b"POST /t2mobile/fulfilment HTTP/1.1\r\nHost: t2ctl\r\nContent-Length: "
            + str(httpserver.TRANSPORT_BODY_LIMIT + 1).encode()
            + b"\r\n\r\n{",
            413,
            "payload-too-large",
        ),
        (
            b"GET /t2mobile/orders HTTP/1.1\r\n Authorization: Bearer t2k_a_b\r\n\r\n",
            400,
            "malformed-request",
        ),
    ],
    ids=["headers", "body", "malformed"],
)
def test_requests_the_server_refuses_get_a_problem_at_once(
    tmp_path: Path, request_bytes: bytes, status: int, slug: str
) -> None:
    """Headers over server.max_header_bytes, a body announced over the transport's cap (the
    API answers 413 itself from 64 KiB), a malformed header line (not echoed: it may hold a
    key): a problem, and the connection closed cleanly."""
    with start(tmp_path) as daemon, connections(daemon, 1) as (sock,):
        began = time.monotonic()
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):  # a reset would raise: the server lingers instead
            answer += chunk
        took = time.monotonic() - began
    assert status_and_body(answer)[:2] == (status, "application/problem+json")
    assert status_and_body(answer)[2]["type"] == f"urn:t2ctl:problem:{slug}"
    assert b"t2k_" not in answer
    assert took < PROMPT
    print(f"\n{len(request_bytes)} bytes sent: {status} and closed in {took:.3f}s")


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with start(tmp_path, idle_timeout=IDLE_TIMEOUT) as daemon, connections(daemon, 1) as (sock,):
        sock.sendall(b"GET /t2mobile/health/live HTTP/1.1\r\nHost: t2ctl\r\n\r\n")
        answer = sock.recv(65536)
        answered = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert closed([sock], within=IDLE_TIMEOUT + LATE) == 1
        idle = time.monotonic() - answered
    assert IDLE_TIMEOUT <= idle < IDLE_TIMEOUT + LATE
    print(f"\nkeep-alive connection closed after {idle:.2f}s idle")


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_request_in_flight_is_never_shed(tmp_path: Path, db_url: str) -> None:
    """A health check stalled on a locked table is in the app's hands while idle connections
    flood in past the limit: they are shed, it is answered once the lock goes."""
    with start(tmp_path, database=db_url) as daemon:
        with psycopg.connect(db_url) as locker:
            locker.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")
            stalled = socket.create_connection(address(daemon), timeout=30)
            stalled.sendall(b"GET /t2mobile/health HTTP/1.1\r\nHost: t2ctl\r\n\r\n")
            with connections(daemon, 4 * LIMIT) as idle:
                _, waited = timed_get(daemon, "/t2mobile/health/live")
                shed = closed(idle, within=0.5)
            unanswered, _, _ = select.select([stalled], [], [], 0)
            assert not unanswered, "still waiting for the lock, and not closed"
            released = time.monotonic()
        answer = stalled.recv(65536)  # the lock went with its transaction
        stalled.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert shed >= 3 * LIMIT and waited < PROMPT
    print(
        f"\n{len(idle)} idle, limit {LIMIT}, one request in flight: live in {waited:.3f}s, "
        f"{shed} shed; the stalled one answered {time.monotonic() - released:.3f}s after the lock"
    )


def test_the_daemon_fits_its_open_file_limit_to_its_connection_limit(tmp_path: Path) -> None:
    """Each connection is an open file: a low soft limit is raised to fit the default limit of
    1000 connections; a hard limit too low for it (systemd's LimitNOFILE) lowers the number of
    connections served, and the log says so, rather than accept() failing under load."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 1000 + httpserver.RESERVED_FILES

    def files(soft: int, hard: int):
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with Daemon(tmp_path, "serve", "--port", "0", preexec=files(600, hard)) as daemon:
        daemon.wait_for(LISTENING)
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.MULTILINE).group(1))
    assert soft == (needed if hard == resource.RLIM_INFINITY else min(needed, hard))
    with Daemon(tmp_path, "serve", "--port", "0", preexec=files(600, 600)) as daemon:
        daemon.wait_for(LISTENING)
        warning = f"needs {needed} open files but this process may open 600 (raise LimitNOFILE)"
        assert warning in daemon.log
        assert f"serving at most {600 - httpserver.RESERVED_FILES} connections" in daemon.log


def test_at_the_limit_nothing_is_closed_while_nobody_waits_to_connect(tmp_path: Path) -> None:
    """Shedding makes room for a client that waits; with none waiting, the limit's idle
    connections are left alone."""
    with start(tmp_path) as daemon, connections(daemon, LIMIT) as idle:
        assert closed(idle, within=1.5) == 0
        with connections(daemon, 1) as (newcomer,):
            newcomer.sendall(b"GET /t2mobile/health/live HTTP/1.1\r\nHost: t2ctl\r\n\r\n")
            assert newcomer.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert closed(idle, within=0.5) >= 1


def test_refused_connections_lingering_are_closed_first_to_make_room(tmp_path: Path) -> None:
    """Clients refused 431 that keep their sockets open hold them for up to ``LINGER`` (the
    server reads and drops what they still send); at the limit they are closed before
    anything else, their answer already sent, so a newcomer does not wait out the linger."""
    oversized = b"GET /t2mobile/health HTTP/1.1\r\nHost: t2ctl\r\nX-Big: " + b"a" * 5000
    with start(tmp_path) as daemon, connections(daemon, LIMIT) as refused:
        for sock in refused:
            sock.sendall(oversized + b"\r\n\r\n")
        for sock in refused:  # each told 431, and its socket left open by the client
            assert sock.recv(65536).split(b"\r\n")[0].startswith(b"HTTP/1.0 431 ")
        response, waited = timed_get(daemon, "/t2mobile/health/live")
    assert response.status_code == 200
    assert waited < httpserver.LINGER / 2, "the newcomer waited for a linger to end"
    print(f"\n{LIMIT} refused and lingering at the limit: live in {waited:.3f}s")


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_sigterm_stops_accepting_at_once_and_finishes_the_request_in_flight(
    tmp_path: Path, db_url: str
) -> None:
    """On SIGTERM the listener closes before the drain: a new client is refused, not accepted
    into a queue nobody serves, while the request in flight still gets its answer."""
    with start(tmp_path, database=db_url) as daemon:
        host, port = address(daemon)
        with psycopg.connect(db_url) as locker:
            locker.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")
            stalled = socket.create_connection((host, port), timeout=30)
            stalled.sendall(b"GET /t2mobile/health HTTP/1.1\r\nHost: t2ctl\r\n\r\n")
            time.sleep(0.5)  # in the app's hands, waiting for the lock
            daemon.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and "received" not in daemon.log:
                time.sleep(0.05)
            time.sleep(0.3)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, port), timeout=5).close()
        answer = stalled.recv(65536)  # the lock went with its transaction
        stalled.close()
        assert daemon.proc.wait(timeout=30) == 0
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_an_idle_connection_whose_next_request_has_arrived_is_not_shed() -> None:
    """ "Idle" is judged before the loop reads: a keep-alive connection whose next request
    waits unread in its socket is passed over, or closing it would reset that request."""

    def app(_environ, start_response):
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    settings = ServerSettings(connection_limit=2)
    server = httpserver.build(app, settings, host="127.0.0.1", port=0)
    try:
        first, second = (
            socket.create_connection(("127.0.0.1", server.effective_port)) for _ in range(2)
        )
        while len(server.active_channels) < 2:  # accepted, nothing read
            wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
        first.sendall(b"GET / HTTP/1.1\r\nHost: t2ctl\r\n\r\n")
        time.sleep(httpserver.IDLE_GRACE + 0.1)  # both look idle by their last activity
        assert server.make_room(time.time()) == 1
        by_peer = {c.addr[1]: c for c in server.active_channels.values()}
        assert not by_peer[first.getsockname()[1]].will_close
        assert by_peer[second.getsockname()[1]].will_close
        first.close()
        second.close()
    finally:
        server.close()
        server.task_dispatcher.shutdown()


def test_requests_waiting_for_a_thread_are_summed_in_one_line_not_one_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Waitress warns "Task queue depth is N" for every request that finds every thread
    busy: under a burst, a line a request. The server sums them into one line."""
    release = threading.Event()

    def app(_environ, start_response):
        release.wait(10)
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = httpserver.build(app, ServerSettings(threads=1), host="127.0.0.1", port=0)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    url = f"http://127.0.0.1:{server.effective_port}/"
    try:
        with caplog.at_level("WARNING"), ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(requests.get, url, timeout=20) for _ in range(6)]
            deadline = time.monotonic() + PROMPT
            while len(server.task_dispatcher.queue) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)  # one request on the only thread, five waiting
            release.set()
            assert [answer.result().status_code for answer in answers] == [200] * 6
            summed: list[logging.LogRecord] = []
            while not summed and time.monotonic() < deadline + PROMPT:  # the loop's next check
                time.sleep(0.05)
                summed = [
                    r for r in caplog.records if r.__dict__.get("action") == "requests_queued"
                ]
    finally:
        server.close()
        server.task_dispatcher.shutdown()
    assert not [r for r in caplog.records if r.name == "waitress.queue"]
    assert len(summed) == 1, "five waits, one line"
    assert (summed[0].waits, summed[0].deepest) == (5, 5)  # type: ignore[attr-defined]
