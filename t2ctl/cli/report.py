"""``t2ctl report``: reports for IconTech's finance team."""

import csv
import sys
from datetime import date
from enum import StrEnum
from typing import Annotated

import typer

from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, session
from t2ctl.finance import settlement as sales

app = typer.Typer(no_args_is_help=True)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date like 2026-11-01", param_hint=option
        ) from None


@app.command()
def settlement(
    ctx: typer.Context,
    start: Annotated[
        str, typer.Option("--from", help="The first day (2026-11-01), in schedule.timezone.")
    ],
    end: Annotated[
        str, typer.Option("--to", help="The day after the last (2026-12-01): not included.")
    ],
    partner: Annotated[str | None, typer.Option("--partner", help="Only this partner.")] = None,
    format: Annotated[Format, typer.Option("--format", help="table, csv or json.")] = Format.table,
    config: ConfigOption = None,
) -> None:
    """What each partner sold from --from up to --to, per product and currency: orders
    fulfilled (renewals among them), orders cancelled and refunded, gross, refunded, net."""
    first, after = _day(start, "--from"), _day(end, "--to")
    if after < first:
        raise typer.BadParameter(f"{end} is before --from {start}", param_hint="--to")
    current = session(ctx, config)
    current.connect()
    timezone = current.settings.schedule.timezone
    report = sales.report(first, after, timezone=timezone, partner=partner)
    if format is Format.json:
        output.emit_json(report.public())
    elif format is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=sales.FIELDS)
        writer.writeheader()
        writer.writerows(row.csv() for row in report.rows)
    else:
        _table(report)


def _table(report: sales.Report) -> None:
    figures = ("fulfilled", "renewals", "cancelled", "gross", "refunded", "net")
    output.table(
        ["partner", "product", "currency", *figures],
        [_figures(row.partner, row.product_id, row) for row in report.rows],
        totals=[_figures("total", "", row) for row in report.totals],
        right=figures,
        title=f"Settlement {report.start} to {report.end} (not included), days in "
        f"{report.timezone}",
        empty=f"no sales from {report.start} to {report.end} (not included), days in "
        f"{report.timezone}",
    )


def _figures(partner: str | None, product: str | None, line: sales.Line) -> tuple:
    return (
        partner,
        product,
        line.currency,
        line.fulfilled,
        line.renewals,
        line.cancelled,
        line.gross.value,
        line.refunded.value,
        line.net.value,
    )
