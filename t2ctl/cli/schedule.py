"""``t2ctl schedule``: the periodic tasks, and running one by hand."""

from datetime import datetime
from typing import Annotated

import typer

from t2ctl import clock, wiring
from t2ctl.cli import context, output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.security import audit

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """The periodic tasks, when each runs next, and the last tick any daemon ran."""
    current = session(ctx, config)
    current.connect()
    scheduler = wiring.scheduler(current.settings)
    plan = scheduler.plan()
    if json:
        output.emit_json(
            [
                {
                    "task": p.task.name,
                    "cadence": p.task.cadence,
                    "timezone": scheduler.timezone,
                    "nextRunAt": clock.rfc3339(p.next_run),
                    "lastDueAt": clock.rfc3339(p.last_due),
                    "lastState": p.last_state,
                }
                for p in plan
            ]
        )
        return
    output.table(
        ["task", "cadence", "next run", "last tick", "its job"],
        [
            (
                p.task.name,
                f"{p.task.cadence} ({scheduler.timezone})",
                clock.rfc3339(p.next_run),
                clock.rfc3339(p.last_due) or "never",
                p.last_state or "-",
            )
            for p in plan
        ],
    )


@app.command()
def run(
    ctx: typer.Context,
    task: Annotated[
        str,
        typer.Argument(
            help="expiry-reminders, expiry-check, prune; reconcile when "
            "schedule.reconcile_at is set."
        ),
    ],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Run as if it were this date (2026-11-20: the task's time that day) "
            "or date-time (2026-11-20T03:00:00Z), to catch up after an outage; not in the "
            "future. Default: now.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run a periodic task now, here; safe to repeat (each task is idempotent)."""
    current = session(ctx, config)
    current.connect()
    scheduler = wiring.scheduler(current.settings)
    scheduler.get(task)
    moment = _as_of(scheduler, task, as_of) if as_of else clock.now()
    summary = scheduler.run_now(task, moment)
    audit.record("schedule.run", task, asOf=clock.rfc3339(moment), summary=summary)
    output.note(f"{task} as of {clock.rfc3339(moment)}: {summary}")


def _as_of(scheduler, task: str, text: str) -> datetime:
    """A past moment: an expiry event sent early could not be taken back."""
    moment = context.moment(text, "--as-of", day=lambda day: scheduler.as_of_day(task, day))
    if moment > clock.now():
        raise typer.BadParameter(
            f"{clock.rfc3339(moment)} is in the future; --as-of catches up, it never runs ahead",
            param_hint="--as-of",
        )
    return moment
