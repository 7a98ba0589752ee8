"""The HTTP server of the partner API: waitress, made to keep answering on the internet.

Waitress alone stops accepting once ``connection_limit`` sockets are open and closes a socket
only after two minutes of silence, so idle keep-alive clients, a slow-loris or many customers
behind one NAT lock every other caller out; and a client that sends a byte every few seconds is
never silent long enough to be cut off. This server, built the one way by ``build``:

- closes a connection silent for ``server.idle_timeout`` (between requests or within one);
- answers 408 and closes a connection whose request has been arriving for longer than
  ``server.read_timeout``, however steadily it trickles in (slow headers or slow body);
- at ``server.connection_limit`` makes room instead of refusing everyone: it closes the
  connections doing nothing useful, oldest first: idle ones (silent for ``IDLE_GRACE``),
  then those sending a request for longer than ``SLOW_GRACE``; never one whose request the
  app is handling or whose response is still being sent;
- answers its own refusals (headers over ``server.max_header_bytes``: 431, a malformed request:
  400, a body over ``TRANSPORT_BODY_LIMIT``: 413) in problem+json, as the API answers;
- waits on ``poll()``, not ``select()``, so more than 1024 sockets work, and raises the
  process's open-file limit to fit the connection limit.

The checks and the shedding run on waitress's event-loop thread, the only one that reads from
sockets and creates requests: a channel found with no request queued cannot gain one, or be
handed to a worker thread, until this thread reads again. Worker threads only run the app and
write answers.
"""

import contextlib
import itertools
import json
import logging
import resource
import select
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from t2ctl import clock, errors
from t2ctl.config import ServerSettings

logger = logging.getLogger(__name__)

# Waitress's own cap on a request body. The API refuses bodies over 64 KiB itself (413
# problem+json, CONTRACT); this cap only bounds what a client can make the server buffer, and
# must stay above the API's so that the API, not the transport, gives that answer.
TRANSPORT_BODY_LIMIT = 1024 * 1024
# At the connection limit, a connection silent for IDLE_GRACE, or sending one request for
# SLOW_GRACE, may be closed to make room. Not at once: one just accepted may not have been
# read yet (a client sends its request with the handshake's last packet), and a request on a
# slow link takes a moment.
IDLE_GRACE = 0.25
SLOW_GRACE = 1.0
# At the limit, close enough connections to get this far below it, so that a flood of new
# connections is not met by one search of every channel each.
HEADROOM = 0.1
# How long a connection closed after a refusal goes on reading what the client still sends,
# and how much it reads at a time.
LINGER = 2.0
RECV_BYTES = 8192
# How often the timeouts are checked, and the loop wakes at least this often to check them
# (waitress's own wait, asyncore_loop_timeout, is a whole second).
CHECK_EVERY = 0.25
# Open files the process needs besides its client sockets: database files, the listeners,
# outbound calls to Zoho and partners, temporary files of large bodies, logs.
RESERVED_FILES = 256
# Warnings about closed connections are summed over this many seconds: one line, not a flood.
LOG_EVERY = 10.0

# Why a connection was closed to protect the server: the label of the metric.
Observer = Callable[[str, int], None]
IDLE, SLOW, READ_TIMEOUT = "idle", "slow", "read_timeout"


def problem(status: int, title: str, detail: str, **extra: Any) -> bytes:
    """The body of a refusal, as the API writes its problems."""
    slug = errors.HTTP_SLUGS.get(status, "http-error")
    return json.dumps(errors.problem(status, slug, title, detail, **extra)).encode()


def _internal_error(cause: str) -> bytes:
    """A 500 with an ``errorId`` that the log holds beside the cause, never the cause itself."""
    error_id = uuid.uuid4().hex
    logger.error(
        "unhandled error %s: %s",
        error_id,
        cause,
        extra={"action": "unhandled_error", "error_id": error_id},
    )
    return json.dumps(errors.internal_problem(error_id)).encode()


class ProblemTask(ErrorTask):
    """Waitress's refusal of a request it could not parse, as problem+json."""

    def execute(self) -> None:
        """On a worker thread, as every waitress task; ``refused`` is read by the loop only
        once this answer is written."""
        error = self.request.error
        if error.code >= 500:  # the app failed while streaming: as the API answers a 500
            body = _internal_error(error.body)
        else:  # waitress quotes a malformed header line, which may hold a key: keep the words
            body = problem(error.code, error.reason, error.body.partition(' "')[0])
        self.status = f"{error.code} {error.reason}"
        self.channel.refused = True
        self.response_headers.append(("Content-Type", "application/problem+json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Lingering(wasyncore.dispatcher):
    """A connection closed after a refusal (408, 431, ...): the server has stopped sending,
    and reads and drops what the client still sends, for up to ``LINGER`` seconds. Closing at
    once, with the rest of the request unread, would send a reset that can destroy the
    refusal before the client reads it.

    It is a dispatcher of its own, on a duplicate of the channel's socket, rather than a state
    of ``Channel``: the loop asks every channel ``readable()`` and ``writable()`` on every pass,
    and overriding them there (for this rare case) cost a third of the API's throughput at 64
    clients, the loop's thread taking the GIL from the request threads."""

    def __init__(self, sock: socket.socket, server: "Server", now: float):
        self.server = server
        self.since = now
        self.expired = False
        super().__init__(sock, map=server._map)
        server.lingering.add(self)

    def readable(self) -> bool:
        return not self.expired

    def writable(self) -> bool:
        return self.expired  # then handle_write closes it, on the loop's pass

    def handle_read(self) -> None:
        with contextlib.suppress(BlockingIOError):  # nothing after all: a stale event
            self.recv(RECV_BYTES)  # dropped; on the client's close, closes

    def handle_write(self) -> None:
        self.close()

    def handle_close(self) -> None:
        self.close()

    def end(self) -> None:
        """Close on this loop pass. Not at once: the checks run while the loop registers
        sockets to poll, and a descriptor closed then may be reused by a connection accepted
        on the same pass, which would get this one's events."""
        self.expired = True

    def close(self) -> None:
        self.server.lingering.discard(self)
        super().close()


class Channel(HTTPChannel):
    """One client connection, knowing since when its current request has been arriving; one
    closed after a refusal lingers (``Lingering``)."""

    error_task_class = ProblemTask
    request: Any = None  # waitress's parser of the request arriving, as in HTTPChannel
    arriving_since: float | None = None  # time.time() of the current request's first byte
    _arriving: object = None  # the parser that time belongs to
    refused = False  # the answer sent is a refusal: linger on closing

    def received(self, data: bytes) -> bool:
        first_byte = time.time()
        result = super().received(data)
        if self.request is not self._arriving:  # a request completed, or a new one began
            self._arriving = self.request
            self.arriving_since = None if self.request is None else first_byte
        return result

    @property
    def busy(self) -> bool:
        """The app has a request of this connection, or its response is still being sent."""
        return bool(self.requests or self.total_outbufs_len)

    @property
    def closing(self) -> bool:
        return bool(self.will_close or self.close_when_flushed)

    def handle_close(self) -> None:
        if self.refused and not self.total_outbufs_len:
            self.refused = False
            try:
                self.socket.shutdown(socket.SHUT_WR)
                Lingering(self.socket.dup(), self.server, time.time())
            except OSError:  # the client is gone already
                pass
        super().handle_close()

    def time_out(self, detail: str) -> None:
        """Answer 408 to the request still arriving, and close once that is written."""
        body = problem(408, "Request Timeout", detail)
        head = (
            "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        with self.requests_lock:  # a worker finishing the previous request may read it
            if self.request is not None:
                self.request.close()  # its body buffer, perhaps a temporary file
                self.request = None
        with self.outbuf_lock:
            self.outbufs[-1].append(head.encode() + body)
            self.total_outbufs_len += len(head) + len(body)
        self.refused = True
        self.will_close = True  # flushed, then closed, on this loop pass


class Server(TcpWSGIServer):
    """Waitress's TCP server with the timeouts and the connection shedding described above."""

    channel_class = Channel

    def __init__(
        self,
        app,
        settings: ServerSettings,
        *,
        host: str,
        port: int,
        connection_limit: int,
        observer: Observer | None = None,
    ):
        self.limit = connection_limit
        self.lingering: set[Lingering] = set()  # they count against the limit until closed
        self.idle_timeout = settings.idle_timeout.total_seconds()
        self.read_timeout = settings.read_timeout.total_seconds()
        self.read_timeout_text = clock.format_duration(settings.read_timeout)
        self.tally = _Tally(observer)
        self.full = False
        self.told_full = False
        self.next_full_log = 0.0
        self.next_check = 0.0
        adj = Adjustments(
            host=host,
            port=port,
            threads=settings.threads,
            ident="t2ctl",
            max_request_header_size=settings.max_header_bytes,
            max_request_body_size=TRANSPORT_BODY_LIMIT,
            asyncore_use_poll=True,
            clear_untrusted_proxy_headers=False,  # the app judges them: t2ctl.api.proxies
        )
        # Adjustments takes whole seconds only. Its connection_limit and channel_timeout are
        # left alone: readable() and check() below stand in for the code that reads them.
        adj.asyncore_loop_timeout = CHECK_EVERY
        super().__init__(app, map={}, adj=adj, sockinfo=adj.listen[0])
        self.queued = _QueueWarnings(settings.threads)
        self.task_dispatcher.queue_logger = self.queued

    def readable(self) -> bool:
        """Called by the loop before each wait: check the timeouts, then say whether to accept
        (making room first at the limit)."""
        now = time.time()
        checking = now >= self.next_check
        if checking:
            self.next_check = now + CHECK_EVERY
            self.check(now)
        if not self.accepting:
            return False
        room = self.limit - self._open()
        # Full: make room when a client waits to connect, and look again at the next check.
        if room <= 0 and (checking or not self.full) and self._someone_waits():
            room += self.make_room(now)
        self._note_full(room <= 0, now)
        return room > 0

    def check(self, now: float) -> None:
        """Close the connections silent for ``idle_timeout``; time out the requests arriving
        for longer than ``read_timeout``."""
        for lingering in list(self.lingering):
            if now - lingering.since > LINGER:
                lingering.end()
        for channel in list(self.active_channels.values()):
            if channel.requests and channel.arriving_since is not None:
                # A next request arriving while the app serves this one is not read until
                # then: its clock starts when it can be.
                channel.arriving_since = now
            if channel.requests or channel.closing:
                continue
            since = channel.arriving_since
            if since is not None and now - since > self.read_timeout:
                channel.time_out(f"the request did not arrive within {self.read_timeout_text}")
                self.tally.add(READ_TIMEOUT, 1, now)
            elif now - channel.last_activity > self.idle_timeout:
                channel.will_close = True
        self.tally.flush(now)
        self.queued.flush(now)

    def make_room(self, now: float) -> int:
        """Close the connections whose refusal is already answered, then the idle ones,
        oldest first, then those slowly sending a request; return how many. Those the app is
        serving are never closed, nor one whose next request has arrived unread."""
        wanted = self._open() - self.limit + 1 + int(self.limit * HEADROOM)
        idle: list[Channel] = []
        slow: list[Channel] = []
        for channel in self.active_channels.values():
            if channel.busy or channel.closing:
                continue
            elif channel.arriving_since is None:
                if now - channel.last_activity > IDLE_GRACE:
                    idle.append(channel)
            elif now - channel.arriving_since > SLOW_GRACE:
                slow.append(channel)
        answered = [lingering for lingering in self.lingering if not lingering.expired][:wanted]
        for lingering in answered:
            lingering.end()
        wanted -= len(answered)
        idle.sort(key=lambda c: c.last_activity)
        slow.sort(key=lambda c: c.arriving_since or 0.0)
        shed_idle = list(itertools.islice(filter(_nothing_unread, idle), wanted))
        shed_slow = slow[: wanted - len(shed_idle)]
        for channel in shed_idle + shed_slow:
            channel.will_close = True  # writable now: the loop closes it on this pass
        self.tally.add(IDLE, len(shed_idle), now)
        self.tally.add(SLOW, len(shed_slow), now)
        return len(answered) + len(shed_idle) + len(shed_slow)

    def _open(self) -> int:
        """Connections held: the channels, and those lingering after a refusal."""
        return len(self.active_channels) + len(self.lingering)

    def _someone_waits(self) -> bool:
        """A client's connection is ready to be accepted (without accepting it)."""
        waiting = select.poll()
        waiting.register(self.socket, select.POLLIN)
        return bool(waiting.poll(0))

    def _note_full(self, full: bool, now: float) -> None:
        """Say when the server fills up and when it accepts again, at most a pair of lines
        every ``LOG_EVERY`` seconds: under a slow-loris it fills and sheds all the time."""
        if full and not self.full and now >= self.next_full_log:
            logger.warning(
                "all %d connections are in use and none may be closed yet: new connections wait",
                self.limit,
                extra={"action": "connections_full"},
            )
            self.told_full = True
            self.next_full_log = now + LOG_EVERY
        elif self.full and not full and self.told_full:
            logger.info("accepting connections again", extra={"action": "connections_full"})
            self.told_full = False
        self.full = full

    def run(self) -> None:
        """Serve until SIGTERM's SystemExit; then stop accepting at once (waitress alone would
        keep its listener open, the kernel completing handshakes nobody serves) and let the
        requests in flight finish."""
        try:
            wasyncore.loop(timeout=CHECK_EVERY, map=self._map, use_poll=True)
        except (SystemExit, KeyboardInterrupt):
            self.close()  # the listening socket only
            self.task_dispatcher.shutdown()

    def serve_until(self, stopping: threading.Event) -> None:
        """Run the loop on this thread until ``stopping`` is set, then close every socket."""
        try:
            while not stopping.is_set():
                wasyncore.loop(timeout=CHECK_EVERY, map=self._map, use_poll=True, count=1)
        finally:
            wasyncore.close_all(self._map)


def _nothing_unread(channel: Channel) -> bool:
    """No byte of a next request waits in the socket: "idle" was judged before the loop
    read, and closing with data unread would reset the connection under that request."""
    try:
        return not channel.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:  # nothing to read: idle indeed
        return True
    except OSError:  # broken already
        return True


class _QueueWarnings:
    """Stands in for waitress's ``waitress.queue`` logger, which warns "Task queue depth is
    N" for every request that finds every thread busy: under a burst, a line a request, each
    written while the dispatcher's lock keeps the threads from their next request. Here the
    waits are counted, and the loop's checks log them as one line at most every
    ``LOG_EVERY`` seconds."""

    def __init__(self, threads: int):
        self.threads = threads
        self.waits = 0
        self.deepest = 0
        self.next_log = 0.0

    def warning(self, _message: str, depth: int) -> None:
        """Waitress's only call, on the loop's thread: ``warning("Task queue depth is %d",
        depth)``."""
        self.waits += 1
        self.deepest = max(self.deepest, depth)

    def flush(self, now: float) -> None:
        if not self.waits or now < self.next_log:
            return
        logger.warning(
            "%d request(s) waited for one of the %d server threads, at most %d at once",
            self.waits,
            self.threads,
            self.deepest,
            extra={"action": "requests_queued", "waits": self.waits, "deepest": self.deepest},
        )
        self.waits = self.deepest = 0
        self.next_log = now + LOG_EVERY


class _Tally:
    """Connections closed to protect the server: counted at once, logged at most every
    ``LOG_EVERY`` seconds as one line."""

    def __init__(self, observer: Observer | None):
        self.observer = observer
        self.counts: Counter[str] = Counter()
        self.next_log = 0.0

    def add(self, reason: str, count: int, now: float) -> None:
        if count:
            self.counts[reason] += count
            if self.observer is not None:
                self.observer(reason, count)
            self.flush(now)

    def flush(self, now: float) -> None:
        if not self.counts or now < self.next_log:
            return
        logger.warning(
            "closed connections to keep answering: %d idle and %d slow at the connection "
            "limit, %d past server.read_timeout",
            self.counts[IDLE],
            self.counts[SLOW],
            self.counts[READ_TIMEOUT],
            extra={
                "action": "connections_closed",
                **{f"closed_{reason}": n for reason, n in self.counts.items()},
            },
        )
        self.counts.clear()
        self.next_log = now + LOG_EVERY


def build(
    app, settings: ServerSettings, *, host: str, port: int, observer: Observer | None = None
) -> Server:
    """The HTTP server for ``app``, listening; ``observer(reason, count)`` hears of every
    connection closed to protect it. T2Error when the address cannot be had."""
    limit = _fit_open_files(settings.connection_limit)
    try:
        return Server(
            app, settings, host=host, port=port, connection_limit=limit, observer=observer
        )
    except OSError as exc:
        raise errors.T2Error(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(pass serve --port, or set server.port)"
        ) from exc


def _fit_open_files(limit: int) -> int:
    """Raise the open-file limit to hold ``limit`` connections and the rest of the process;
    if the hard limit (systemd's LimitNOFILE) forbids it, serve fewer connections and say so:
    accept() failing for want of a file would spin the loop."""
    needed = limit + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError):  # a seccomp filter may forbid it: keep what we have
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return limit
    fitted = max(soft - RESERVED_FILES, 1)
    logger.warning(
        "server.connection_limit %d needs %d open files but this process may open %d "
        "(raise LimitNOFILE): serving at most %d connections",
        limit,
        needed,
        soft,
        fitted,
        extra={"action": "open_files"},
    )
    return fitted
