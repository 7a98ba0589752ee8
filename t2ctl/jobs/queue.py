"""The claim protocol: every query a worker's job moves by, and nothing else.

Who owns a job: ``enqueue`` writes it inside the caller's transaction, so a job exists exactly
when the change that asked for it committed. ``claim`` hands it to one worker until its lease
ends; from then only that worker, at that attempt, may record it done (in its next ``claim``),
``fail`` it or ``release`` it: each is a conditional ``UPDATE`` whose row count says whether
the worker still held it. A worker that stops heart-beating loses its jobs to ``recover``
when the lease runs out. What operators do to jobs (retry, cancel, bring forward) and see of
them lives in ``admin``.
"""

import contextlib
import logging
import threading
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import peewee

from t2ctl import clock, db
from t2ctl.jobs.models import Job

logger = logging.getLogger(__name__)

CHANNEL = "t2ctl_jobs"
ERROR_LIMIT = 4000

_local_wakers: set[Callable[[], None]] = set()


def on_enqueue(waker: Callable[[], None]) -> Callable[[], None]:
    """Call ``waker`` whenever this process enqueues a job that is due now: the in-process
    counterpart of NOTIFY, for an API and workers sharing one SQLite daemon. Returns the
    function that stops it."""
    _local_wakers.add(waker)
    return lambda: _local_wakers.discard(waker)


def enqueue(
    task: str,
    payload: dict[str, Any],
    *,
    run_at: datetime | None = None,
    priority: int = 0,
    max_attempts: int = 10,
    unique_key: str | None = None,
) -> int | None:
    """Add a job in the caller's transaction (or its own); return its id.

    With ``unique_key``, return None and add nothing while a job with that key is queued or
    running: the partial unique index decides, so concurrent callers cannot both add one.
    Inside ``holding``, a job due now is taken by that worker as it is written.
    """
    now = clock.now()
    run_at = run_at or now
    holder = getattr(_holding, "holder", None)
    if holder is not None and run_at <= now and task in holder.tasks:
        return _hold(holder, task, payload, priority, max_attempts, unique_key, now)
    with db.joined():
        added = _INSERT.first(task, payload, priority, run_at, max_attempts, unique_key, now, now)
    if added is None:
        return None
    if run_at <= now:
        announce()
    return added[0]


_ENQUEUED = (
    Job.task,
    Job.payload,
    Job.priority,
    Job.run_at,
    Job.max_attempts,
    Job.unique_key,
    Job.created_at,
    Job.updated_at,
)
_QUEUED: dict[peewee.Field, Any] = {Job.state: "queued", Job.attempts: 0}
_INSERT = db.prepared_insert(_ENQUEUED, fixed=_QUEUED, ignore_conflicts=True)


def enqueued_after(
    row: peewee.CTE,
    task: str,
    payload: peewee.Node,
    *,
    unique_key: peewee.Node | None,
    max_attempts: int,
    now: Any,
) -> peewee.Insert:
    """PostgreSQL: a job due now for the row that ``row`` (a data-modifying CTE returning its
    ``id``) inserts, as one statement that returns ``(job id, row id)``: the row and its job
    commit together, by themselves, in one round trip where a transaction of the two took
    four. ``payload`` and ``unique_key`` are SQL over ``row.c.id``; no conflict is ignored,
    as the row is new. Once it has run, ``announce()``."""
    selected = peewee.Select(
        [row],
        [
            peewee.Value(task),
            payload,
            peewee.Value(0),  # priority
            now,
            peewee.Value(max_attempts),
            unique_key,
            now,
            now,
            *map(peewee.Value, _QUEUED.values()),
        ],
    )
    return (
        Job.insert_from(selected, [*_ENQUEUED, *_QUEUED])
        .with_cte(row)
        .returning(
            Job.id,
            peewee.Select([row], [row.c.id]),
        )
        .tuples()
    )


@dataclass
class _Holder:
    worker: str
    lease: timedelta
    tasks: Container[str]
    taken: list["Claimed"] = field(default_factory=list)


_holding = threading.local()


@contextlib.contextmanager
def holding(worker: str, *, lease: timedelta, tasks: Container[str]) -> Iterator[list["Claimed"]]:
    """While a job runs on this thread: a job of one of ``tasks`` that it enqueues, due now, is
    written already claimed by ``worker`` (running, its first attempt, its lease begun), so
    the thread can run it next, with no claim and no wait for one; an order's webhook is sent
    as soon as its outcome is recorded. Yields the list of the jobs taken so, each added once
    its transaction committed. Should the worker die first, ``recover`` takes them back when
    the lease ends, as any claimed job's."""
    previous = getattr(_holding, "holder", None)
    _holding.holder = holder = _Holder(worker, lease, tasks)
    try:
        yield holder.taken
    finally:
        _holding.holder = previous


def _hold(
    holder: _Holder,
    task: str,
    payload: dict[str, Any],
    priority: int,
    max_attempts: int,
    unique_key: str | None,
    now: datetime,
) -> int | None:
    lease_until = now + holder.lease
    with db.joined():
        added = _HELD.first(
            task,
            payload,
            priority,
            now,
            max_attempts,
            unique_key,
            now,
            now,
            holder.worker,
            lease_until,
        )
        if added is None:
            return None
        stored = Job.payload.python_value(Job.payload.db_value(payload))  # as a claim reads it
        job = Claimed(added[0], task, stored, priority, 1, max_attempts, now, holder.worker)
        db.after_commit(lambda: holder.taken.append(job))
    return job.id


_HELD = db.prepared_insert(
    (*_ENQUEUED, Job.worker, Job.lease_until),
    fixed={Job.state: "running", Job.attempts: 1},
    ignore_conflicts=True,
)


def enqueue_many(
    task: str, jobs: Sequence[tuple[dict[str, Any], str | None]], *, max_attempts: int = 10
) -> list[int]:
    """Add several jobs due now, each a (payload, unique key), in one statement in the
    caller's transaction (or its own): ``enqueue`` for a batch, whose statements, built one
    by one, cost more than running them. Returns the ids added; a key that is already
    pending adds nothing."""
    if not jobs:
        return []
    now = clock.now()
    rows = [
        {
            **dict(
                zip(_ENQUEUED, (task, payload, 0, now, max_attempts, key, now, now), strict=True)
            ),
            **_QUEUED,
        }
        for payload, key in jobs
    ]
    with db.joined():
        query = Job.insert_many(rows).on_conflict_ignore().returning(Job.id).tuples()
        added = [row[0] for row in query.execute()]
    if added:
        announce()
    return added


def announce() -> None:
    """Tell the workers a job due now is written: ``NOTIFY`` for other processes' (sent once
    the transaction the caller is in commits, if any) and ``wake_local`` for this one's."""
    db.notify(CHANNEL)
    wake_local()


def wake_local() -> None:
    """Wake this process's own workers (see ``on_enqueue``); call it once the job committed."""
    for waker in list(_local_wakers):
        waker()


# The hot path is written out, once per backend, rather than rebuilt by peewee for every job:
# building this statement cost more than running it.
_CLAIM = """
UPDATE job SET state = 'running', worker = {p}, lease_until = {p}, attempts = attempts + 1,
               updated_at = {p}
WHERE {pick}(SELECT id FROM job WHERE state = 'queued' AND run_at <= {p}
             ORDER BY priority DESC, run_at, id LIMIT {p} {lock}){close}
  AND state = 'queued'
RETURNING id, task, payload, priority, attempts, max_attempts, created_at
"""
_COMPLETE = """
UPDATE job SET state = 'done', worker = NULL, lease_until = NULL, updated_at = {p},
               finished_at = {p}
WHERE worker = {p} AND state = 'running' AND (id, attempts) IN (VALUES {pairs})
"""


def _sql(template: str, *, pairs: int = 0) -> str:
    sqlite = db.is_sqlite()
    p = db.database.param
    return template.format(
        p=p,
        lock="" if sqlite else "FOR UPDATE SKIP LOCKED",
        # On Postgres the pick must run once, as an InitPlan: planned as a SubPlan under
        # ``IN``, it can run again for every row, each time skipping the rows it has just
        # taken, and so claim far more than LIMIT.
        pick="id IN " if sqlite else "id = ANY(ARRAY",
        close="" if sqlite else ")",
        pairs=", ".join([f"({p}, {p})"] * pairs),
    )


def _moment(value: datetime):
    return Job.run_at.db_value(value)


def _utc(stored: Any) -> datetime:
    """A NOT NULL moment as the driver returned it, aware UTC as the models hand it out."""
    moment = Job.created_at.python_value(stored)
    assert moment is not None
    return moment


@dataclass(frozen=True)
class Claimed:
    """A job as its worker holds it: what the handler needs, and what fences its outcome."""

    id: int
    task: str
    payload: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime
    worker: str


def claim(
    worker: str,
    *,
    now: datetime,
    lease: timedelta,
    limit: int = 1,
    finished: Sequence[Claimed] = (),
) -> list[Claimed]:
    """Take up to ``limit`` due jobs for ``worker``, highest priority and oldest first, and
    in the same commit mark ``finished`` (jobs this worker ran to success) done.

    Postgres skips rows another claimer has locked; SQLite serialises claimers on its write
    lock. Either way a job goes to one worker, with ``attempts`` counting this try.
    """
    with db.transaction():
        _unflushed()
        if finished:
            _complete(worker, finished, now)
        if limit < 1:
            return []
        params = (worker, _moment(now + lease), _moment(now), _moment(now), limit)
        rows = db.database.execute_sql(_sql(_CLAIM), params).fetchall()
    claimed = [
        Claimed(
            job_id,
            task,
            Job.payload.python_value(payload),
            priority,
            attempts,
            max_attempts,
            _utc(created_at),
            worker,
        )
        for job_id, task, payload, priority, attempts, max_attempts, created_at in rows
    ]
    return sorted(claimed, key=lambda job: (-job.priority, job.id))  # RETURNING has no order


def _unflushed() -> None:
    """Let this transaction's commit return before PostgreSQL flushes it to disk
    (``synchronous_commit = off``, for this transaction alone): a claim's commit no longer waits
    for an fsync, which on a slow disk took most of the dispatcher's time and bounded the pool.

    Nothing the outside sees is lost with it. Only a crash of the database server itself can
    drop such a commit (a killed worker cannot: the server has it), and only the last moments
    of them; any later synchronous commit, a handler's among them, flushes it too, the log
    being written in order. A claim dropped leaves its jobs queued, as if never taken; a
    completion dropped leaves its job running until its lease ends and it runs again, which
    every handler already allows for (``recover``): a handler's own commits stay synchronous.
    SQLite (``synchronous = normal`` in WAL mode) already commits this way."""
    if not db.is_sqlite():
        db.database.execute_sql("SET LOCAL synchronous_commit = off")


def _complete(worker: str, jobs: Sequence[Claimed], now: datetime) -> int:
    params = [_moment(now), _moment(now), worker]
    for job in jobs:
        params += (job.id, job.attempts)
    done = db.database.execute_sql(_sql(_COMPLETE, pairs=len(jobs)), params).rowcount
    if done < len(jobs):
        logger.warning(
            "%d of %d finished job(s) had been taken back from %s; their outcome is dropped",
            len(jobs) - done,
            len(jobs),
            worker,
            extra={"action": "job_lease_lost"},
        )
    return done


def _held(job: Claimed) -> peewee.Expression:
    """The job as its worker claimed it: same worker, same attempt, still running."""
    return (
        (Job.id == job.id)
        & (Job.worker == job.worker)
        & (Job.attempts == job.attempts)
        & (Job.state == "running")
    )


def heartbeat(worker: str, job_ids: list[int], *, now: datetime, lease: timedelta) -> int:
    """Extend the leases ``worker`` still holds; return how many it still holds."""
    if not job_ids:
        return 0
    with db.transaction():
        return (
            Job.update(lease_until=now + lease)
            .where(Job.id.in_(job_ids) & (Job.worker == worker) & (Job.state == "running"))
            .execute()
        )


def fail(job: Claimed, error: str, *, now: datetime, retry_at: datetime | None) -> str | None:
    """Record a failed attempt: queued again at ``retry_at``, or dead when there is no retry
    or no attempt left. Return the new state, or None if the worker had lost the job.
    ``error`` is stored as given: the worker has already masked it."""
    dead = retry_at is None or job.attempts >= job.max_attempts
    state = "dead" if dead else "queued"
    changes = {
        "state": state,
        "worker": None,
        "lease_until": None,
        "last_error": error[:ERROR_LIMIT],
        "updated_at": now,
    }
    changes.update({"finished_at": now} if dead else {"run_at": retry_at})
    with db.transaction():
        changed = Job.update(**changes).where(_held(job)).execute()
    return state if changed else None


def release(job: Claimed, *, now: datetime) -> bool:
    """Give a held job back untried (a draining daemon): queued now, this attempt not counted."""
    with db.transaction():
        return bool(
            Job.update(
                state="queued",
                worker=None,
                lease_until=None,
                attempts=Job.attempts - 1,
                run_at=now,
                updated_at=now,
            )
            .where(_held(job))
            .execute()
        )


def recover(*, now: datetime) -> int:
    """Take back jobs whose worker stopped heart-beating: queued again, or dead if that was
    their last attempt. Return how many were taken back."""
    expired = (Job.state == "running") & (Job.lease_until < now)
    error = (
        peewee.Value("lease expired: worker ").concat(Job.worker).concat(" stopped heart-beating")
    )
    with db.transaction():
        dead = (
            Job.update(
                state="dead",
                worker=None,
                lease_until=None,
                last_error=error,
                updated_at=now,
                finished_at=now,
            )
            .where(expired & (Job.attempts >= Job.max_attempts))
            .execute()
        )
        requeued = (
            Job.update(
                state="queued",
                worker=None,
                lease_until=None,
                last_error=error,
                run_at=now,
                updated_at=now,
            )
            .where(expired)
            .execute()
        )
    if dead or requeued:
        logger.warning(
            "took back %d job(s) from workers whose lease expired (%d dead)",
            dead + requeued,
            dead,
            extra={"action": "jobs_recovered"},
        )
    return dead + requeued
