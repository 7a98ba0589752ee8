"""The job engine against a real database (each test on SQLite and on PostgreSQL): enqueue in
the caller's transaction, exclusive claims, backoff, the dead state, leases, unique keys."""

import threading
import time
from datetime import timedelta

import peewee
import psycopg
import pytest

from t2ctl import clock, db
from t2ctl.errors import Conflict
from t2ctl.jobs import admin, queue, signals, tasks
from t2ctl.jobs.models import Job
from t2ctl.jobs.worker import Pool, Worker
from tests.conftest import PG_ADMIN_URL, at_once
from tests.plans import statements
from tests.processes import wait_until

LEASE = timedelta(seconds=30)


def worker_for(*handlers: tuple[str, tasks.Handler], name: str = "w1", **options) -> Worker:
    registry = tasks.Registry()
    for task, handler in handlers:
        registry.add(task, handler, **options)
    return Worker(registry, name=name, lease=LEASE)


def fails(message: str) -> tasks.Handler:
    def handler(_context: tasks.Context) -> None:
        raise RuntimeError(message)

    return handler


def test_backoff_grows_exponentially_with_bounded_jitter_up_to_its_cap() -> None:
    backoff = tasks.Backoff(base=timedelta(seconds=5), cap=timedelta(minutes=10), jitter=0.2)
    exact = [backoff.delay(n, rng=lambda: 0.5).total_seconds() for n in range(1, 10)]
    assert exact == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    assert backoff.delay(3, rng=lambda: 0.0).total_seconds() == pytest.approx(16)
    assert backoff.delay(3, rng=lambda: 1.0).total_seconds() == pytest.approx(24)
    assert backoff.delay(10_000, rng=lambda: 0.5) == timedelta(minutes=10)


def test_a_job_enqueued_in_a_rolled_back_transaction_does_not_exist(migrated) -> None:
    with pytest.raises(RuntimeError), db.transaction():
        queue.enqueue("noop", {})
        raise RuntimeError("the caller's change failed")
    assert Job.select().count() == 0
    with db.transaction():
        job_id = queue.enqueue("noop", {"n": 1})
    assert admin.get(job_id).payload == {"n": 1}


def test_a_unique_key_allows_one_pending_job_then_another_once_it_is_done(migrated) -> None:
    first = queue.enqueue("noop", {}, unique_key="k")
    assert queue.enqueue("noop", {}, unique_key="k") is None
    assert queue.enqueue("noop", {}, unique_key="other") is not None
    worker = worker_for(("noop", lambda _c: None))
    while worker.run_once():
        pass
    assert admin.get(first).state == "done"
    assert queue.enqueue("noop", {}, unique_key="k") is not None


def test_concurrent_enqueues_of_one_key_add_one_job(migrated) -> None:
    results = at_once(10, lambda: queue.enqueue("noop", {}, unique_key="campaign-1"))
    assert len(results) == 10
    assert sum(r is not None for r in results) == 1
    assert Job.select().count() == 1


def test_higher_priority_runs_first_then_oldest(migrated) -> None:
    ran = []
    low = queue.enqueue("record", {"n": "low"})
    high = queue.enqueue("record", {"n": "high"}, priority=5)
    later = queue.enqueue("record", {"n": "low-later"})
    worker = worker_for(("record", lambda c: ran.append(c.payload["n"])))
    while worker.run_once():
        pass
    assert ran == ["high", "low", "low-later"]
    assert {admin.get(i).state for i in (low, high, later)} == {"done"}


def test_a_claim_takes_no_more_jobs_than_its_limit(migrated) -> None:
    for n in range(50):
        queue.enqueue("noop", {"n": n})
    claimed = queue.claim("w", now=clock.now(), lease=LEASE, limit=3)
    assert [job.payload["n"] for job in claimed] == [0, 1, 2]
    assert Job.select().where(Job.state == "running").count() == 3


def test_concurrent_claimers_take_each_job_exactly_once(migrated) -> None:
    for n in range(200):
        queue.enqueue("noop", {"n": n})
    claimed: list[int] = []
    lock = threading.Lock()

    def claim_all(name: str) -> None:
        while jobs := queue.claim(name, now=clock.now(), lease=LEASE, limit=3):
            with lock:
                claimed.extend(job.id for job in jobs)
        db.database.close()

    threads = [threading.Thread(target=claim_all, args=(f"w{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 200 and len(set(claimed)) == 200
    assert Job.select().where(Job.state == "running", Job.attempts == 1).count() == 200


def test_a_failing_job_backs_off_then_goes_dead_keeping_its_last_error(migrated) -> None:
    job_id = queue.enqueue("flaky", {}, max_attempts=3)
    worker = worker_for(("flaky", fails("boom")))

    def attempt(now=None) -> tuple[Job, float]:
        before = clock.now()
        assert worker.run_once(now)
        job = admin.get(job_id)
        return job, (job.run_at - before).total_seconds()

    job, first = attempt()
    assert (job.state, job.attempts) == ("queued", 1)
    assert 5 * 0.8 - 0.5 <= first <= 5 * 1.2
    assert "RuntimeError: boom" in job.last_error
    assert not worker.run_once(), "a job waiting out its backoff is not due"
    job, second = attempt(job.run_at)
    assert (job.state, job.attempts) == ("queued", 2)
    assert 10 * 0.8 - 0.5 <= second <= 10 * 1.2
    job, _ = attempt(job.run_at)
    assert (job.state, job.attempts) == ("dead", 3) and job.finished_at is not None
    assert job.last_error.startswith("RuntimeError: boom at ")
    assert not worker.run_once(now=clock.now() + timedelta(days=1)), "dead jobs never run"


def test_a_handler_can_ask_for_its_own_retry_delay(migrated) -> None:
    def later(_context: tasks.Context) -> None:
        raise tasks.Retry("rate limited", after=timedelta(minutes=3))

    job_id = queue.enqueue("later", {})
    before = clock.now()
    worker_for(("later", later)).run_once()
    job = admin.get(job_id)
    assert job.last_error == "rate limited"
    assert timedelta(minutes=3) <= job.run_at - before < timedelta(minutes=3, seconds=5)


def test_an_expired_lease_is_taken_back_and_the_old_holder_is_fenced_off(migrated) -> None:
    job_id = queue.enqueue("slow", {})
    now = clock.now()
    (held,) = queue.claim("crashed", now=now, lease=timedelta(seconds=30))
    assert queue.recover(now=now + timedelta(seconds=29)) == 0
    assert queue.heartbeat("crashed", [job_id], now=now + timedelta(seconds=20), lease=LEASE) == 1
    assert queue.recover(now=now + timedelta(seconds=45)) == 0, "the heartbeat extended it"
    assert queue.recover(now=now + timedelta(seconds=51)) == 1
    job = admin.get(job_id)
    assert job.state == "queued" and job.worker is None
    assert job.last_error == "lease expired: worker crashed stopped heart-beating"

    (again,) = queue.claim("rescuer", now=now + timedelta(seconds=52), lease=LEASE)
    assert again.attempts == 2
    queue.claim("crashed", now=now, lease=LEASE, limit=0, finished=[held])
    assert admin.get(job_id).state == "running", "the first holder's late success is ignored"
    assert queue.heartbeat("crashed", [job_id], now=now, lease=LEASE) == 0
    queue.claim("rescuer", now=now, lease=LEASE, limit=0, finished=[again])
    assert admin.get(job_id).state == "done"


def test_a_lease_expiring_on_the_last_attempt_makes_the_job_dead(migrated) -> None:
    job_id = queue.enqueue("slow", {}, max_attempts=1)
    now = clock.now()
    queue.claim("crashed", now=now, lease=LEASE)
    assert queue.recover(now=now + timedelta(minutes=1)) == 1
    job = admin.get(job_id)
    assert job.state == "dead" and "lease expired" in job.last_error


def test_a_worker_signals_each_claim_and_how_each_run_ended(migrated) -> None:
    """What the daemon's metrics hear: claimed, then done, retry, dead or lost, with the run's
    seconds; a listener that raises is logged and the worker carries on."""
    heard: list[tuple[str, str, bool]] = []
    hooks = signals.Signals()
    hooks.connect(lambda *_args: 1 / 0)  # a broken listener first
    hooks.connect(lambda signal, job, seconds: heard.append((signal, job.task, seconds is None)))
    registry = tasks.Registry()
    registry.add("fine", lambda _context: None)
    registry.add("flaky", fails("boom"))
    worker = Worker(registry, name="w1", lease=LEASE, hooks=hooks)

    queue.enqueue("fine", {})
    assert worker.run_once()
    queue.enqueue("flaky", {}, max_attempts=2)
    assert worker.run_once()
    assert worker.run_once(clock.now() + timedelta(minutes=1))
    assert heard == [
        ("claimed", "fine", True),
        ("done", "fine", False),
        ("claimed", "flaky", True),
        ("retry", "flaky", False),
        ("claimed", "flaky", True),
        ("dead", "flaky", False),
    ]

    heard.clear()
    queue.enqueue("flaky", {})
    (held,) = worker.claim(1)
    queue.recover(now=clock.now() + 2 * LEASE)  # the lease ran out meanwhile
    assert worker.run(held) is None
    assert heard == [("claimed", "flaky", True), ("lost", "flaky", False)]


def test_a_worker_stores_a_failure_as_its_redactor_masks_it(migrated) -> None:
    job_id = queue.enqueue("leaky", {})
    registry = tasks.Registry()
    registry.add("leaky", fails("token=abc123 refused"))
    worker = Worker(
        registry, name="w1", lease=LEASE, redact=lambda text: text.replace("abc123", "***")
    )
    assert worker.run_once()
    error = admin.get(job_id).last_error
    assert "token=*** refused" in error and "abc123" not in error


def test_release_gives_a_job_back_untried(migrated) -> None:
    job_id = queue.enqueue("slow", {})
    (held,) = queue.claim("draining", now=clock.now(), lease=LEASE)
    assert queue.release(held, now=clock.now())
    job = admin.get(job_id)
    assert (job.state, job.attempts, job.worker) == ("queued", 0, None)


def test_retry_and_cancel_follow_the_state_rules(migrated) -> None:
    dead = queue.enqueue("flaky", {}, max_attempts=1, unique_key="once")
    worker_for(("flaky", fails("nope"))).run_once()
    assert admin.get(dead).state == "dead"
    pending = queue.enqueue("other", {}, run_at=clock.now() + timedelta(hours=1))

    with pytest.raises(Conflict, match="only dead or cancelled jobs can be retried"):
        admin.retry(pending, now=clock.now())
    blocker = queue.enqueue("flaky", {}, unique_key="once")
    with pytest.raises(Conflict, match="another job with key 'once' is pending"):
        admin.retry(dead, now=clock.now())
    assert admin.get(dead).state == "dead", "a refused retry changes nothing"

    admin.cancel(blocker, now=clock.now())
    retried = admin.retry(dead, now=clock.now())
    assert (retried.state, retried.attempts) == ("queued", 0)
    assert retried.last_error.startswith("RuntimeError: nope"), "the last error is kept"
    (running,) = queue.claim("w", now=clock.now(), lease=LEASE)
    with pytest.raises(Conflict, match="is running; only queued or dead jobs can be cancelled"):
        admin.cancel(running.id, now=clock.now())


def test_prune_removes_old_finished_jobs_and_keeps_dead_ones(migrated) -> None:
    done = queue.enqueue("noop", {})
    dead = queue.enqueue("flaky", {}, max_attempts=1)
    worker = worker_for(("noop", lambda _c: None), ("flaky", fails("x")))
    while worker.run_once():
        pass
    assert admin.prune(before=clock.now() - timedelta(days=7)) == 0
    assert admin.prune(before=clock.now() + timedelta(seconds=1)) == 1
    assert Job.get_or_none(Job.id == done) is None
    assert admin.get(dead).state == "dead"


def test_stats_count_states_and_the_oldest_due_job(migrated) -> None:
    now = clock.now()
    queue.enqueue("a", {}, run_at=now - timedelta(minutes=5))
    queue.enqueue("a", {})
    queue.enqueue("b", {}, run_at=now + timedelta(hours=1))
    found = admin.stats(now=clock.now())
    assert found.counts == {"queued": 3, "running": 0, "done": 0, "dead": 0, "cancelled": 0}
    assert found.waiting == 1
    assert abs((found.oldest_due - (now - timedelta(minutes=5))).total_seconds()) < 1
    assert found.by_task["a"]["queued"] == 2 and found.by_task["b"]["queued"] == 1


def test_a_pool_runs_jobs_on_its_threads_and_stops_cleanly(migrated) -> None:
    done: list[int] = []
    worker = worker_for(("record", lambda c: done.append(c.payload["n"])))
    pool = Pool(worker, concurrency=3)
    pool.start()
    try:
        for n in range(30):
            queue.enqueue("record", {"n": n})
        wait_until(lambda: len(done) == 30, timeout=20, what="30 jobs")
    finally:
        pool.stop(grace=5)
    assert sorted(done) == list(range(30))
    assert Job.select().where(Job.state == "done").count() == 30


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_wakes_listeners_on_commit_and_never_on_rollback(migrated) -> None:
    heard: list[bool] = []
    listening = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        notifications = db.listen(queue.CHANNEL, timeout=0.2)
        try:
            for notified in notifications:
                listening.set()
                heard.append(notified)
                if stop.is_set():
                    return
        finally:
            notifications.close()

    thread = threading.Thread(target=listen)
    thread.start()
    try:
        listening.wait(10)
        with pytest.raises(RuntimeError), db.transaction():
            queue.enqueue("noop", {})
            raise RuntimeError("rolled back")
        with db.transaction():  # a commit with nothing to tell
            Job.select().count()
        wait_until(lambda: len(heard) >= 3, timeout=10, what="quiet ticks")
        assert not any(heard), "a rolled-back enqueue wakes no one, nor does the next commit"
        queue.enqueue("noop", {})
        wait_until(lambda: any(heard), timeout=10, what="the NOTIFY of a committed job")
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_is_notified_once_a_transaction_however_many_jobs_it_adds(migrated) -> None:
    with statements() as ran, db.transaction():
        for n in range(3):
            queue.enqueue("noop", {"n": n})
    assert [sql for sql, _params in ran if "pg_notify" in sql] == ["SELECT pg_notify(%s, '')"]
    assert Job.select().count() == 3


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_pool_carries_on_after_the_server_drops_its_connections(migrated) -> None:
    done: list[int] = []
    pool = Pool(worker_for(("record", lambda c: done.append(c.payload["n"]))), concurrency=2)
    pool.start()
    try:
        queue.enqueue("record", {"n": 1})
        wait_until(lambda: done == [1], timeout=20, what="the first job")
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (migrated.database.url.rsplit("/", 1)[1],),
            )
        db.reset()  # this test's own thread
        queue.enqueue("record", {"n": 2})
        wait_until(lambda: done == [1, 2], timeout=30, what="a job after the outage")
    finally:
        pool.stop(grace=5)


def _drop_session_of_this_thread() -> None:
    """The server ends this thread's pooled session, as a restart would, once it is back in
    the pool."""
    (pid,) = db.database.execute_sql("SELECT pg_backend_pid()").fetchone()
    db.database.close()  # back to the pool
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_pooled_connection_idle_past_the_window_is_checked_and_replaced_unseen(
    migrated,
) -> None:
    _drop_session_of_this_thread()
    time.sleep(db.CHECKED_AFTER)
    assert Job.select().count() == 0  # the pool found it dead and opened another


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_pooled_connection_given_back_moments_ago_goes_out_unchecked(migrated) -> None:
    """No round trip to check it: a session that died within the window fails the one query
    (the API's 503), and the broken connection is dropped rather than pooled again."""
    _drop_session_of_this_thread()
    with pytest.raises(peewee.OperationalError):
        Job.select().count()
    db.database.close()  # the request's teardown
    assert Job.select().count() == 0


def _a_job() -> Job:
    now = clock.now()
    return Job(task="t", payload={}, run_at=now, max_attempts=1, created_at=now, updated_at=now)


def test_a_single_statement_write_commits_by_itself_or_with_the_transaction_around_it(
    migrated,
) -> None:
    """On PostgreSQL with no transaction of its own (no BEGIN and COMMIT round trips), on
    SQLite in one (the write lock in turn): either way committed, seen by another session."""
    with db.single():
        assert db.database.in_transaction() is db.is_sqlite()
        _a_job().save()
    assert at_once(1, lambda: Job.select().count()) == [1]  # another thread's connection
    with pytest.raises(RuntimeError), db.transaction():
        with db.single():
            _a_job().save()
        raise RuntimeError("undo")
    assert Job.select().count() == 1


def test_a_job_a_handler_enqueues_due_now_is_taken_by_its_worker_at_once(migrated) -> None:
    """No claim, no wait for one: it is written running, held by the worker, and run next by
    the same thread. A later one, one in a rolled-back change and one of a task this worker
    cannot run are queued as usual, or not at all."""
    ran: list[tuple[str, int]] = []

    def parent(context: tasks.Context) -> None:
        with db.transaction():
            queue.enqueue("child", {"n": 1})
        queue.enqueue("child", {"n": 2}, run_at=clock.now() + timedelta(hours=1))
        queue.enqueue("elsewhere", {})
        with pytest.raises(RuntimeError), db.transaction():
            queue.enqueue("child", {"n": 3})
            raise RuntimeError("this change rolled back")

    worker = worker_for(("parent", parent), ("child", lambda c: ran.append(("child", c.attempt))))
    queue.enqueue("parent", {})
    (claimed,) = worker.claim(1)
    assert worker.run(claimed) == "done"
    (taken,) = worker.taken_by(claimed)
    assert worker.taken_by(claimed) == [], "given once"
    assert (taken.task, taken.payload, taken.attempts) == ("child", {"n": 1}, 1)
    row = admin.get(taken.id)
    assert (row.state, row.worker, row.attempts) == ("running", "w1", 1)
    assert taken.id in {job.id for job in worker.held()}, "its lease is kept by the heartbeat"
    assert worker.run(taken) == "done" and ran == [("child", 1)]
    worker.claim(0, finished=[claimed, taken])
    states = {(job.task, job.state) for job in Job.select()}
    assert states == {
        ("parent", "done"),
        ("child", "done"),
        ("child", "queued"),
        ("elsewhere", "queued"),
    }


def test_a_job_taken_at_once_by_a_worker_that_then_died_is_taken_back_after_its_lease(
    migrated,
) -> None:
    worker = worker_for(("parent", lambda _c: queue.enqueue("child", {})), ("child", fails("x")))
    queue.enqueue("parent", {})
    (claimed,) = worker.claim(1)
    assert worker.run(claimed) == "done"
    worker.claim(0, finished=[claimed])
    (taken,) = worker.taken_by(claimed)  # ... and the worker dies before running it
    later = clock.now() + 2 * LEASE
    assert queue.recover(now=later) == 1
    child = admin.get(taken.id)
    assert (child.state, child.worker) == ("queued", None)
    assert worker_for(("child", lambda _c: None), name="w2").run_once(later)
    assert admin.get(taken.id).state == "done"


def test_run_once_runs_the_jobs_taken_at_once_too(migrated) -> None:
    ran: list[str] = []
    worker = worker_for(
        ("parent", lambda _c: (ran.append("parent"), queue.enqueue("child", {}))),
        ("child", lambda _c: ran.append("child")),
    )
    queue.enqueue("parent", {})
    assert worker.run_once()
    assert ran == ["parent", "child"]
    assert {job.state for job in Job.select()} == {"done"}
    assert not worker.run_once()


def test_after_commit_runs_once_the_transaction_committed_and_never_after_a_rollback(
    migrated,
) -> None:
    called: list[str] = []
    with db.transaction():
        db.after_commit(lambda: called.append("committed"))
        with pytest.raises(RuntimeError), db.transaction():  # a savepoint, rolled back
            db.after_commit(lambda: called.append("savepoint rolled back"))
            raise RuntimeError
        with db.transaction():
            db.after_commit(lambda: called.append("savepoint released"))
        assert called == [], "not before the commit"
    assert called == ["committed", "savepoint released"]
    with pytest.raises(RuntimeError), db.transaction():
        db.after_commit(lambda: called.append("rolled back"))
        raise RuntimeError
    assert called == ["committed", "savepoint released"]
    with pytest.raises(RuntimeError, match="inside transaction"):
        db.after_commit(lambda: None)


def test_the_jobs_a_run_took_are_kept_even_when_its_failure_could_not_be_recorded(
    migrated, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parent(_context: tasks.Context) -> None:
        queue.enqueue("child", {})
        raise RuntimeError("after the child was written")

    def unreachable(*_args, **_kwargs):
        raise psycopg.OperationalError("the database went away")

    worker = worker_for(("parent", parent), ("child", lambda _c: None))
    queue.enqueue("parent", {})
    (claimed,) = worker.claim(1)
    monkeypatch.setattr(queue, "fail", unreachable)
    with pytest.raises(psycopg.OperationalError):
        worker.run(claimed)
    (taken,) = worker.taken_by(claimed)
    assert taken.task == "child" and taken.id in {job.id for job in worker.held()}
