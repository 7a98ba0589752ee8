"""What a worker tells whoever listens about each job it handles, in the way huey's signals
do: the engine stays generic, and the daemon's wiring connects metrics (or anything else).

A listener is called as ``listener(signal, job, seconds)``: ``seconds`` is how long the run
took (None for ``claimed``). A listener that raises is logged and never stops the worker.
"""

import logging
from collections.abc import Callable
from typing import Final

from t2ctl.jobs.queue import Claimed

logger = logging.getLogger(__name__)

CLAIMED: Final = "claimed"  # taken by this worker
DONE: Final = "done"  # the handler succeeded (recorded in the worker's next claim)
RETRY: Final = "retry"  # the attempt failed and the job is queued again
DEAD: Final = "dead"  # the last attempt failed, or the handler refused a retry
LOST: Final = "lost"  # another worker had taken the job back: this outcome is dropped

Listener = Callable[[str, Claimed, float | None], None]


class Signals:
    """The listeners of one worker; thread-safe once connected, as workers only send."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def connect(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def send(self, signal: str, job: Claimed, seconds: float | None = None) -> None:
        for listener in self._listeners:
            try:
                listener(signal, job, seconds)
            except Exception:
                logger.exception("a listener of the %r signal failed", signal)
