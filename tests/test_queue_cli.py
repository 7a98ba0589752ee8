"""``t2ctl queue``: what an operator sees and does with the job table."""

import json
from datetime import timedelta

from t2ctl.jobs import admin, queue, tasks
from t2ctl.jobs.models import Job
from t2ctl.jobs.worker import Worker
from t2ctl.security import audit
from tests.conftest import Cli


def runner(outcome: list[str]) -> Worker:
    """A worker whose ``chore`` jobs fail until ``outcome`` says ok."""

    def chore(_context: tasks.Context) -> None:
        if outcome[-1] != "ok":
            raise RuntimeError(outcome[-1])

    registry = tasks.Registry()
    registry.add("chore", chore)
    return Worker(registry, name="w", lease=timedelta(seconds=30))


def test_a_dead_job_is_found_shown_and_retried_from_the_cli(cli: Cli) -> None:
    outcome = ["the upstream said no"]
    worker = runner(outcome)
    job_id = queue.enqueue("chore", {"n": 1}, max_attempts=1)
    assert worker.run_once()

    stats = json.loads(cli("queue", "stats", "--json").stdout)
    assert stats["counts"]["dead"] == 1 and stats["byTask"]["chore"]["dead"] == 1
    dead = json.loads(cli("queue", "list", "--state", "dead", "--json").stdout)
    assert [job["id"] for job in dead] == [job_id]
    shown = cli("queue", "show", str(job_id))
    assert "RuntimeError: the upstream said no" in shown.stdout
    assert '{"n": 1}' in shown.stdout

    retried = cli("queue", "retry", str(job_id))
    assert retried.exit_code == 0 and "1 job(s) queued again" in retried.stderr
    assert (admin.get(job_id).state, admin.get(job_id).attempts) == ("queued", 0)
    outcome.append("ok")
    assert worker.run_once()
    assert admin.get(job_id).state == "done"

    again = cli("queue", "retry", str(job_id))
    assert again.exit_code == 1
    assert f"job {job_id} is done; only dead or cancelled jobs can be retried" in again.stderr


def test_retry_all_dead_and_cancel(cli: Cli) -> None:
    worker = runner(["down"])
    for n in range(3):
        queue.enqueue("chore", {"n": n}, max_attempts=1)
    while worker.run_once():
        pass
    assert Job.select().where(Job.state == "dead").count() == 3
    result = cli("queue", "retry", "--all-dead")
    assert result.exit_code == 0 and "3 job(s) queued again" in result.stderr
    assert Job.select().where(Job.state == "queued").count() == 3

    first = Job.select().order_by(Job.id).first().id
    cancelled = cli("queue", "cancel", str(first))
    assert cancelled.exit_code == 0 and f"job {first} cancelled" in cancelled.stderr
    assert admin.get(first).state == "cancelled"
    listing = cli("queue", "list")
    assert "cancelled" in listing.stdout and "chore" in listing.stdout
    actions = {event.action for event in audit.listing(limit=10)}
    assert {"queue.retry", "queue.cancel"} <= actions, "the audit names what the operator ran"


def test_queue_commands_refuse_bad_input_plainly(cli: Cli) -> None:
    assert cli("queue", "show", "999").exit_code == 3
    assert cli("queue", "retry").exit_code == 2
    assert cli("queue", "retry", "1", "--all-dead").exit_code == 2
    assert cli("queue", "list", "--state", "sleeping").exit_code == 2
    assert cli("queue", "cancel", "999").exit_code == 3
    empty = cli("queue", "list")
    assert empty.exit_code == 0 and "no jobs match" in empty.stderr
