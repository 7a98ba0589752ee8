"""Log lines: one JSON object a line for journald and log shippers, text for a person at a TTY.
Either way a line may quote the outside (a request's path), so what a terminal would act on is
escaped (``security.escaping``), and one record stays one line.

Each line carries the ids of what it is about. ``bind(request_id=...)`` sets them for all the
code that runs within (a request, a job, an order), and ``extra={...}`` adds more to one line,
so an operator can find every line of one failing order with ``jq 'select(.order_id == ...)'``.
"""

import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

from t2ctl.security import escaping, redaction

FORMATS = ("auto", "json", "text")
_BOUND: ContextVar[dict[str, Any]] = ContextVar("t2ctl_log_fields", default={})  # noqa: B039
# What every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def push(**fields: Any) -> Token:
    """Add ``fields`` to every line logged in this thread until ``pop(token)``."""
    return _BOUND.set({**_BOUND.get(), **fields})


def pop(token: Token) -> None:
    _BOUND.reset(token)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """``push`` for the length of a block."""
    token = push(**fields)
    try:
        yield
    finally:
        pop(token)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ids bound where the record was made, then its own extras; strings masked."""
    found = {**_BOUND.get()}
    found.update((k, v) for k, v in vars(record).items() if k not in _STANDARD and k[0] != "_")
    return {k: redaction.redact(v) if isinstance(v, str) else v for k, v in found.items()}


_second: tuple[int, str] = (-1, "")  # the last whole second written, and its text


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC to the millisecond; the date and time are formatted once a second."""
    global _second
    whole = int(record.created)
    known, text = _second  # one read: another thread may replace it meanwhile
    if known != whole:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _second = (whole, text)
    return f"{text}{int((record.created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...ids, "exception"}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return escaping.json_text(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message  key=value...``: the ids, without the machine's ``action``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The record's own line: a message may quote a request (its path) or a response."""
        return escaping.printable(super().formatMessage(record), one_line=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        shown = " ".join(
            f"{k}={escaping.printable(str(v), one_line=True)}"
            for k, v in fields(record).items()
            if k != "action"
        )
        if not shown:
            return text
        head, newline, rest = text.partition("\n")  # ids on the message's line, not the trace's
        return f"{head}  {shown}{newline}{rest}"


class _Handler(logging.StreamHandler):
    """t2ctl's own handler on the root logger, told apart from any other. A record is
    filtered and formatted before the lock is taken, which then covers only the write:
    request threads logging at once queue for a write, not for each other's formatting."""

    def handle(self, record: logging.LogRecord) -> bool:
        kept = self.filter(record)
        if isinstance(kept, logging.LogRecord):  # Python 3.12: a filter may replace it
            record = kept
        if kept:
            self.emit(record)
        return bool(kept)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            with self.lock:  # type: ignore[union-attr]  # made by createLock in __init__
                self.stream.write(line)
                self.flush()
        except Exception:  # as StreamHandler.emit: logging must not break its caller
            self.handleError(record)


def install(stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) in the ``auto`` format at INFO, with the redaction filter;
    a thread's uncaught exception is logged there too, not printed raw."""
    root = logging.getLogger()
    _skip_unused_record_fields()
    if not any(isinstance(h, _Handler) for h in root.handlers):
        handler = _Handler(stream or sys.stderr)
        redaction.install([handler])
        root.addHandler(handler)
        threading.excepthook = _thread_died
    configure()


def _skip_unused_record_fields() -> None:
    """Neither format shows the caller's file and line, the thread or the process: the logging
    HOWTO's "Optimization" settings spare each record a walk up the stack and two lookups."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _thread_died(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # as Python's own hook: a thread may end itself that way
    name = args.thread.name if args.thread is not None else "?"
    error = args.exc_value  # None only from a hand-made call: a crash hands over the object
    logging.getLogger("t2ctl").critical(
        "thread %s died",
        name,
        exc_info=(args.exc_type, error, args.exc_traceback) if error is not None else None,
        extra={"action": "thread_died"},
    )


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    """Apply the ``log`` settings to the handler ``install`` made (none: nothing to do)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, _Handler):
            tty = getattr(handler.stream, "isatty", lambda: False)()
            as_json = fmt == "json" or (fmt == "auto" and not tty)
            handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
            root.setLevel(level)
