"""The gateway at a glance: what ``health``, ``t2ctl status`` and the metrics report.

Every figure is read from the database, so any daemon (or an operator's terminal) sees the
whole fleet's queue, not its own share.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from t2ctl import clock, db
from t2ctl.db import schema
from t2ctl.errors import Unavailable
from t2ctl.jobs import admin
from t2ctl.orders import records
from t2ctl.webhooks import deliveries

RECENT = timedelta(hours=1)
WATCHED = ("pending", "dead")  # the deliveries status shows


@dataclass(frozen=True)
class Readiness:
    """Whether this daemon can take work: the database answers and its schema is current."""

    database: bool
    pending: tuple[str, ...]
    problem: str | None = None  # the driver's reason, for operators only (never the API)

    @property
    def ready(self) -> bool:
        return self.database and not self.pending

    @property
    def migrations(self) -> str:
        """``ok``, ``pending``, or ``unknown`` while the database cannot be asked."""
        if not self.database:
            return "unknown"
        return "pending" if self.pending else "ok"


@dataclass(frozen=True)
class Depth:
    """What is waiting: jobs by state, how long the oldest due job has waited, deliveries."""

    jobs: admin.Stats
    oldest_due_age: timedelta | None
    deliveries: dict[str, int]

    @property
    def oldest_due_seconds(self) -> int | None:
        """The oldest due job's wait in whole seconds, as health and status show it."""
        return None if self.oldest_due_age is None else int(self.oldest_due_age.total_seconds())


@dataclass(frozen=True)
class Failures:
    """What went wrong since ``since``."""

    since: datetime
    orders_failed: int
    jobs_dead: int
    webhook_attempts_failed: int


def readiness() -> Readiness:
    try:
        db.ping()
        return Readiness(True, tuple(schema.pending()))
    except Unavailable as exc:
        return Readiness(False, (), " ".join(str(exc.__cause__).split()))
    except db.DRIVER_ERRORS as exc:
        return Readiness(False, (), " ".join(str(exc).split()))


def depth(now: datetime | None = None, *, statuses: Sequence[str] = WATCHED) -> Depth:
    """Deliveries are counted for ``statuses`` only: the ones an operator watches by default,
    as counting every delivered one reads the whole outbox."""
    now = now or clock.now()
    jobs = admin.stats(now=now)
    age = now - jobs.oldest_due if jobs.oldest_due is not None else None
    return Depth(jobs, age, deliveries.counts(statuses))


def failures(now: datetime | None = None, window: timedelta = RECENT) -> Failures:
    since = (now or clock.now()) - window
    return Failures(
        since,
        records.failed_since(since),
        admin.dead_since(since),
        deliveries.failed_attempts_since(since),
    )
