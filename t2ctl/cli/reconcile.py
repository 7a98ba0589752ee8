"""``t2ctl reconcile``: do Zoho's sales orders say what the gateway says?"""

from datetime import datetime
from typing import Annotated

import typer

from t2ctl import clock, wiring
from t2ctl.cli import context, output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.finance import reconciliation

MomentOption = Annotated[
    str | None,
    typer.Option(
        help="A date (2026-11-01: its start, in schedule.timezone), a date-time "
        "(2026-11-01T09:00:00Z) or a duration ago (7d)."
    ),
]


def reconcile(
    ctx: typer.Context,
    since: MomentOption = None,
    until: MomentOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Compare the orders created from --since (default: 30 days ago) up to --until (default:
    now) with Zoho's sales orders (the sandbox's, in sandbox mode), by reference number =
    orderId. Exit 0 when they agree, 1 when they drift."""
    current = session(ctx, config)
    timezone = current.settings.schedule.timezone
    end = _moment(until, "--until", timezone) or clock.now()
    start = _moment(since, "--since", timezone) or end - reconciliation.WINDOW
    if start >= end:
        raise typer.BadParameter(
            f"{clock.rfc3339(start)} is not before --until {clock.rfc3339(end)}",
            param_hint="--since",
        )
    current.connect()
    result = wiring.reconcile(
        current.settings,
        current.box(),
        since=start,
        until=end,
        source="cli",
        routine=since is None and until is None,
    )
    if json:
        output.emit_json(result.public())
    elif result.drift:
        output.table(
            ["order id", "kind", "detail"], [(d.order_id, d.kind, d.detail) for d in result.drift]
        )
    for finding in result.findings:
        output.note(f"also: {finding}")
    output.note(
        f"orders created {clock.rfc3339(start)} to {clock.rfc3339(end)}: {result.summary()}"
    )
    if not result.clean:
        raise typer.Exit(1)


def _moment(text: str | None, option: str, timezone: str) -> datetime | None:
    """A date is its start in ``timezone``, as the settlement report's days are."""
    if text is None:
        return None
    return context.moment(text, option, day=lambda day: clock.local(day, timezone))
