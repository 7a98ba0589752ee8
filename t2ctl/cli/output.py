"""How commands speak: rich tables for people, plain JSON for scripts, notes on stderr.

stdout carries only the result (a table, or with ``--json`` nothing but JSON); every note,
warning and error goes to stderr as ``t2ctl: ...``. rich drops colour when stdout is not a
terminal or ``NO_COLOR`` is set.

What people read may quote the outside (a customer's name, a partner's response, Zoho's
error), so it is shown as plain text through ``escaping.printable``; ``--json`` keeps it exact.
"""

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from t2ctl.errors import FieldError
from t2ctl.security import redaction
from t2ctl.security.escaping import printable


def _cell(value: Any) -> Text:
    """A value as literal text: a Text is never read as rich markup ("[/]" would crash it,
    "[link=...]" would forge a link)."""
    return Text(printable("" if value is None else str(value)))


def stdout() -> Console:
    # Piped tables keep whole lines (grep-able) instead of folding at rich's default 80.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 1000)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def emit_json(data: Any, *, compact: bool = False) -> None:
    """Plain JSON and a newline on stdout, nothing else; ``compact``: on one line, so that a
    stream of them is JSON Lines."""
    text = json.dumps(data, default=str) if compact else json.dumps(data, indent=2, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
    totals: Sequence[Sequence[Any]] = (),
    right: Sequence[str] = (),
) -> None:
    """Rows under ``columns``, then any ``totals`` in bold below a rule; the columns named
    in ``right`` (figures) aligned right."""
    rows = list(rows)
    if not rows:
        note(empty)
        return
    grid = Table(
        *(
            Column(name, overflow="fold", justify="right" if name in right else "left")
            for name in columns
        ),
        title=title,
    )
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
    grid.rows[-1].end_section = bool(totals)
    for row in totals:
        grid.add_row(*(_cell(cell) for cell in row), style="bold")
    stdout().print(grid)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """One record as aligned ``label  value`` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in pairs:
        grid.add_row(label, _cell(value))
    stdout().print(grid)


def note(message: str) -> None:
    stderr().print(f"t2ctl: {printable(message)}", markup=False, soft_wrap=True)


def error(message: str, problems: Sequence[FieldError] = ()) -> None:
    """An error on stderr, through the log filter's mask: it may quote a remote service."""
    console = stderr()
    console.print(
        f"t2ctl: error: {printable(redaction.redact(message))}",
        markup=False,
        style="red",
        soft_wrap=True,
    )
    for problem in problems:
        text = printable(redaction.redact(f"  {problem.field}: {problem.message}"))
        console.print(text, markup=False, soft_wrap=True)
