"""A call budget shared by every daemon on the database: at most ``calls`` per ``per``.

Each call reserves the next free slot in one short transaction and then waits for it, so a
backlog drains at a steady rate instead of in bursts that end in 429s. Slots are spaced
``per / (calls - 1)`` apart: any window of length ``per`` holds at most ``calls`` of them
even when a call reaches Zoho up to one slot later than the next one (network jitter), where
an exact ``per / calls`` would have no tolerance at all at the window's edge.
"""

import logging
import time
from datetime import datetime, timedelta

from t2ctl import clock, db
from t2ctl.db.models import RateSlot

logger = logging.getLogger(__name__)


class Pacer:
    def __init__(
        self,
        name: str,
        *,
        calls: int,
        per: timedelta = timedelta(minutes=1),
    ):
        self.name = name
        self.interval = per / max(1, calls - 1)
        self._ready = False

    def acquire(self) -> None:
        """Wait for this process's turn in the shared budget."""
        slot = self._reserve()
        wait = (slot - clock.now()).total_seconds()
        if wait > 0:
            time.sleep(wait)

    def hold(self, until: datetime) -> None:
        """Push every daemon's next call to ``until`` at the earliest (after a 429)."""
        self._ensure(clock.now())
        with db.transaction():
            RateSlot.update(next_at=until).where(
                (RateSlot.name == self.name) & (RateSlot.next_at < until)
            ).execute()
        logger.warning(
            "Zoho asked us to slow down: no call before %s",
            clock.rfc3339(until),
            extra={"action": "zoho_paused"},
        )

    def _reserve(self) -> datetime:
        self._ensure(clock.now())
        with db.transaction():
            row = db.locked(RateSlot.select().where(RateSlot.name == self.name)).get()
            now = clock.now()  # read under the lock: a slot never starts in the past
            slot = max(row.next_at, now)
            RateSlot.update(next_at=slot + self.interval).where(RateSlot.id == row.id).execute()
        return slot

    def _ensure(self, now: datetime) -> None:
        """Create the shared row once per process; whoever is first wins the insert."""
        if self._ready:
            return
        with db.transaction():
            RateSlot.insert(name=self.name, next_at=now).on_conflict_ignore().execute()
        self._ready = True
