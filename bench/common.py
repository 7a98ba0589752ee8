"""What the benchmarks share: throwaway databases, a worker pool to time, a statement count."""

import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from cryptography.fernet import Fernet

from t2ctl import db, urls, wiring
from t2ctl.config import Settings
from t2ctl.db import schema
from t2ctl.jobs import tasks
from t2ctl.jobs.worker import Pool

T = TypeVar("T")
Timing = tuple[float, float, float]  # min, median, p95 in ms
PG_ADMIN = os.environ.get("T2_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 4


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"t2bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        finally:
            handle = db.database.obj
            if handle is not None and hasattr(handle, "close_all"):
                handle.close_all()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def on_both(name: str, run: Callable[[str], T]) -> list[T]:
    """``run(url)`` on a SQLite file, then on a throwaway PostgreSQL database."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(f"sqlite:///{tmp}/{name}.db"))
    with postgres_database() as url:
        results.append(run(url))
    return results


def fresh(url: str) -> Settings:
    settings = Settings.model_validate(
        {"database": {"url": url}, "security": {"master_key": Fernet.generate_key().decode()}}
    )
    db.connect(url, max_connections=CONCURRENCY + 8)
    schema.migrate()
    return settings


def backend(url: str) -> str:
    return "sqlite" if urls.sqlite_path(url) is not None else "postgres"


def wait_for(done: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit("timed out: the workers stopped making progress")
        time.sleep(0.02)


def run_pool(
    settings: Settings,
    registry: tasks.Registry,
    done: Callable[[], bool],
    concurrency: int = CONCURRENCY,
) -> float:
    """Seconds for a pool of ``concurrency`` threads, the daemon's worker in each (its runs
    timed in the metrics), to make ``done()`` true."""
    pool = Pool(wiring.worker(settings, registry, name="bench"), concurrency=concurrency)
    started = time.perf_counter()
    pool.start()
    try:
        wait_for(done)
        return time.perf_counter() - started
    finally:
        pool.stop(grace=10)


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@contextmanager
def statements() -> Iterator[_Counter]:
    """Count the SQL statements sent meanwhile (peewee logs each one at DEBUG)."""
    counter = _Counter()
    peewee_log = logging.getLogger("peewee")
    peewee_log.addHandler(counter)
    peewee_log.setLevel(logging.DEBUG)
    peewee_log.propagate = False
    try:
        yield counter
    finally:
        peewee_log.removeHandler(counter)
        peewee_log.setLevel(logging.WARNING)
        peewee_log.propagate = True


def timed(call: Callable[[], object], repeat: int) -> Timing:
    """``call`` run ``repeat`` times: min, median and p95 of its wall time, in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    if len(times) < 2:
        return times[0], times[0], times[0]
    p95 = statistics.quantiles(times, n=20, method="inclusive")[-1]
    return min(times), statistics.median(times), p95
