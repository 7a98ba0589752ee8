"""Intake over HTTP: ``POST /t2mobile/fulfilment`` and ``GET /t2mobile/orders/<id>`` against a
real ``t2ctl serve --role api`` (sandbox, default settings but the partner's rate limit, its
log in a file), beside a bare Flask "hello" on the same HTTP server and settings, each from
``wrk`` in a process of its own, at 1, 16 and 64 keep-alive clients.

Every answer's status is checked (202, 200): a run with any other, or with a socket error, is
reported as failed, not as throughput. After the runs, the orders stored must be the 202s
counted, give or take the requests in flight when each run stopped.
"""

import random
from collections.abc import Callable
from pathlib import Path

from bench import harness, wrk
from bench.report import Row, at_least, below, errors_row, failed
from t2ctl.db.models import Order

CLIENTS = (1, 16, 64)
COMPARED = 16  # the concurrency the ratios are taken at
WARMUP_SECONDS = 1
NOWHERE = "http://127.0.0.1:9/hooks"  # an api-only daemon delivers no webhook


def measure(url: str, *, quick: bool) -> list[Row]:
    seconds = 2 if quick else 5
    with harness.rig(url) as at:
        key = at.add_partner("bench", NOWHERE)
        at.add_product()
        with (
            harness.daemon(at, "api", "api") as (api, base),
            harness.helper("hello", at, "hello", str(at.config)) as hello,
        ):
            assert base is not None
            ids = at.root / "ids.txt"
            kinds: dict[str, Callable[[int, int, str], wrk.Run]] = {
                "hello": lambda c, s, tag: wrk.run(hello, c, s, "hello", 200),
                "POST": lambda c, s, tag: wrk.run(
                    base, c, s, "post", 202, key, harness.order_body(f"{tag}-")
                ),
                "GET": lambda c, s, tag: wrk.run(
                    base, c, s, "get", 200, key, str(stored_ids(url, ids))
                ),
            }
            warmups = {kind: go(COMPARED, WARMUP_SECONDS, "W") for kind, go in kinds.items()}
            runs: dict[tuple[str, int], wrk.Run] = {}
            for clients in CLIENTS:  # each concurrency's three runs together, in one moment
                for kind, go in kinds.items():
                    runs[kind, clients] = go(clients, seconds, f"C{clients}")
            posts = [warmups["POST"], *(runs["POST", clients] for clients in CLIENTS)]
            stored = count_orders(url)
            errors = api.error_lines()
    return [
        *(failed(f"intake: warm-up {k}", r.problem) for k, r in warmups.items() if r.problem),
        *(rate_row(kind, clients, runs[kind, clients]) for kind in kinds for clients in CLIENTS),
        ratio_row("POST", runs, 0.40),
        ratio_row("GET", runs, 0.60),
        stored_row(posts, stored),
        errors_row("intake: ERROR lines in the api log", errors),
    ]


def stored_ids(url: str, into: Path) -> Path:
    """The ids of the orders made so far, shuffled, one a line: the GETs go all over them."""
    with harness.connected(url):
        found = [order.order_id for order in Order.select(Order.order_id)]
    random.shuffle(found)
    into.write_text("\n".join(found) + "\n")
    return into


def count_orders(url: str) -> int:
    with harness.connected(url):
        return int(Order.select().count())


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


def ratio_row(kind: str, runs: dict[tuple[str, int], wrk.Run], floor: float) -> Row:
    label = f"intake: {kind} @{COMPARED} ÷ hello @{COMPARED}"
    measured, hello = runs[kind, COMPARED], runs["hello", COMPARED]
    if measured.problem is not None or hello.problem is not None:
        return failed(label, "a run failed", f"≥ {floor:.2f}")
    return at_least(label, measured.rate / hello.rate, floor, digits=2)


def stored_row(posts: list[wrk.Run], stored: int) -> Row:
    """The orders in the database against the 202s wrk counted: each 202 must be an order, and
    the only orders beyond them those whose answers were in flight when a run stopped."""
    label = "intake: orders stored · 202s"
    accepted = sum(run.matched for run in posts)
    in_flight = sum(run.clients for run in posts)
    text = f"{stored:,} · {accepted:,} (≤ {in_flight} in flight)"
    numbers = {"stored": stored, "accepted": accepted, "in_flight": in_flight}
    if accepted <= stored <= accepted + in_flight:
        return Row(label, text, "every 202 stored", None, True, numbers)
    return Row(label, f"MISMATCH: {text}", "every 202 stored", None, False, numbers, error=True)
