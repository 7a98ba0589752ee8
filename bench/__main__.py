"""t2ctl's performance in one table, on SQLite and on PostgreSQL: ``python -m bench``.

    python -m bench [--only intake,e2e,commands,scale] [--quick] [--orders N] [--json FILE]
                    [--on sqlite,postgres]

Each section runs on a fresh database of its own: a SQLite file in a temporary directory, and
a throwaway PostgreSQL database (``T2_TEST_POSTGRES`` names the server, as for the tests). Rows
are measurements, columns the databases and the target; a cell is green when it meets its
target, red when it misses it or the run failed. Exits 1 when a run failed (wrong answers,
socket errors, errors logged, orders lost), whatever the targets.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench import commands, e2e, harness, intake, pace, wrk
from bench.common import postgres_database
from bench.report import Row, failed

Section = Callable[[str, argparse.Namespace], list[Row]]
DATABASES = ("sqlite", "postgres")
NEEDS_WRK = ("intake", "e2e")


def scale(url: str, args: argparse.Namespace) -> list[Row]:
    from bench import scale  # bench/scale.py, another engineer's: imported only when asked

    return [
        Row(label, text, target) for label, text, target in scale.measure(url, orders=args.orders)
    ]


SECTIONS: dict[str, Section] = {
    "intake": lambda url, args: intake.measure(url, quick=args.quick),
    "e2e": lambda url, args: e2e.measure(url, quick=args.quick),
    "fleet": lambda url, args: e2e.fleet(url, quick=args.quick),
    "commands": lambda url, args: commands.measure(url, quick=args.quick),
    "scale": scale,
}


def main() -> None:
    try:
        measure(parse())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, once every process and file is cleaned
        sys.exit("bench: interrupted")


def measure(args: argparse.Namespace) -> None:
    harness.stop_on_sigterm()
    if set(args.only) & set(NEEDS_WRK) and not wrk.available():
        sys.exit("bench: wrk is not installed (sudo apt-get install -y wrk)")
    before = Moment(load(), pace.measure())
    results = {database: run(database, args) for database in args.on}
    after = Moment(load(), pace.measure())
    console = Console(width=140)
    console.print(table(results, args, before, after))
    for database, rows in results.items():
        for row in rows:
            if row.note:
                console.print(f"{database}: {row.note}", highlight=False)
    if args.json is not None:
        write_json(args.json, results, args, before, after)
    if any(row.error for rows in results.values() for row in rows):
        sys.exit(1)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        type=names(SECTIONS),
        default=list(SECTIONS),
        help=f"sections, comma-separated (default: {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--on",
        type=names(DATABASES),
        default=list(DATABASES),
        help="databases, comma-separated (default: sqlite,postgres)",
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke check")
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders seeded by scale")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    return parser.parse_args()


def names(known: tuple[str, ...] | dict[str, Section]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated choice of ``known``, in ``known``'s order."""

    def pick(given: str) -> list[str]:
        chosen = {name.strip() for name in given.split(",") if name.strip()}
        if not chosen or chosen - set(known):
            raise argparse.ArgumentTypeError(f"choose among {', '.join(known)}")
        return [name for name in known if name in chosen]

    return pick


def run(database: str, args: argparse.Namespace) -> list[Row]:
    """Every chosen section on a fresh database of this kind; a section that breaks is a
    failed row (its traceback on stderr), and the others still run."""
    rows: list[Row] = []
    for name in args.only:
        started = time.monotonic()
        print(f"bench: {database}: {name} ...", file=sys.stderr, flush=True)
        try:
            with fresh(database, name) as url:
                rows += SECTIONS[name](url, args)
        except Exception as exc:
            traceback.print_exc()
            rows.append(failed(f"{name}: the section", f"{type(exc).__name__}: {exc}"[:200]))
        print(
            f"bench: {database}: {name} took {time.monotonic() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows


@contextmanager
def fresh(database: str, name: str) -> Iterator[str]:
    if database == "postgres":
        with postgres_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="t2bench-") as tmp:
        yield f"sqlite:///{tmp}/{name}.db"


@dataclass(frozen=True)
class Moment:
    """The machine before or after the runs: its load averages and its pace."""

    load: str
    pace: dict[str, float]


def table(
    results: dict[str, list[Row]], args: argparse.Namespace, before: Moment, after: Moment
) -> Table:
    labels = list(dict.fromkeys(row.label for rows in results.values() for row in rows))
    found = {database: {row.label: row for row in rows} for database, rows in results.items()}
    kind = "quick runs (--quick): a smoke check, not a measurement" if args.quick else "full runs"
    built = Table(
        title=f"t2ctl performance, {kind}, {os.cpu_count()} cores",
        caption=f"green: meets its target; red: misses it, or the run failed. "
        f"Load average before: {before.load}; after: {after.load}. Pace (bench/pace.py) "
        f"before: {pace.shown(before.pace)}; after: {pace.shown(after.pace)}",
    )
    built.add_column("measurement")
    for database in results:
        built.add_column(database, justify="right")
    built.add_column("target", justify="right")
    for label in labels:
        cells = [cell(found[database].get(label)) for database in results]
        target = next((f[label].target for f in found.values() if label in f), "")
        built.add_row(label, *cells, target)
    return built


def cell(row: Row | None) -> Text:
    if row is None:
        return Text("–")
    style = {True: "green", False: "red", None: ""}[row.meets]
    return Text(row.text, style=style)


def load() -> str:
    """The load averages (1, 5, 15 min): the machine's other work, which moves every number."""
    return " ".join(f"{average:.1f}" for average in os.getloadavg())


def write_json(
    path: Path,
    results: dict[str, list[Row]],
    args: argparse.Namespace,
    before: Moment,
    after: Moment,
) -> None:
    document = {
        "quick": args.quick,
        "cores": os.cpu_count(),
        "before": asdict(before),
        "after": asdict(after),
        "databases": {
            database: [asdict(row) for row in rows] for database, rows in results.items()
        },
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
