"""The engine's own tables: jobs and the ticks of periodic tasks.

Schema changes are never made from here: migration ``0002_jobs`` created them, and these
classes must describe the schema the latest migration leaves.
"""

import peewee

from t2ctl.db.base import BaseModel, JSONTextField, UTCDateTimeField

JOB_STATES = ("queued", "running", "done", "dead", "cancelled")


class Job(BaseModel):
    """A unit of background work; its state machine is owned by ``t2ctl.jobs.queue``.

    queued (``run_at`` says when) → running (held by ``worker`` until ``lease_until``) → done,
    or back to queued for a retry, or dead after the last attempt; cancelled by an operator.
    """

    id = peewee.BigAutoField()
    task = peewee.CharField(max_length=64)
    payload = JSONTextField()
    state = peewee.CharField(max_length=16, default="queued")
    priority = peewee.IntegerField(default=0)  # higher runs first
    run_at = UTCDateTimeField()
    attempts = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField()
    unique_key = peewee.CharField(max_length=200, null=True)  # unique while queued or running
    worker = peewee.CharField(max_length=128, null=True)
    lease_until = UTCDateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = (
            (("state", "priority", "run_at"), False),
            (("state", "lease_until"), False),
            (("state", "finished_at"), False),
        )


# What makes ``unique_key`` unique while a job is pending, and only then (``queue.enqueue``).
Job.add_index(
    Job.index(
        Job.unique_key,
        unique=True,
        name="job_unique_pending",
        where=Job.state.in_(("queued", "running")),
    )
)


class ScheduleRun(BaseModel):
    """One tick of a periodic task, claimed by exactly one daemon: (task, due_at) is unique."""

    task = peewee.CharField(max_length=64)
    due_at = UTCDateTimeField()
    job = peewee.BigIntegerField()
    created_at = UTCDateTimeField()

    class Meta:
        indexes = ((("task", "due_at"), True),)


MODELS = [Job, ScheduleRun]
