"""Periodic tasks: the ``schedule`` library says when, the database says who.

Every daemon runs a Scheduler. When a task falls due, each tries to record the tick,
(task, due time), under a unique index in the same transaction as the job that runs it, so one
tick becomes one job however many daemons reach it. The job runs on any worker, with the
engine's retries. Waiting for the next tick makes no query at all.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import peewee
import schedule

from t2ctl import clock, db
from t2ctl.errors import NotFound
from t2ctl.jobs import queue, tasks
from t2ctl.jobs.models import Job, ScheduleRun

logger = logging.getLogger(__name__)

UNITS = ("day", "hour", "minute")


@dataclass(frozen=True)
class Periodic:
    """A task run ``every <unit> at <at>``: ``day`` at ``"02:00"``, ``hour`` at ``":30"``,
    ``minute`` at ``":15"``. ``run(as_of)`` does the work as if it were ``as_of`` and returns
    a one-line summary; it must be idempotent, as a tick may be run again by hand."""

    name: str
    run: Callable[[datetime], str]
    unit: str
    at: str

    @property
    def cadence(self) -> str:
        return f"every {self.unit} at {self.at}"

    def due_before(self, now: datetime, timezone: str) -> datetime:
        """The latest moment at or before ``now`` that the cadence names, in UTC: the tick's
        identity, worked out in ``timezone`` whatever the host's own zone is."""
        local = now.astimezone(ZoneInfo(timezone)).replace(microsecond=0)
        numbers = [int(part) for part in self.at.split(":") if part]
        if self.unit == "day":
            due, step = local.replace(hour=numbers[0], minute=numbers[1], second=0), "days"
        elif self.unit == "hour":
            due, step = local.replace(minute=numbers[0], second=0), "hours"
        else:
            due, step = local.replace(second=numbers[0]), "minutes"
        if due > local:
            due -= timedelta(**{step: 1})
        return due.astimezone(UTC)


@dataclass(frozen=True)
class Planned:
    task: Periodic
    next_run: datetime
    last_due: datetime | None
    last_state: str | None


class Scheduler:
    def __init__(self, periodic: list[Periodic], *, timezone: str):
        self.timezone = timezone
        self.tasks = {task.name: task for task in periodic}
        self._schedule = schedule.Scheduler()
        self._jobs: dict[str, schedule.Job] = {}
        self._fired: dict[str, datetime] = {}
        for task in periodic:
            if task.unit not in UNITS:
                raise ValueError(f"{task.name}: unit must be one of {', '.join(UNITS)}")
            every = getattr(self._schedule.every(), task.unit)
            self._jobs[task.name] = every.at(task.at, timezone).do(self._fire, task.name)

    def register(self, registry: tasks.Registry) -> None:
        """Add each periodic task to ``registry`` as a job handler."""
        for task in self.tasks.values():
            registry.add(task.name, self._handler(task))

    @staticmethod
    def _handler(task: Periodic) -> tasks.Handler:
        def handle(context: tasks.Context) -> None:
            as_of = datetime.fromisoformat(context.payload["asOf"])
            summary = task.run(as_of)
            logger.info(
                "%s as of %s: %s",
                task.name,
                clock.rfc3339(as_of),
                summary,
                extra={"action": "periodic_ran", "task": task.name, "job_id": context.job_id},
            )

        return handle

    def get(self, name: str) -> Periodic:
        if name not in self.tasks:
            raise NotFound(f"no periodic task {name!r}; known: {', '.join(sorted(self.tasks))}")
        return self.tasks[name]

    def tick(self) -> None:
        """Fire every task whose time has come (the thread loop calls this every second)."""
        self._schedule.run_pending()

    def run(self, stopping: threading.Event) -> None:
        while not stopping.wait(1.0):
            self.tick()

    def _fire(self, name: str) -> None:
        due = self.tasks[name].due_before(clock.now(), self.timezone)
        if self._fired.get(name) == due:
            return  # ``schedule`` works in the host's naive local time: a DST fold repeats
        self._fired[name] = due
        try:
            job_id = claim_tick(name, due)
        except db.DRIVER_ERRORS as exc:
            db.reset()
            logger.error(
                "%s due at %s could not be queued (%s); catch up with "
                "`t2ctl schedule run %s --as-of %s`",
                name,
                clock.rfc3339(due),
                exc,
                name,
                clock.rfc3339(due),
            )
            return
        if job_id is not None:
            logger.info(
                "%s due at %s queued as job %s",
                name,
                clock.rfc3339(due),
                job_id,
                extra={"action": "periodic_queued", "task": name, "job_id": job_id},
            )

    def run_now(self, name: str, as_of: datetime) -> str:
        """Run a task here and now, as if it were ``as_of`` (an operator's catch-up)."""
        return self.get(name).run(as_of)

    def as_of_day(self, name: str, day: date) -> datetime:
        """The moment a task would have run on ``day``: its daily time, else the day's start."""
        task = self.get(name)
        at = time.fromisoformat(task.at) if task.unit == "day" else time()
        return clock.local(day, self.timezone, at)

    def plan(self) -> list[Planned]:
        """Each task with its next run and the last tick any daemon recorded."""
        planned = []
        for name, task in sorted(self.tasks.items()):
            last = (
                ScheduleRun.select(ScheduleRun, Job.state)
                .join(Job, peewee.JOIN.LEFT_OUTER, on=(ScheduleRun.job == Job.id))
                .where(ScheduleRun.task == name)
                .order_by(ScheduleRun.due_at.desc())
                .objects()
                .first()
            )
            next_run = self._jobs[name].next_run
            assert next_run is not None  # every job was given its time in __init__
            planned.append(
                Planned(
                    task,
                    next_run.astimezone(UTC),
                    last.due_at if last else None,
                    getattr(last, "state", None) if last else None,
                )
            )
        return planned


def claim_tick(name: str, due: datetime) -> int | None:
    """Record one tick and queue its job, in one transaction; None if another daemon has
    already recorded this tick, or the task's previous job is still pending."""
    try:
        with db.transaction():
            job_id = queue.enqueue(
                name, {"asOf": due.isoformat()}, max_attempts=5, unique_key=f"periodic:{name}"
            )
            if job_id is None:
                return None
            ScheduleRun.create(task=name, due_at=due, job=job_id, created_at=clock.now())
    except peewee.IntegrityError:
        return None
    return job_id
