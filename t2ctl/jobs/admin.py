"""What operators do to jobs, and what they and the reports see of them: look one up, list
and count them, retry, cancel or bring one forward, prune the finished.

Each change is conditional on the state it was read in, as the claim protocol's are
(``queue``), so an operator and a worker acting at once cannot both win.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import peewee

from t2ctl import db
from t2ctl.errors import Conflict, NotFound
from t2ctl.jobs import queue
from t2ctl.jobs.models import JOB_STATES, Job, ScheduleRun

FINISHED = ("done", "cancelled")


def get(job_id: int) -> Job:
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def listing(*, state: str | None = None, task: str | None = None, limit: int = 50) -> list[Job]:
    """Newest first."""
    query = Job.select().order_by(Job.id.desc()).limit(limit)
    if state is not None:
        query = query.where(Job.state == state)
    if task is not None:
        query = query.where(Job.task == task)
    return list(query)


@dataclass(frozen=True)
class Stats:
    counts: dict[str, int]  # every state, zero included
    waiting: int  # queued jobs not yet due (retries waiting out their backoff)
    oldest_due: datetime | None  # run_at of the oldest job that is due and unclaimed
    by_task: dict[str, dict[str, int]]


def stats(*, now: datetime) -> Stats:
    counts = dict.fromkeys(JOB_STATES, 0)
    by_task: dict[str, dict[str, int]] = {}
    rows = Job.select(Job.task, Job.state, peewee.fn.COUNT(Job.id)).group_by(Job.task, Job.state)
    for task, state, count in cast(
        "Iterable[tuple[str, str, int]]", rows.tuples()
    ):  # stubs: models
        counts[state] = counts.get(state, 0) + count
        by_task.setdefault(task, dict.fromkeys(JOB_STATES, 0))[state] = count
    queued = Job.select().where(Job.state == "queued")
    waiting = queued.where(Job.run_at > now).count()
    oldest = queued.where(Job.run_at <= now).select(peewee.fn.MIN(Job.run_at)).scalar()
    return Stats(counts, waiting, Job.run_at.python_value(oldest), by_task)


def dead_since(moment: datetime) -> int:
    """How many jobs have died (run out of attempts) since ``moment``."""
    return Job.select().where((Job.state == "dead") & (Job.finished_at >= moment)).count()


def retry(job_id: int, *, now: datetime) -> Job:
    """Queue a dead or cancelled job again now, as if new: its attempts count from zero and
    its age (which bounds how long some handlers keep retrying) from now."""
    try:
        return _change(
            job_id,
            ("dead", "cancelled"),
            ("retried", "retrying"),
            state="queued",
            attempts=0,
            run_at=now,
            created_at=now,
            updated_at=now,
            finished_at=None,
        )
    except peewee.IntegrityError:
        raise Conflict(
            f"job {job_id} cannot be retried: another job with key "
            f"{get(job_id).unique_key!r} is pending"
        ) from None


def bring_forward(unique_key: str, payload: dict[str, Any], *, now: datetime) -> bool:
    """Make the queued job with ``unique_key`` due now, as if new (``payload``, attempts from
    zero); False when there is none queued (it may be running)."""
    with db.transaction():
        changed = (
            Job.update(payload=payload, run_at=now, attempts=0, created_at=now, updated_at=now)
            .where((Job.unique_key == unique_key) & (Job.state == "queued"))
            .execute()
        )
    if changed:
        queue.announce()
    return bool(changed)


def dead_ids() -> list[int]:
    return [job.id for job in Job.select(Job.id).where(Job.state == "dead").order_by(Job.id)]


def cancel(job_id: int, *, now: datetime) -> Job:
    """Cancel a queued or dead job; a running one cannot be stopped half-way."""
    return _change(
        job_id,
        ("queued", "dead"),
        ("cancelled", "cancelling"),
        state="cancelled",
        updated_at=now,
        finished_at=now,
    )


def _change(job_id: int, allowed: tuple[str, str], verb: tuple[str, str], **changes) -> Job:
    """An operator's change to one job, only from the ``allowed`` states, made conditionally
    on the state it was read in; a job queued again wakes the listening workers."""
    job = get(job_id)
    if job.state not in allowed:
        raise Conflict(
            f"job {job_id} is {job.state}; only {' or '.join(allowed)} jobs can be {verb[0]}"
        )
    with db.transaction():
        changed = Job.update(**changes).where((Job.id == job_id) & (Job.state == job.state))
        if not changed.execute():
            raise Conflict(f"job {job_id} changed while {verb[1]} it; look again")
        if changes["state"] == "queued":
            db.notify(queue.CHANNEL)
    return get(job_id)


def prune(*, before: datetime) -> int:
    """Delete done and cancelled jobs, and ticks, finished before ``before``. Dead jobs stay
    until an operator retries or cancels them: they are the evidence of what went wrong."""
    with db.transaction():
        jobs = Job.delete().where(Job.state.in_(FINISHED) & (Job.finished_at < before)).execute()
        ScheduleRun.delete().where(ScheduleRun.created_at < before).execute()
    return jobs
