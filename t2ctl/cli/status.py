"""``t2ctl status``: the gateway on one screen, for the operator who was just paged."""

import contextlib
import time
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from t2ctl import clock, db
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, duration, session
from t2ctl.config import Settings
from t2ctl.errors import Unavailable
from t2ctl.monitoring import status as service
from t2ctl.security import redaction


def status(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        str, typer.Option("--interval", help="With --watch: time between refreshes.")
    ] = "2s",
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """The gateway on one screen: mode, database, queue, failures, dead deliveries.

    Shows the queue depth, the oldest pending job, failures in the last hour and dead
    deliveries, for the whole fleet. Exits 1 when the database cannot be reached or its
    schema is behind.
    """
    every = duration(interval, "--interval").total_seconds()
    current = session(ctx, config)
    settings = current.settings
    with contextlib.suppress(Unavailable):  # shown on the screen; the exit code says it too
        current.connect(require_current=False)
    try:
        while True:
            data = _read(settings)
            if json:
                output.emit_json(data, compact=watch)
            else:
                _show(data, clear=watch)
            if not watch:
                raise typer.Exit(0 if _ready(data) else 1)
            time.sleep(max(every, 0.2))
    except KeyboardInterrupt:  # how a watch ends; a single read cut short is not a success
        raise typer.Exit(0 if watch else 130) from None


def _read(settings: Settings) -> dict[str, Any]:
    """One snapshot as plain data: what ``--json`` prints and the screen shows."""
    now = clock.now()
    data: dict[str, Any] = {
        "time": clock.rfc3339(now),
        "mode": settings.mode,
        "database": {"url": settings.database.redacted_url(), "reachable": False},
    }
    try:
        ready = service.readiness()
        if not ready.database:
            data["database"]["problem"] = redaction.redact(ready.problem or "")
            return data
        data["database"].update(reachable=True, pendingMigrations=list(ready.pending))
        depth, failed = service.depth(now), service.failures(now)
    except db.DRIVER_ERRORS:  # gone since, or tables missing before the first migrate
        return data
    finally:
        db.reset()  # a watch must not keep a connection the server may drop between reads
    counts = depth.jobs.counts
    data["queue"] = {
        "queued": counts["queued"],
        "waitingForRetry": depth.jobs.waiting,
        "running": counts["running"],
        "dead": counts["dead"],
    }
    data["oldestPending"] = {
        "seconds": depth.oldest_due_seconds,
        "since": clock.rfc3339(depth.jobs.oldest_due),
    }
    data["failuresLastHour"] = {
        "ordersFailed": failed.orders_failed,
        "jobsDead": failed.jobs_dead,
        "webhookAttemptsFailed": failed.webhook_attempts_failed,
    }
    data["deliveries"] = {"pending": depth.deliveries["pending"], "dead": depth.deliveries["dead"]}
    return data


def _show(data: dict[str, Any], *, clear: bool) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    database = data["database"]
    mode = data["mode"] + (" (provisioning is simulated)" if data["mode"] == "sandbox" else "")
    grid.add_row("mode", mode)
    if not database["reachable"]:
        reason = database.get("problem") or "the schema could not be read"
        grid.add_row("database", _flag(f"{database['url']}  UNREACHABLE: {reason}", True))
    else:
        pending = database["pendingMigrations"]
        schema = (
            f"{len(pending)} migration(s) pending: run `t2ctl db migrate`"
            if pending
            else "schema current"
        )
        grid.add_row("database", _flag(f"{database['url']}  ok, {schema}", bool(pending)))
    if "queue" in data:
        queue = data["queue"]
        grid.add_row(
            "queue",
            f"{queue['queued']} queued ({queue['waitingForRetry']} waiting to retry), "
            f"{queue['running']} running",
        )
        grid.add_row("dead jobs", _flag(str(queue["dead"]), queue["dead"] > 0))
        oldest = data["oldestPending"]
        grid.add_row(
            "oldest pending",
            "none due"
            if oldest["seconds"] is None
            else _flag(
                f"waiting {clock.approximate(timedelta(seconds=oldest['seconds']))} "
                f"(due {oldest['since']})",
                oldest["seconds"] > 60,
            ),
        )
        failed = data["failuresLastHour"]
        grid.add_row(
            "failures, last hour",
            _flag(
                f"{failed['ordersFailed']} order(s) failed, {failed['jobsDead']} job(s) died, "
                f"{failed['webhookAttemptsFailed']} webhook attempt(s) failed",
                any(failed.values()),
            ),
        )
        deliveries = data["deliveries"]
        grid.add_row(
            "dead deliveries",
            _flag(
                f"{deliveries['dead']} ({deliveries['pending']} pending)", deliveries["dead"] > 0
            ),
        )
    console = output.stdout()
    if clear and console.is_terminal:
        console.clear()
    console.print(Group(Text(f"t2ctl status at {data['time']}", style="dim"), grid))


def _ready(data: dict[str, Any]) -> bool:
    database = data["database"]
    return database["reachable"] and not database["pendingMigrations"]


def _flag(text: str, bad: bool) -> Text:
    return Text(text, style="bold red" if bad else "")
