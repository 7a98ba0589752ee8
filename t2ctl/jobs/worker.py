"""Running jobs: a ``Worker`` claims and executes them; a ``Pool`` runs it on threads.

The pool has one dispatcher that claims jobs (and records finished ones) in batches, the
threads that run them, a heartbeat that extends their leases (and takes back other workers'
expired ones), and on Postgres a listener that wakes the dispatcher on NOTIFY. Idle, it polls
with a backoff that ends at ``IDLE_MAX`` seconds: an idle daemon sends under a query a second.
"""

import contextlib
import logging
import os
import queue as inbox_queue
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from t2ctl import clock, db
from t2ctl.jobs import queue, signals, tasks
from t2ctl.monitoring import logs

logger = logging.getLogger(__name__)

# The signal a run ends with, by the job's new state (None: another worker had taken it).
ENDINGS = {"done": signals.DONE, "queued": signals.RETRY, "dead": signals.DEAD, None: signals.LOST}
IDLE_MIN = 0.05
IDLE_MAX = 2.0


def worker_name() -> str:
    """host:pid:random, unique per pool, so a lease names the process that holds it."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Claims jobs under one name and runs their handlers; thread-safe.

    ``hooks`` hears of every job claimed and every run's end; ``redact`` masks an error's
    text before it is stored on the job (the daemon's wiring passes the log redaction)."""

    def __init__(
        self,
        registry: tasks.Registry,
        *,
        name: str,
        lease: timedelta,
        hooks: signals.Signals | None = None,
        redact: Callable[[str], str] = str,  # str: kept as it is
    ):
        self.registry = registry
        self.name = name
        self.lease = lease
        self.hooks = hooks or signals.Signals()
        self.redact = redact
        self._held: dict[int, queue.Claimed] = {}
        self._taken: dict[int, list[queue.Claimed]] = {}
        self._lock = threading.Lock()

    def claim(
        self, limit: int, now: datetime | None = None, *, finished: Sequence[queue.Claimed] = ()
    ) -> list[queue.Claimed]:
        """Take up to ``limit`` jobs, recording ``finished`` ones done in the same commit."""
        jobs = queue.claim(
            self.name, now=now or clock.now(), lease=self.lease, limit=limit, finished=finished
        )
        self._forget(finished)
        self._hold(jobs)
        return jobs

    def _hold(self, jobs: Sequence[queue.Claimed]) -> None:
        with self._lock:
            self._held.update((job.id, job) for job in jobs)
        for job in jobs:
            self.hooks.send(signals.CLAIMED, job)

    def _forget(self, jobs: Sequence[queue.Claimed]) -> None:
        """Stop holding these jobs; the same job claimed again since is a new hold."""
        with self._lock:
            for job in jobs:
                if self._held.get(job.id) is job:
                    del self._held[job.id]

    def run_once(self, now: datetime | None = None) -> bool:
        """Claim one due job and run it to its recorded outcome, here, then the jobs its run
        took (see ``taken_by``); False if none was due."""
        jobs = self.claim(1, now)
        claimed = bool(jobs)
        while jobs:
            job = jobs.pop(0)
            if self.run(job) == "done":
                self.claim(0, finished=[job])
            jobs[:0] = self.taken_by(job)
        return claimed

    def taken_by(self, job: queue.Claimed) -> list[queue.Claimed]:
        """The jobs ``job``'s last run enqueued and this worker took at once (``queue.holding``):
        held by it, each to be run next or handed back. Given once."""
        with self._lock:
            return self._taken.pop(job.id, [])

    def run(self, job: queue.Claimed) -> str | None:
        """Run the job's handler. A failure is recorded at once; success is left for the
        caller to record with ``claim(finished=...)``, in the commit that takes the next jobs.
        Return the job's new state, or None if this worker had lost it. The jobs the handler
        enqueued due now are this worker's already: ``taken_by`` gives them."""
        task = self.registry.find(job.task)
        context = tasks.Context(
            job.id,
            job.task,
            job.payload,
            job.attempts,
            job.max_attempts,
            job.created_at,
            clock.now(),
        )
        with logs.bind(job_id=job.id, task=job.task):
            started = time.monotonic()
            with queue.holding(self.name, lease=self.lease, tasks=self.registry) as taken:
                try:
                    state = self._run(job, task, context)
                finally:  # even if recording a failure failed: they are this worker's
                    self._keep(job, taken)
            self.hooks.send(ENDINGS[state], job, time.monotonic() - started)
        return state

    def _keep(self, job: queue.Claimed, taken: list[queue.Claimed]) -> None:
        """Hold the jobs ``job``'s run took, for ``taken_by``."""
        if taken:
            self._hold(taken)
            with self._lock:
                self._taken[job.id] = taken

    def _run(
        self, job: queue.Claimed, task: tasks.Task | None, context: tasks.Context
    ) -> str | None:
        extra = {"attempt": job.attempts}
        try:
            if task is None:
                raise tasks.Retry(f"no handler for task {job.task!r} in this daemon")
            task.handler(context)
        except tasks.Retry as exc:
            error, after = str(exc), exc.after
        except Exception as exc:
            logger.exception("job %s (%s) failed", job.id, job.task, extra=extra)
            error, after = _describe(exc), None
        else:
            return "done"
        try:
            state = self._failed(job, task, error, after)
        finally:
            self._forget([job])
        if state is None:
            logger.warning(
                "job %s (%s) had been taken back from this worker; its outcome is dropped",
                job.id,
                job.task,
                extra={**extra, "action": "job_lease_lost"},
            )
        else:
            logger.info(
                "job %s (%s) attempt %d: %s",
                job.id,
                job.task,
                job.attempts,
                state,
                extra={**extra, "action": f"job_{state}"},
            )
        return state

    def _failed(
        self, job: queue.Claimed, task: tasks.Task | None, error: str, after: timedelta | None
    ) -> str | None:
        now = clock.now()
        backoff = task.backoff if task is not None else tasks.Backoff()
        retry_at = now + (after if after is not None else backoff.delay(job.attempts))
        return queue.fail(job, self.redact(error), now=now, retry_at=retry_at)

    def held(self) -> list[queue.Claimed]:
        with self._lock:
            return list(self._held.values())

    def heartbeat(self, now: datetime | None = None) -> None:
        """Extend the leases of every job this worker runs; warn about any it lost."""
        held = self.held()
        kept = queue.heartbeat(
            self.name, [job.id for job in held], now=now or clock.now(), lease=self.lease
        )
        if kept < len(held):
            logger.warning(
                "%d job lease(s) of %s were lost (was the daemon paused longer than the lease?)",
                len(held) - kept,
                self.name,
                extra={"action": "job_lease_lost"},
            )

    def hand_back(self, waiting: list[queue.Claimed], running: list[queue.Claimed]) -> None:
        """On shutdown: jobs never started go back at once, untried; jobs still running are
        failed as interrupted and retried after a lease, as if this worker had died, so that
        whatever they set going elsewhere has settled before another worker resumes them."""
        now = clock.now()
        for job in waiting:
            queue.release(job, now=now)
        for job in running:
            error = f"interrupted: worker {self.name} stopped before the job finished"
            queue.fail(job, error, now=now, retry_at=now + self.lease)
        self._forget(waiting + running)


def _describe(exc: Exception) -> str:
    """The last error kept on the job: type, message and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Pool:
    """Threads around a Worker. ``start()``, then ``stop(grace)`` from the daemon's main thread."""

    # Threads beside the runners, each with a database connection: the dispatcher, the
    # heartbeat and, on PostgreSQL, the listener.
    HELPER_THREADS = 3

    def __init__(self, worker: Worker, *, concurrency: int):
        self.worker = worker
        self.concurrency = concurrency
        # One batch running and one waiting, so no thread idles through a claim's round trip.
        # A waiting job's lease is kept by the heartbeat; on shutdown it is released untried.
        self.capacity = 2 * concurrency
        # Claims wait for room for this many, so that each commit takes (and records) several.
        self.batch = max(1, concurrency // 2)
        self._inbox: inbox_queue.SimpleQueue[queue.Claimed | None] = inbox_queue.SimpleQueue()
        self._busy = 0
        # Jobs run to success, to be recorded done in the commit of the next claim.
        self._finished: list[queue.Claimed] = []
        self._running: dict[int, queue.Claimed] = {}
        self._handed_back = False
        self._idle = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = threading.Event()  # set after the drain: heartbeats go on until then
        self._claimers: list[threading.Thread] = []
        self._threads: list[threading.Thread] = []
        self._heartbeat_thread: threading.Thread | None = None
        self._forget_waker: Callable[[], None] = lambda: None

    def wake(self) -> None:
        """New work is due (an enqueue here, a NOTIFY): the dispatcher looks at once, unless
        a claim is not due anyway (every thread busy with jobs waiting: a job's end will
        wake it)."""
        with self._idle:
            due = self._claim_due()
        if due:
            self._wake.set()

    def start(self) -> None:
        self._forget_waker = queue.on_enqueue(self.wake)
        self._claimers = [self._spawn("dispatch", self._dispatch)]
        if not db.is_sqlite():
            self._claimers.append(self._spawn("listen", self._listen))
        self._heartbeat_thread = self._spawn("heartbeat", self._heartbeat)
        for index in range(self.concurrency):
            self._spawn(f"run-{index}", self._run)

    def _spawn(self, role: str, target) -> threading.Thread:
        # Daemon threads: a handler that outlives the grace period must not hold the exit.
        thread = threading.Thread(target=target, name=f"t2ctl-{role}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def alive(self) -> bool:
        """Every thread of the pool still runs (a bug that kills one stops its work)."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def stop(self, grace: float) -> None:
        """Stop claiming, let running jobs finish for up to ``grace`` seconds, then hand back
        every job still held (see ``Worker.hand_back``)."""
        self._stopping.set()
        self._forget_waker()
        self._wake.set()
        for thread in self._claimers:
            thread.join(timeout=max(grace, 1.0))  # no claim may land after the wait below
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=grace)
            # From here no job starts, and a late outcome is dropped: its job is handed back.
            self._handed_back = True
            finished, self._finished = self._finished, []
            running = list(self._running.values())
        for _ in range(self.concurrency):
            self._inbox.put(None)
        skip = {job.id for job in finished + running}
        waiting = [job for job in self.worker.held() if job.id not in skip]
        self._guarded(lambda: self.worker.claim(0, finished=finished))
        self._guarded(lambda: self.worker.hand_back(waiting, running))
        self._closed.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=max(grace, 1.0))
        logger.info(
            "worker %s stopped: %d job(s) released untried, %d interrupted",
            self.worker.name,
            len(waiting),
            len(running),
            extra={"action": "worker_stopped"},
        )

    def _dispatch(self) -> None:
        delay = IDLE_MIN
        while not self._stopping.is_set():
            with self._idle:
                free = self.capacity - self._busy
                due = self._claim_due()
            if not due:
                self._wake.wait(IDLE_MAX)
                self._wake.clear()
                continue
            self._wake.clear()
            jobs = self._guarded(lambda free=free: self._settle(free))
            if jobs is None:
                continue  # the database is down: _guarded has waited
            with self._idle:
                self._busy += len(jobs)
            for job in jobs:
                self._inbox.put(job)
            # Work, or a wake-up while waiting, resets the backoff; quiet doubles it.
            delay = IDLE_MIN if jobs or self._wake.wait(delay) else min(delay * 2, IDLE_MAX)

    def _claim_due(self) -> bool:
        """Whether a claim is worth its commit now (call holding ``_idle``): room for a batch,
        or for one job while no job waits in the inbox (a thread would idle). Jobs run to
        success wait for it to be recorded: one commit a batch, not one a job."""
        free = self.capacity - self._busy
        waiting = self._busy - len(self._running)
        return free >= self.batch or (free > 0 and waiting == 0)

    def _settle(self, free: int = 0) -> list[queue.Claimed]:
        """Record the jobs run to success and claim up to ``free`` more, in one commit."""
        with self._idle:
            finished = list(self._finished)
        jobs = self.worker.claim(free, finished=finished)
        with self._idle:
            del self._finished[: len(finished)]  # others may have been appended meanwhile
        return jobs

    def _run(self) -> None:
        while (job := self._inbox.get()) is not None:
            chain = [job]
            while chain:  # a job, then those its run took for this worker (Worker.taken_by)
                job = chain.pop(0)
                if self._starting(job):
                    chain[:0] = self._execute(job)

    def _starting(self, job: queue.Claimed) -> bool:
        with self._idle:
            starting = not self._stopping.is_set()  # else it stays held, to be released
            if starting:
                self._running[job.id] = job
            else:
                self._busy -= 1
                self._idle.notify_all()
        return starting

    def _execute(self, job: queue.Claimed) -> list[queue.Claimed]:
        """Run a started job; return the jobs its run took, counted busy already."""
        state = None
        taken: list[queue.Claimed] = []
        try:
            state = self._guarded(lambda job=job: self.worker.run(job))
        finally:
            taken = self.worker.taken_by(job)
            with self._idle:
                del self._running[job.id]
                if state == "done" and not self._handed_back:
                    self._finished.append(job)
                self._busy += len(taken) - 1
                self._idle.notify_all()
                due = self._claim_due()
            if due:
                self._wake.set()
        return taken

    def _heartbeat(self) -> None:
        interval = self.worker.lease.total_seconds() / 3
        while not self._closed.wait(interval):
            self._guarded(self.worker.heartbeat)
            self._guarded(lambda: queue.recover(now=clock.now()))

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with contextlib.closing(db.listen(queue.CHANNEL, timeout=1.0)) as notifications:
                    for notified in notifications:
                        if notified:
                            self.wake()
                        if self._stopping.is_set():
                            return
            except db.DRIVER_ERRORS as exc:
                logger.warning("LISTEN failed (%s); polling until it is back", exc)
                self._stopping.wait(IDLE_MAX)

    def _guarded(self, step):
        """One step of a loop: a database outage is logged and waited out, never fatal."""
        try:
            return step()
        except db.DRIVER_ERRORS as exc:
            logger.warning("database unavailable for the worker: %s", exc)
            db.reset()
            self._stopping.wait(IDLE_MAX)
        except Exception:
            logger.exception("worker step failed")
        return None
