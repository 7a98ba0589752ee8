"""Periodic tasks: one tick runs once however many daemons reach it, and operators can list
and run them (each database test on SQLite and on PostgreSQL)."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from t2ctl import clock
from t2ctl.db.models import Subscription
from t2ctl.jobs import admin, tasks
from t2ctl.jobs.models import Job, ScheduleRun
from t2ctl.jobs.scheduler import Periodic, Scheduler, claim_tick
from t2ctl.jobs.worker import Worker
from t2ctl.orders import pipeline
from tests.conftest import (
    Cli,
    LiveServer,
    at_once,
    daemon_worker,
    drain,
    order_body,
    order_job,
    submit,
)
from tests.processes import wait_until


def test_concurrent_claims_of_one_tick_queue_one_job(migrated) -> None:
    due = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    won = at_once(8, lambda: claim_tick("expiry-check", due))
    assert len(won) == 8
    assert sum(job is not None for job in won) == 1
    assert ScheduleRun.select().count() == 1 and Job.select().count() == 1
    # The next tick is its own, once this one's job has run.
    Job.update(state="done").execute()
    assert claim_tick("expiry-check", due + timedelta(days=1)) is not None
    assert claim_tick("expiry-check", due) is None, "a tick never runs twice"


def test_two_daemons_reaching_the_same_tick_run_the_task_once(migrated) -> None:
    ran: list[datetime] = []
    second = (clock.now() + timedelta(seconds=3)).second
    beat = Periodic("beat", lambda as_of: ran.append(as_of) or "ok", "minute", f":{second:02d}")
    daemons = [Scheduler([beat], timezone="Africa/Lagos") for _ in range(2)]
    stopping = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stopping,)) for s in daemons]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: ScheduleRun.select().count() >= 1, timeout=15, what="the tick")
        stopping.wait(2.5)  # the other daemon has reached the same tick by now
    finally:
        stopping.set()
        for thread in threads:
            thread.join()
    (tick,) = ScheduleRun.select()
    assert tick.due_at.second == second
    (job,) = Job.select()
    registry = tasks.Registry()
    daemons[0].register(registry)
    assert Worker(registry, name="w", lease=timedelta(seconds=30)).run_once()
    assert ran == [tick.due_at]
    assert admin.get(job.id).state == "done"


def test_schedule_list_shows_each_task_in_its_time_zone(cli: Cli) -> None:
    listing = cli("schedule", "list", "--json")
    assert listing.exit_code == 0, listing.stderr
    plan = {row["task"]: row for row in json.loads(listing.stdout)}
    assert set(plan) == {"expiry-reminders", "expiry-check", "prune"}
    assert plan["expiry-check"]["cadence"] == "every day at 03:00"
    assert plan["expiry-check"]["timezone"] == "Africa/Lagos"
    assert plan["expiry-check"]["nextRunAt"].endswith("T02:00:00Z"), "03:00 in Lagos is 02:00Z"
    assert plan["expiry-reminders"]["nextRunAt"].endswith("T01:00:00Z")
    assert plan["prune"]["lastDueAt"] is None
    table = cli("schedule", "list")
    assert "every day at 02:00 (Africa/Lagos)" in table.stdout and "never" in table.stdout


def test_schedule_run_as_of_a_date_catches_up(server: LiveServer, catalogue, cli: Cli) -> None:
    submit(server, order_body("T2-1"))
    drain(daemon_worker(server))
    # As if the subscription had expired two days ago, while the daemons were down.
    expires = clock.now().replace(microsecond=0) - timedelta(days=2)
    Subscription.update(expires_at=expires).execute()

    week_before = (expires - timedelta(days=3)).date().isoformat()
    reminders = cli("schedule", "run", "expiry-reminders", "--as-of", week_before)
    assert "1 subscription(s) expiring within 7 days announced" in reminders.stderr
    day_before = (expires - timedelta(days=1)).date().isoformat()
    before = cli("schedule", "run", "expiry-check", "--as-of", day_before)
    assert before.exit_code == 0 and "0 expired subscription(s) announced" in before.stderr
    day_after = (expires + timedelta(days=1)).date().isoformat()
    caught_up = cli("schedule", "run", "expiry-check", "--as-of", day_after)
    assert caught_up.exit_code == 0, caught_up.stderr
    assert f"expiry-check as of {day_after}T02:00:00Z: 1 expired" in caught_up.stderr
    assert "0 expired" in cli("schedule", "run", "expiry-check").stderr, "once"

    assert cli("schedule", "run", "nope").exit_code == 3
    bad = cli("schedule", "run", "prune", "--as-of", "someday")
    assert bad.exit_code == 2 and "--as-of" in bad.stderr
    tomorrow = (clock.now() + timedelta(days=1)).date().isoformat()
    ahead = cli("schedule", "run", "expiry-check", "--as-of", tomorrow)
    assert ahead.exit_code == 2 and "in the future" in ahead.stderr


def test_prune_run_by_hand_removes_old_finished_jobs(server: LiveServer, catalogue, cli) -> None:
    submit(server, order_body("T2-1"))
    drain(daemon_worker(server))
    assert cli("schedule", "run", "prune").exit_code == 0
    assert order_job().state == "done", "a job finished just now is kept"
    Job.update(finished_at=clock.now() - timedelta(days=8)).where(
        Job.task == pipeline.TASK
    ).execute()
    result = cli("schedule", "run", "prune")
    assert "1 finished job(s)" in result.stderr
    assert not Job.select().where(Job.task == pipeline.TASK).exists()


@pytest.mark.parametrize(
    ("unit", "at", "now", "due"),
    [
        ("day", "03:00", "2026-11-28T02:00:00.4Z", "2026-11-28T02:00:00Z"),  # 03:00 Lagos
        ("day", "03:00", "2026-11-28T01:59:59Z", "2026-11-27T02:00:00Z"),
        ("hour", ":30", "2026-11-28T10:45:10Z", "2026-11-28T10:30:00Z"),
        ("hour", ":30", "2026-11-28T10:29:10Z", "2026-11-28T09:30:00Z"),
        ("minute", ":15", "2026-11-28T10:45:16Z", "2026-11-28T10:45:15Z"),
        ("minute", ":15", "2026-11-28T10:45:14Z", "2026-11-28T10:44:15Z"),
    ],
)
def test_a_tick_is_named_by_its_cadence_in_the_schedule_time_zone(
    unit: str, at: str, now: str, due: str
) -> None:
    task = Periodic("t", lambda _as_of: "", unit, at)
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    assert clock.rfc3339(task.due_before(moment, "Africa/Lagos")) == due
