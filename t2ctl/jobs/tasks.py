"""Handlers by name, the context a handler runs with, and how long to wait before a retry."""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


def jittered(
    delay: timedelta, jitter: float, *, rng: Callable[[], float] = random.random
) -> timedelta:
    """``delay`` ±``jitter`` (a fraction of it), drawn evenly: retries that failed together
    spread out instead of coming back together."""
    return delay * (1 - jitter + 2 * jitter * rng())


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``base × 2^(attempt-1)``, at most ``cap``, ±``jitter``."""

    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(minutes=10)
    jitter: float = 0.2

    def delay(self, attempt: int, *, rng: Callable[[], float] = random.random) -> timedelta:
        exact = min(self.cap, self.base * 2 ** max(0, min(attempt - 1, 30)))
        return jittered(exact, self.jitter, rng=rng)


class Retry(Exception):
    """Raised by a handler: try this job again, after ``after`` or else after the backoff."""

    def __init__(self, message: str, *, after: timedelta | None = None):
        super().__init__(message)
        self.after = after


@dataclass(frozen=True)
class Context:
    """What a handler knows of the job it runs."""

    job_id: int
    task: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    now: datetime


Handler = Callable[[Context], None]


@dataclass(frozen=True)
class Task:
    name: str
    handler: Handler
    backoff: Backoff = field(default_factory=Backoff)


class Registry:
    """The handlers one daemon can run. The daemon's wiring fills it; tests build their own."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, name: str, handler: Handler, *, backoff: Backoff | None = None) -> None:
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already registered")
        self._tasks[name] = Task(name, handler, backoff or Backoff())

    def find(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)
