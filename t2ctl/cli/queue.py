"""``t2ctl queue``: the job table, for operators."""

import json as jsonlib
from typing import Annotated, Any

import typer

from t2ctl import clock, db
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.errors import Conflict
from t2ctl.jobs import admin
from t2ctl.jobs.models import JOB_STATES, Job
from t2ctl.security import audit

app = typer.Typer(no_args_is_help=True)
JobArgument = Annotated[int, typer.Argument(help="The job's id (see `t2ctl queue list`).")]


def _public(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "task": job.task,
        "state": job.state,
        "priority": job.priority,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "runAt": clock.rfc3339(job.run_at),
        "uniqueKey": job.unique_key,
        "worker": job.worker,
        "leaseUntil": clock.rfc3339(job.lease_until),
        "lastError": job.last_error,
        "payload": job.payload,
        "createdAt": clock.rfc3339(job.created_at),
        "updatedAt": clock.rfc3339(job.updated_at),
        "finishedAt": clock.rfc3339(job.finished_at),
    }


@app.command()
def stats(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Jobs by state and task, and how long the oldest due job has waited."""
    session(ctx, config).connect()
    now = clock.now()
    found = admin.stats(now=now)
    if json:
        output.emit_json(
            {
                "counts": found.counts,
                "waitingForRetry": found.waiting,
                "oldestDueAt": clock.rfc3339(found.oldest_due),
                "byTask": found.by_task,
            }
        )
        return
    output.table(
        ["task", *JOB_STATES],
        [
            (task, *(counts[state] for state in JOB_STATES))
            for task, counts in sorted(found.by_task.items())
        ]
        + [("all", *(found.counts[state] for state in JOB_STATES))],
    )
    if found.oldest_due is not None:
        waited = int((now - found.oldest_due).total_seconds())
        output.note(
            f"oldest due job has waited {waited}s (since {clock.rfc3339(found.oldest_due)})"
        )
    if found.waiting:
        output.note(f"{found.waiting} queued job(s) are waiting out a retry backoff")


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help=", ".join(JOB_STATES))] = None,
    task: Annotated[str | None, typer.Option("--task", help="Only jobs of this task.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    state = state.lower() if state else None
    if state is not None and state not in JOB_STATES:
        raise typer.BadParameter(f"must be one of {', '.join(JOB_STATES)}", param_hint="--state")
    session(ctx, config).connect()
    found = admin.listing(state=state, task=task, limit=limit)
    if json:
        output.emit_json([_public(job) for job in found])
        return
    output.table(
        ["id", "task", "state", "attempts", "run at", "updated", "last error"],
        [
            (
                job.id,
                job.task,
                job.state,
                f"{job.attempts}/{job.max_attempts}",
                clock.rfc3339(job.run_at),
                clock.rfc3339(job.updated_at),
                (job.last_error or "")[:80],
            )
            for job in found
        ],
        empty="no jobs match",
    )


@app.command()
def show(
    ctx: typer.Context, job_id: JobArgument, config: ConfigOption = None, json: JsonOption = False
) -> None:
    """Show one job, with its payload and last error."""
    session(ctx, config).connect()
    data = _public(admin.get(job_id))
    if json:
        output.emit_json(data)
        return
    data["payload"] = jsonlib.dumps(data["payload"], sort_keys=True)
    output.fields(list(data.items()))


@app.command()
def retry(
    ctx: typer.Context,
    job_id: Annotated[int | None, typer.Argument(help="A dead or cancelled job's id.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead job.")] = False,
    config: ConfigOption = None,
) -> None:
    """Queue a dead or cancelled job again, its attempts counted afresh."""
    if (job_id is None) == (not all_dead):
        raise typer.BadParameter("give a JOB_ID or --all-dead, not both")
    session(ctx, config).connect()
    ids = admin.dead_ids() if job_id is None else [job_id]
    refused, queued = [], []
    for one in ids:
        try:
            with db.transaction():
                admin.retry(one, now=clock.now())
                audit.record("queue.retry", f"job {one}")
            queued.append(one)
        except Conflict as exc:
            if not all_dead:
                raise
            refused.append(str(exc))
    for reason in refused:
        output.note(reason)
    output.note(f"{len(queued)} job(s) queued again")
    if refused:
        raise typer.Exit(1)


@app.command()
def cancel(ctx: typer.Context, job_id: JobArgument, config: ConfigOption = None) -> None:
    """Cancel a queued or dead job; a running job cannot be stopped half-way."""
    session(ctx, config).connect()
    with db.transaction():
        admin.cancel(job_id, now=clock.now())
        audit.record("queue.cancel", f"job {job_id}")
    output.note(f"job {job_id} cancelled")
