"""Operator reads and the expiry tasks at scale: N orders with what a running daemon keeps.

    python3 bench/scale.py [--orders 1000000] [--repeat 20] [--days 5]

needs the PostgreSQL of the test suite (``T2_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``); it creates and drops its own databases.

On each database (a temporary SQLite file, a throwaway PostgreSQL database), migrated by the
real schema:
- seed: bench/listing.py's orders, their subscriptions and events, then what the daemon's
  workers and periodic tasks leave beside them under the default config (``leftovers``):
  expiry notes and their events, a partner's outage whose deliveries died, one attempt per
  delivery of the last ``webhooks.retention_days`` (older ones pruned), the jobs of the last
  ``worker.job_retention`` (older finished ones pruned), dead jobs (never pruned) and the
  periodic ticks; set-based SQL, then VACUUM ANALYZE on PostgreSQL (SQLite's file is left
  without statistics, as the daemon leaves it);
- the database's size, per order;
- the operator commands, run in this process by click's CliRunner on the real app's command
  with a config file naming the database (config, connect, query, render; not interpreter
  start-up, nor typer's building of the command tree, which start-up does once);
- ``GET /t2mobile/orders/<id>`` over loopback HTTP to the real app on waitress;
- each expiry task as the schedule runs it, a day at a time: the day's first run, which
  announces that day's expiries, for ``--days`` days after the seed; then a second run.
"""

import sys
from pathlib import Path

# This folder holds queue.py, which must not shadow the standard library's ``queue``; the
# shared helpers come from the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import requests
import typer
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

from bench import listing
from bench.common import Timing, backend, fresh, on_both, timed
from t2ctl import clock, daemon, db, sandbox, startup
from t2ctl.api import create_app
from t2ctl.cli.main import app as cli_app
from t2ctl.config import Settings
from t2ctl.db.models import Order, Partner, Subscription, WebhookDelivery
from t2ctl.jobs.models import Job, ScheduleRun
from t2ctl.orders import cancellation, expiry, pipeline
from t2ctl.security.crypto import SecretBox
from t2ctl.webhooks import outbox, signing

Row = tuple[str, str, str]  # label, value, target
DEFAULTS = Settings()
REMINDER = timedelta(days=DEFAULTS.schedule.reminder_days)
JOBS_KEPT = DEFAULTS.worker.job_retention
ATTEMPTS_KEPT = timedelta(days=DEFAULTS.webhooks.retention_days)
DAY = timedelta(days=1)
DAYS = 5  # days of expiry runs timed, one first run a day
READ_MS, TASK_MS, BYTES_PER_ORDER = 50, 2000, 2048
# One partner's endpoint down for six hours ten days ago: its events then died.
OUTAGE_AGO, OUTAGE = timedelta(days=10), timedelta(hours=6)
STUCK_SHARE = 10  # one PROCESSING order in this many kept its dead job (worker killed)
READS = {
    "orders list": ["orders", "list"],
    "orders list --status FAILED": ["orders", "list", "--status", "FAILED"],
    "orders list --partner t2mobile-ke": ["orders", "list", "--partner", listing.PARTNERS[1]],
    "queue stats": ["queue", "stats"],
    "webhooks list --status dead": ["webhooks", "list", "--status", "dead"],
    "status": ["status"],
}


def measure(url: str, *, orders: int, repeat: int = 20, days: int = DAYS) -> list[Row]:
    """Seed ``orders`` on the database at ``url`` (fresh: it is migrated here), then time
    every operator read and expiry task; rows of (label, value, target)."""
    settings = fresh(url)
    box = SecretBox(settings.security.master_keys)
    keys = listing.setup(box)
    now = clock.now()
    started = time.perf_counter()
    listing.seed(orders, box)
    with db.transaction():
        leftovers(now)
    settle()
    rows = [("seed, s", f"{time.perf_counter() - started:,.0f}", "minutes")]
    per_order = listing.size() / orders
    rows.append(("database, bytes per order", f"{per_order:,.0f}", f"< {BYTES_PER_ORDER:,}"))
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp) / "config.toml", settings)
        rows += [(f"t2ctl {name}", _ms(t), f"< {READ_MS} ms") for name, t in cli(config, repeat)]
    rows.append(
        ("GET /t2mobile/orders/<id>", _ms(get_order(settings, keys[0], repeat)), f"< {READ_MS} ms")
    )
    return rows + expiry_runs(now, days)


# What the daemon leaves beside the orders -----------------------------------------------------


def leftovers(now: datetime) -> None:
    """What the workers and the periodic tasks leave after a year of orders, as pruning with
    the default config keeps it; call in one transaction, after ``listing.seed``."""
    _announced(now)
    _outage(now)
    _attempts(now)
    _jobs(now)
    _ticks(now)


def _announced(now: datetime) -> None:
    """The expiry tasks' work until ``now``: each subscription expiring within the reminder
    window reminded, each one expired a day ago or more announced, with their events."""
    reminded = (Subscription.expires_at > now) & (Subscription.expires_at <= now + REMINDER)
    expired = Subscription.expires_at <= now - DAY
    events = _expiry_events(reminded, "subscription.expiring", -REMINDER)
    events += _expiry_events(expired, "subscription.expired", timedelta(hours=12))
    Subscription.update(reminded_for=Subscription.expires_at).where(reminded).execute()
    Subscription.update(expired_for=Subscription.expires_at).where(expired).execute()
    last = WebhookDelivery.select(WebhookDelivery.feed_seq).order_by(WebhookDelivery.id.desc())
    seq = last.scalar()
    events.sort(key=lambda event: event[-1])
    listing.insert(
        "webhook_delivery",
        listing.EVENT_COLUMNS,
        [(*event[:-1], seq + n) for n, event in enumerate(events, start=1)],
    )


def _expiry_events(due, event: str, after_expiry: timedelta) -> list[listing.Row]:
    """``event`` for each subscription in ``due``, sent ``after_expiry`` from its expiry;
    the feed's place (last) is the moment, for sorting."""
    naive = Order.created_at.db_value
    found = (
        Order.select(
            Order.partner, Order.order_id, Subscription.customer_id, Subscription.expires_at
        )
        .join(Subscription, on=(Order.subscription == Subscription.id))
        .where(due)
        .tuples()
    )
    product = listing.CATALOGUE[0].product_id
    rows = []
    for partner_id, order_id, customer_id, expires in found:
        expires = Subscription.expires_at.python_value(expires)
        sent = expires + after_expiry
        data = {
            "orderId": order_id,
            "productId": product,
            "customer": {"id": customer_id},
            "expiresAt": clock.rfc3339(expires),
        }
        moment = naive(sent)
        rows.append(
            (
                signing.new_webhook_id(),
                partner_id,
                event,
                order_id,
                signing.envelope(event, sent, data),
                "delivered",
                1,
                0,
                204,
                moment,
                moment,
                moment,
                moment,
            )
        )
    return rows


def _outage(now: datetime) -> None:
    """The second partner's events of a six-hour outage: each tried on the whole retry
    schedule and dead, with its attempts."""
    start = now - OUTAGE_AGO
    second = Partner.get(Partner.name == listing.PARTNERS[1])
    steps = DEFAULTS.webhooks.retry_schedule
    window = (
        (WebhookDelivery.partner == second.id)
        & (WebhookDelivery.created_at >= start)
        & (WebhookDelivery.created_at < start + OUTAGE)
    )
    dead = list(
        WebhookDelivery.select(WebhookDelivery.id, WebhookDelivery.created_at).where(window)
    )
    WebhookDelivery.update(
        status="dead",
        attempts=len(steps) + 1,
        failures=len(steps) + 1,
        last_status=503,
        last_error="HTTP 503",
        updated_at=start + OUTAGE + sum(steps, timedelta()),
        finished_at=start + OUTAGE + sum(steps, timedelta()),
    ).where(window).execute()
    naive = Order.created_at.db_value
    rows = []
    for delivery in dead:
        moment = delivery.created_at
        for step in [timedelta(), *steps]:
            moment += step
            rows.append(
                (
                    delivery.id,
                    naive(moment),
                    "scheduled",
                    second.webhook_url,
                    503,
                    120,
                    "failed",
                    "HTTP 503",
                    "Service Unavailable",
                )
            )
    listing.insert("webhook_attempt", ATTEMPT_COLUMNS, rows)


ATTEMPT_COLUMNS = (
    "delivery_id",
    "attempted_at",
    "trigger",
    "url",
    "status_code",
    "latency_ms",
    "outcome",
    "error",
    "excerpt",
)
JOB_COLUMNS = (
    "task",
    "payload",
    "state",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "unique_key",
    "last_error",
    "created_at",
    "updated_at",
    "finished_at",
)


def _attempts(now: datetime) -> None:
    """One attempt per delivered event of the kept days: the prune task deletes older ones."""
    _insert_from(
        "webhook_attempt",
        ATTEMPT_COLUMNS,
        "SELECT d.id, d.finished_at, 'scheduled', p.webhook_url, 204, 40, 'delivered', NULL, NULL "
        "FROM webhook_delivery d JOIN partner p ON p.id = d.partner_id "
        "WHERE d.status = 'delivered' AND d.finished_at >= {p}",
        now - ATTEMPTS_KEPT,
    )


class _OrderJobs(NamedTuple):
    """Jobs of one task and state for the orders ``where`` selects (``{p}``: ``moment``),
    as SQL expressions over the order's columns."""

    task: str
    state: str
    attempts: int
    most: int
    key: str
    error: str
    times: str  # run_at, updated_at, finished_at
    where: str
    moment: datetime


def _jobs(now: datetime) -> None:
    """The job table as the prune task leaves it: finished jobs of the kept days (each
    order's processing, each delivery, each cancellation), the last hour's pending orders
    queued and processing ones running, and dead jobs, which stay until an operator acts."""
    since, hour = now - JOBS_KEPT, now - timedelta(hours=1)
    finished = "COALESCE(fulfilled_at, updated_at)"
    most, died = pipeline.MAX_ATTEMPTS, "'lease expired: worker bench stopped heart-beating'"
    for jobs in (
        _OrderJobs(
            pipeline.TASK,
            "done",
            1,
            most,
            "order:",
            "NULL",
            f"created_at, {finished}, {finished}",
            f"status IN ('FULFILLED', 'FAILED', 'CANCELLED') AND {finished} >= {{p}}",
            since,
        ),
        _OrderJobs(
            cancellation.TASK,
            "done",
            1,
            cancellation.MAX_ATTEMPTS,
            "cancel:",
            "NULL",
            "cancel_requested_at, cancelled_at, cancelled_at",
            "status = 'CANCELLED' AND cancelled_at >= {p}",
            since,
        ),
        _OrderJobs(
            pipeline.TASK,
            "queued",
            0,
            most,
            "order:",
            "NULL",
            "created_at, created_at, NULL",
            "status = 'PENDING' AND created_at >= {p}",
            hour,
        ),
        _OrderJobs(
            pipeline.TASK,
            "running",
            1,
            most,
            "order:",
            "NULL",
            "created_at, updated_at, NULL",
            "status = 'PROCESSING' AND created_at >= {p}",
            hour,
        ),
        _OrderJobs(
            pipeline.TASK,
            "dead",
            most,
            most,
            "order:",
            died,
            "created_at, updated_at, updated_at",
            f"status = 'PROCESSING' AND created_at < {{p}} "
            f"AND id / {STUCK_SHARE} * {STUCK_SHARE} = id",
            hour,
        ),
    ):
        _insert_from(
            "job",
            JOB_COLUMNS,
            f"SELECT '{jobs.task}', '{{{{\"order\": ' || CAST(id AS TEXT) || '}}}}', "
            f"'{jobs.state}', 0, {jobs.times.split(',')[0]}, {jobs.attempts}, {jobs.most}, "
            f"'{jobs.key}' || CAST(id AS TEXT), {jobs.error}, {jobs.times} "
            f'FROM "order" WHERE {jobs.where}',
            jobs.moment,
        )
    _insert_from(
        "job",
        JOB_COLUMNS,
        "SELECT 'deliver', '{{\"delivery\": ' || CAST(id AS TEXT) || ', \"trigger\": "
        "\"scheduled\"}}', 'done', 0, updated_at, attempts, "
        f"{outbox.MAX_ATTEMPTS}, 'webhook:' || CAST(id AS TEXT), NULL, created_at, updated_at, "
        "finished_at FROM webhook_delivery WHERE finished_at >= {p}",
        since,
    )


def _ticks(now: datetime) -> None:
    """The periodic tasks' ticks of the kept days, each with its finished job."""
    zone = ZoneInfo(DEFAULTS.schedule.timezone)
    plan = DEFAULTS.schedule
    ticks = []
    for days in range(JOBS_KEPT.days):
        day = (now - timedelta(days=days)).astimezone(zone).date()
        for name, at in (
            ("expiry-reminders", plan.expiry_reminders_at),
            ("expiry-check", plan.expiry_check_at),
        ):
            hour, minute = map(int, at.split(":"))
            ticks.append((name, datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)))
        ticks += [
            ("prune", datetime(day.year, day.month, day.day, hour, 30, tzinfo=zone))
            for hour in range(24)
        ]
    for name, due in ticks:
        due = due.astimezone(UTC)
        if due > now:
            continue
        job = Job.create(
            task=name,
            payload={"asOf": due.isoformat()},
            state="done",
            run_at=due,
            attempts=1,
            max_attempts=5,
            unique_key=f"periodic:{name}",
            created_at=due,
            updated_at=due,
            finished_at=due,
        )
        ScheduleRun.create(task=name, due_at=due, job=job.id, created_at=due)


def _insert_from(table: str, columns: tuple[str, ...], select: str, moment: datetime) -> None:
    names = ", ".join(columns)
    select = select.format(p=db.database.param)
    db.database.execute_sql(
        f'INSERT INTO "{table}" ({names}) {select}', (Order.created_at.db_value(moment),)
    )


def settle() -> None:
    """PostgreSQL as its autovacuum leaves it: dead rows of the seed's updates reclaimed, the
    planner's statistics current. SQLite's file keeps none: nothing ANALYZEs it."""
    if not db.is_sqlite():
        db.database.execute_sql("VACUUM ANALYZE")


# The timed parts --------------------------------------------------------------------------


def _config(path: Path, settings: Settings) -> Path:
    key = settings.security.master_keys[0]
    path.write_text(
        f'[database]\nurl = "{settings.database.url}"\n[security]\nmaster_key = "{key}"\n'
    )
    path.chmod(0o600)
    return path


def cli(config: Path, repeat: int) -> list[tuple[str, Timing]]:
    """Each operator read, run by the real CLI app in this process; its click command is
    built once, as the interpreter's start-up does."""
    runner, command = CliRunner(), typer.main.get_command(cli_app)

    def run(args: list[str]) -> Callable[[], None]:
        def once() -> None:
            result = runner.invoke(command, ["--config", str(config), *args])
            assert result.exit_code == 0 and result.stdout, (args, result.output)

        return once

    timings = []
    for name, args in READS.items():
        run(args)()  # untimed: the first of a kind warms caches
        timings.append((name, timed(run(args), repeat)))
    return timings


def get_order(settings: Settings, key: str, repeat: int) -> Timing:
    """``GET /t2mobile/orders/<id>`` for an order half-way through the first partner's."""
    box = startup.connect(settings, connections=daemon.connections(settings, "api"))
    running = sandbox.in_background(create_app(settings, box))
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    middle = Order.select(Order.order_id).where(Order.partner == 1).order_by(Order.id)
    count = middle.count()
    order_id = middle.offset(count // 2).scalar()
    url = f"{running.url}/t2mobile/orders/{order_id}"

    def once() -> None:
        response = http.get(url, timeout=60)
        assert response.status_code == 200, response.text

    try:
        once()
        return timed(once, repeat)
    finally:
        running.stop()


def expiry_runs(now: datetime, days: int) -> list[Row]:
    """Each expiry task as the schedule runs it, on the ``days`` days after the seed: each
    run the day's first, announcing what fell due since the day before; then the same day's
    second run of expiry-check, which finds nothing new."""
    rows = []
    for name, task in (
        ("expiry-reminders", lambda as_of: expiry.reminders(as_of, days=REMINDER.days)),
        ("expiry-check", expiry.check),
    ):
        timing, announced = _daily(task, now, days)
        rows.append((f"{name}: a day's first run", _ms(timing), f"< {TASK_MS:,} ms"))
        rows.append((f"{name}: announced per run", f"{announced:,}", ""))
    again = timed(lambda: _count(expiry.check(now + DAY * days)), days)
    rows.append(("expiry-check: a second run that day", _ms(again), f"< {TASK_MS:,} ms"))
    return rows


def _daily(task: Callable[[datetime], str], now: datetime, days: int) -> tuple[Timing, int]:
    """``task``'s first run on each of the ``days`` days after ``now``; the median it
    announced."""
    said: list[int] = []
    day = iter(range(1, days + 1))
    timing = timed(lambda: said.append(_count(task(now + DAY * next(day)))), days)
    return timing, sorted(said)[len(said) // 2]


def _count(said: str) -> int:
    return int(said.split()[0])


def _ms(timing: Timing) -> str:
    return " / ".join(f"{ms:,.1f}" for ms in timing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--days", type=int, default=DAYS, help="expiry runs timed, a day each")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    results = on_both(
        "scale",
        lambda url: (
            backend(url),
            measure(url, orders=args.orders, repeat=args.repeat, days=args.days),
        ),
    )
    show(results, args.orders, args.repeat, args.days)


def show(results: list[tuple[str, list[Row]]], orders: int, repeat: int, days: int) -> None:
    table = Table(
        title=f"operator reads and expiry tasks, {orders:,} orders, this machine",
        caption=f"ms: min / median / p95 of {repeat} (expiry: of {days} days' runs)",
    )
    table.add_column("")
    for name, _ in results:
        table.add_column(name, justify="right")
    table.add_column("target", justify="right")
    for n, (label, _, target) in enumerate(results[0][1]):
        table.add_row(label, *(rows[n][1] for _, rows in results), target)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
