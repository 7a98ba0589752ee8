"""Job engine throughput, beside huey (SQLite storage) and procrastinate (PostgreSQL).

    python3 bench/queue.py [--jobs 2000] [--orders 500] [--idle-seconds 20]

needs ``pip install -e '.[bench]'`` and the PostgreSQL of the test suite (``T2_TEST_POSTGRES``,
default ``postgresql://postgres@127.0.0.1:5432/test``); it creates and drops its own databases.

What is measured, on each database, with 4 worker threads (huey: 4 thread workers;
procrastinate: concurrency 4, an async no-op task):
- enqueue: jobs added one per transaction, per second;
- no-op: seconds from starting the workers to the last of N pre-enqueued no-op jobs done;
- pipeline: N sandbox orders stored by ``intake.submit`` (each with its job, one commit),
  then processed by the daemon's own handlers to FULFILLED;
- idle: SQL statements per second sent by an idle daemon's workers and scheduler (counted on
  peewee's query log), over ``--idle-seconds``.
"""

import sys
from pathlib import Path

# Named queue.py as asked, this script must not shadow the standard library's ``queue``;
# its shared helpers come from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import itertools
import logging
import tempfile
import time

from rich.console import Console
from rich.table import Table

from bench.common import (
    CONCURRENCY,
    backend,
    fresh,
    postgres_database,
    run_pool,
    statements,
    wait_for,
)
from t2ctl import daemon, partners, products, wiring
from t2ctl.db.models import Order
from t2ctl.jobs import queue, tasks
from t2ctl.jobs.models import Job
from t2ctl.orders import intake
from t2ctl.security.crypto import SecretBox
from t2ctl.values import Money

Row = tuple[str, str, str, int, float | None, float | None]


def t2ctl_noop(url: str, jobs: int) -> Row:
    settings = fresh(url)
    started = time.perf_counter()
    for n in range(jobs):
        queue.enqueue("noop", {"n": n})
    enqueue_rate = jobs / (time.perf_counter() - started)
    ran = itertools.count(1)
    counted = [0]
    registry = tasks.Registry()
    registry.add("noop", lambda _context: counted.__setitem__(0, next(ran)))
    seconds = run_pool(settings, registry, lambda: counted[0] >= jobs)
    assert Job.select().where(Job.state == "done").count() == jobs
    return ("t2ctl", backend(url), "no-op", jobs, enqueue_rate, jobs / seconds)


def t2ctl_pipeline(url: str, orders: int) -> Row:
    settings = fresh(url)
    box = SecretBox(settings.security.master_keys)
    price = Money.parse("15000.00", "NGN")
    products.upsert([products.ProductData("M365", "M365", "", price, 12, True)])
    partner = partners.add("t2mobile", "http://127.0.0.1:9/h", box=box, sandbox=True).partner
    started = time.perf_counter()
    for n in range(orders):
        request = intake.FulfilmentRequest(
            f"T2-{n:06d}", "M365", 1, "C1", "Ada Obi", "ada@example.ng", None, price
        )
        intake.submit(partner, request, box=box)
    intake_rate = orders / (time.perf_counter() - started)
    registry = wiring.registry(settings, box=box, schedule=wiring.scheduler(settings))
    fulfilled = Order.select().where(Order.status == "FULFILLED")
    seconds = run_pool(settings, registry, lambda: fulfilled.count() == orders)
    return ("t2ctl", backend(url), "sandbox orders", orders, intake_rate, orders / seconds)


def t2ctl_idle(url: str, seconds: float) -> Row:
    """Statements per second from an idle daemon's background (workers and scheduler)."""
    settings = fresh(url)
    background = daemon.Background(settings, SecretBox(settings.security.master_keys))
    with statements() as counter:
        background.start()
        try:
            time.sleep(3)  # past start-up
            before = counter.count
            time.sleep(seconds)
            rate = (counter.count - before) / seconds
        finally:
            background.stop()
    return ("t2ctl", backend(url), "idle daemon: queries/s", 0, None, rate)


def huey_noop(path: Path, jobs: int) -> Row:
    from huey import SqliteHuey

    huey = SqliteHuey(filename=str(path), results=False)
    done = itertools.count()
    counted = [0]

    @huey.task()
    def noop(n: int) -> None:
        counted[0] = next(done) + 1

    started = time.perf_counter()
    for n in range(jobs):
        noop(n)
    enqueue_rate = jobs / (time.perf_counter() - started)
    consumer = huey.create_consumer(
        workers=CONCURRENCY,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,
        max_delay=0.1,
        check_worker_health=False,
    )
    started = time.perf_counter()
    consumer.start()
    try:
        wait_for(lambda: counted[0] >= jobs)
        seconds = time.perf_counter() - started
    finally:
        consumer.stop(graceful=True)
    return ("huey", "sqlite", "no-op", jobs, enqueue_rate, jobs / seconds)


def procrastinate_noop(url: str, jobs: int) -> Row:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    counted = [0]

    @app.task(name="noop")
    async def noop(n: int) -> None:
        counted[0] += 1

    with app.open():
        app.schema_manager.apply_schema()
        started = time.perf_counter()
        for n in range(jobs):
            noop.defer(n=n)
        enqueue_rate = jobs / (time.perf_counter() - started)

    async def work() -> float:
        async with app.open_async():
            started = time.perf_counter()
            await app.run_worker_async(
                concurrency=CONCURRENCY, wait=False, install_signal_handlers=False
            )
            return time.perf_counter() - started

    seconds = asyncio.run(work())
    assert counted[0] == jobs, counted[0]
    return ("procrastinate", "postgres", "no-op", jobs, enqueue_rate, jobs / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for n, step in enumerate(
            (
                lambda url: t2ctl_noop(url, args.jobs),
                lambda url: t2ctl_pipeline(url, args.orders),
                lambda url: t2ctl_idle(url, args.idle_seconds),
            )
        ):
            rows.append(step(f"sqlite:///{tmp_path}/t2ctl-{n}.db"))
            with postgres_database() as url:
                rows.append(step(url))
        rows.append(huey_noop(tmp_path / "huey.db", args.jobs))
        with postgres_database() as url:
            rows.append(procrastinate_noop(url, args.jobs))
    show(rows)


def show(rows: list[Row]) -> None:
    table = Table(title=f"job throughput, {CONCURRENCY} worker threads, this machine")
    for column in ("system", "database", "workload", "jobs", "enqueue /s", "processed /s"):
        table.add_column(column, justify="right" if column[0] in "jep" else "left")
    for system, database, workload, jobs, enqueue_rate, rate in sorted(
        rows, key=lambda r: (r[2], r[1], r[0])
    ):
        table.add_row(
            system,
            database,
            workload,
            str(jobs or "-"),
            f"{enqueue_rate:,.0f}" if enqueue_rate is not None else "-",
            f"{rate:,.1f}" if rate is not None else "-",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
