"""Intake over HTTP: ``POST /t2mobile/fulfilment`` and ``GET /t2mobile/orders/<id>`` against a
real ``t2ctl serve --role api`` (sandbox, default settings but the partner's rate limit, its
log in a file), beside a bare Flask "hello" on the same HTTP server and settings, each from
``wrk`` in a process of its own, at 1, 16 and 64 keep-alive clients. At 16 clients, the
hello's floor too (``bench/hello.py``): the same body stored by one ``INSERT``, its own
transaction, on the same kind of database, and read back by its key, with none of t2ctl's
work: how much of the hello's rate any durable write, or keyed read, keeps on this stack; the
floor of an intake, what it must do at least, written by hand (``Intake``); and that floor
with what the contract adds to it, still by hand (``Contracted``).
The 16 clients' runs go in ``ROUNDS`` rounds, every kind in turn: a rate shown is its median
round's, and a ratio the median of the ratios within each round.

Every answer's status is checked (202, 200): a run with any other, or with a socket error, is
reported as failed, not as throughput. After the runs, every orderId answered 202 must be an
order in the database, and the only other orders those whose POSTs were in flight when a run
stopped (wrk leaves their answers unread).
"""

import dataclasses
import random
import statistics
from collections.abc import Callable
from pathlib import Path

from bench import harness, wrk
from bench.report import Row, at_least, below, errors_row, failed
from t2ctl.db.models import Order

CLIENTS = (1, 16, 64)
COMPARED = 16  # the concurrency the ratios are taken at
# Runs at COMPARED clients, every kind in turn each round: this machine's pace moves by a
# factor of two from one run to the next, and a ratio is taken within a round.
ROUNDS = 3
WARMUP_SECONDS = 1
NOWHERE = "http://127.0.0.1:9/hooks"  # an api-only daemon delivers no webhook
Kind = Callable[[int, int, str], wrk.Run]  # clients, seconds, a tag: one run


def measure(url: str, *, quick: bool) -> list[Row]:
    seconds = 2 if quick else 5
    with harness.rig(url) as at:
        key = at.add_partner("bench", NOWHERE)
        at.add_product()
        with (
            harness.daemon(at, "api", "api") as (api, base),
            harness.helper("hello", at, "hello", str(at.config), floor_url(at), key) as hello,
        ):
            assert base is not None
            ids, accepted = at.root / "ids.txt", at.root / "accepted"
            floor_ids, written = at.root / "floor-ids.txt", at.root / "written"
            kinds: dict[str, Kind] = {
                "hello": lambda c, s, tag: wrk.run(hello, c, s, "hello", 200),
                "POST": posted(base, "post", key, "", accepted),
                "GET": lambda c, s, tag: wrk.run(
                    base, c, s, "get", 200, key, str(shuffled(order_ids(url), ids))
                ),
            }
            floors: dict[str, Kind] = {
                "floor write": posted(hello, "write", key, "F", written),
                "floor intake": posted(hello, "intake", key, "I", at.root / "taken"),
                "floor intake, contracted": posted(
                    hello, "contracted", key, "K", at.root / "contracted"
                ),
                "floor read": lambda c, s, tag: wrk.run(
                    hello,
                    c,
                    s,
                    "read",
                    200,
                    key,
                    str(shuffled(answered(at.root, "written"), floor_ids)),
                ),
            }
            warmups = {kind: go(COMPARED, WARMUP_SECONDS, "W") for kind, go in kinds.items()}
            warmups |= {kind: go(COMPARED, WARMUP_SECONDS, "W") for kind, go in floors.items()}
            runs: dict[tuple[str, int], wrk.Run] = {}
            rounds: list[dict[str, wrk.Run]] = []
            for clients in CLIENTS:  # each concurrency's runs together, in one moment
                if clients == COMPARED:
                    every = kinds | floors
                    rounds = [
                        {
                            kind: go(clients, seconds, f"C{clients}R{n}")
                            for kind, go in every.items()
                        }
                        for n in range(ROUNDS)
                    ]
                    runs |= {(kind, clients): median_run(rounds, kind) for kind in every}
                    continue
                for kind, go in kinds.items():
                    runs[kind, clients] = go(clients, seconds, f"C{clients}")
            posts = [warmups["POST"], *(runs["POST", c] for c in CLIENTS if c != COMPARED)]
            posts += [taken["POST"] for taken in rounds]
            stored, accepted_ids = set(order_ids(url)), answered(at.root)
            errors = api.errors_logged()
    return [
        *(failed(f"intake: warm-up {k}", r.problem) for k, r in warmups.items() if r.problem),
        *(rate_row(kind, clients, runs[kind, clients]) for kind in kinds for clients in CLIENTS),
        *(rate_row(kind, COMPARED, runs[kind, COMPARED]) for kind in floors),
        ratio_row("POST", rounds, 0.40),
        ratio_row("GET", rounds, 0.60),
        ratio_row("floor write", rounds),
        ratio_row("floor read", rounds),
        ratio_row("floor intake", rounds),
        ratio_row("floor intake, contracted", rounds),
        stored_row(posts, stored, accepted_ids),
        errors_row("intake: errors in the api log", errors),
    ]


def median_run(rounds: list[dict[str, wrk.Run]], kind: str) -> wrk.Run:
    """``kind``'s run of median rate over the rounds (the first with a problem, if any)."""
    taken = [each[kind] for each in rounds]
    broken = [run for run in taken if run.problem is not None]
    return broken[0] if broken else sorted(taken, key=lambda run: run.rate)[len(taken) // 2]


def posted(url: str, mode: str, key: str, prefix: str, into: Path) -> Kind:
    """Runs that POST new orders (``load.lua``'s ``mode``), their orderIds ``prefix``, the run's
    tag and a number; each 202's orderId written down in ``into``-TAG.N."""

    def go(clients: int, seconds: int, tag: str) -> wrk.Run:
        body = harness.order_body(f"{prefix}{tag}-")
        return wrk.run(url, clients, seconds, mode, 202, key, body, f"{into}-{tag}")

    return go


def floor_url(at: harness.Rig) -> str:
    """The floor's database: PostgreSQL's own (a table of its own), or a SQLite file beside."""
    return at.url if at.url.startswith("postgresql") else f"sqlite:///{at.root}/floor.db"


def order_ids(url: str) -> list[str]:
    with harness.connected(url):
        return [order.order_id for order in Order.select(Order.order_id)]


def shuffled(ids: list[str], into: Path) -> Path:
    """The ids, shuffled, one a line: the GETs go all over the orders."""
    random.shuffle(ids)
    into.write_text("\n".join(ids) + "\n")
    return into


def answered(root: Path, stem: str = "accepted") -> list[str]:
    """The orderIds answered 202 (by the API, or the floor's ``written``), as load.lua wrote
    them down."""
    return [line for path in sorted(root.glob(f"{stem}-*")) for line in path.read_text().split()]


def rate_row(kind: str, clients: int, run: wrk.Run) -> Row:
    label = f"intake: {kind} @{clients}"
    if run.problem is not None:
        return failed(label, run.problem)
    text = f"{run.rate:,.0f}/s · p50 {run.p50_ms:.1f} · p99 {run.p99_ms:.1f} ms"
    numbers = {"rate": run.rate, "p50_ms": run.p50_ms, "p99_ms": run.p99_ms}
    if kind == "POST" and clients == COMPARED:
        p99 = below(label, run.p99_ms, 50, "ms")
        return Row(label, text, f"p99 {p99.target}", run.rate, p99.meets, numbers)
    return Row(label, text, "", run.rate, None, numbers)


def ratio_row(kind: str, rounds: list[dict[str, wrk.Run]], floor: float | None = None) -> Row:
    """``kind``'s rate over the hello's at COMPARED clients, held to ``floor`` if given: the
    median over the rounds of the ratio within each (the machine's pace moves between them)."""
    label = f"intake: {kind} @{COMPARED} ÷ hello @{COMPARED}"
    target = "" if floor is None else f"≥ {floor:.2f}"
    if any(each[k].problem is not None for each in rounds for k in (kind, "hello")):
        return failed(label, "a run failed", target)
    ratios = [each[kind].rate / each["hello"].rate for each in rounds]
    ratio = statistics.median(ratios)
    taken = {f"round {n}": value for n, value in enumerate(ratios, 1)}  # for --json
    if floor is None:
        return Row(label, f"{ratio:.2f}", "", ratio, numbers=taken)
    return dataclasses.replace(at_least(label, ratio, floor, digits=2), numbers=taken)


def stored_row(posts: list[wrk.Run], stored: set[str], accepted: list[str]) -> Row:
    """Each orderId answered 202 must be an order, once; the only orders beyond them may be
    those whose answers were in flight when a run stopped."""
    label, target = "intake: orders stored · 202s", "every 202 stored"
    unanswered = len(stored - set(accepted))
    numbers = {"stored": len(stored), "accepted": len(accepted), "unanswered": unanswered}
    wrong = mismatches(posts, stored, accepted)
    if wrong:
        return Row(label, f"MISMATCH: {'; '.join(wrong)}", target, None, False, numbers, error=True)
    text = f"{len(stored):,} · {len(accepted):,} ({unanswered} in flight at the stops)"
    return Row(label, text, target, None, True, numbers)


def mismatches(posts: list[wrk.Run], stored: set[str], accepted: list[str]) -> list[str]:
    found = []
    lost = set(accepted) - stored
    if lost:
        found.append(f"{len(lost)} answered 202 but not stored")
    if len(set(accepted)) < len(accepted):
        found.append("an orderId answered 202 twice")
    if len(accepted) != sum(run.matched for run in posts):
        found.append("not every 202 written down")
    in_flight = sum(run.clients for run in posts)
    if len(stored - set(accepted)) > in_flight:
        found.append(f"more than {in_flight} orders stored unanswered")
    return found
