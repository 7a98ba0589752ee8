"""Orders end to end, and webhook delivery alone, through real daemons.

- End to end: N orders sent by 16 keep-alive clients (``bench/clients.py``, a process of its
  own) to sandbox daemons (``sandbox.provision_delay = "0s"``), timed from the first POST to
  the last ``order.fulfilled`` webhook taken by a receiver in another process
  (``bench/receiver.py``): one daemon (``--role all``), then an api and a worker daemon. The
  daemons' peak RSS (VmHWM) is read once the load is over.
- Delivery alone: K events recorded by this process through ``webhooks.outbox.record`` (a
  hundred a transaction, each with its ``deliver`` job), then delivered by a ``--role worker``
  daemon: deliveries a second from the first webhook received to the last.

The receiver alone is measured too (wrk, 16 clients): it must be far faster than the pipeline.
"""

import json
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

import requests

from bench import harness, wrk
from bench.report import Row, at_least, below, errors_row, failed
from t2ctl import clock
from t2ctl.db.models import Partner
from t2ctl.webhooks import outbox

CLIENTS = 16
STALL = 30.0  # seconds without a new webhook: the pipeline has stopped, not slowed
RECORD_BATCH = 100
LAYOUTS = {"all": ("all",), "api+worker": ("api", "worker")}


def measure(url: str, *, quick: bool) -> list[Row]:
    orders, deliveries = (300, 500) if quick else (3000, 5000)
    with harness.rig(url, sandbox={"provision_delay": "0s"}) as at:
        at.add_product()
        rows = [receiver_alone(at, 1 if quick else 3)]
        for name, roles in LAYOUTS.items():
            rows += end_to_end(at, name, roles, orders)
        rows += delivery_alone(at, deliveries)
    return rows


def receiver_alone(at: harness.Rig, seconds: int) -> Row:
    label = f"e2e: receiver alone @{CLIENTS}"
    with harness.helper("receiver", at, "receiver-alone") as hooks:
        run = wrk.run(hooks, CLIENTS, seconds, "hook", 204)
    if run.problem is not None:
        return failed(label, run.problem)
    return Row(label, f"{run.rate:,.0f}/s", "", run.rate)


FLEET = range(1, 5)


def fleet(url: str, *, quick: bool) -> list[Row]:
    """End to end through 1 to 4 api daemons and as many worker daemons on one PostgreSQL: how
    far more daemons take it on this machine. SQLite is one host's database: not measured."""
    labels = [f"fleet: {size} api + {size} worker, orders/s" for size in FLEET]
    if url.startswith("sqlite:"):
        return [Row(label, "— (one host's)") for label in labels]
    orders = 300 if quick else 3000
    with harness.rig(url, sandbox={"provision_delay": "0s"}) as at:
        at.add_product()
        rows = []
        for size, label in zip(FLEET, labels, strict=True):
            roles = ("api",) * size + ("worker",) * size
            rate, *_ = end_to_end(at, f"fleet {size}+{size}", roles, orders)
            rows.append(
                Row(label, rate.text, rate.target, rate.value, rate.meets, error=rate.error)
            )
    return rows


def end_to_end(at: harness.Rig, name: str, roles: tuple[str, ...], orders: int) -> list[Row]:
    label = f"e2e {name}"
    tag = "".join(role[0] for role in roles)
    with harness.helper("receiver", at, f"receiver-{tag}") as hooks:
        key = at.add_partner(f"e2e-{tag}", f"{hooks}/hooks")
        with ExitStack() as stack:
            daemons = [
                stack.enter_context(harness.daemon(at, role, f"{tag}-{role}-{n}"))
                for n, role in enumerate(roles)
            ]
            bases = ",".join(url for _, url in daemons if url is not None)
            sent = submit(at, bases, key, orders, f"E{tag}-")
            arrived = webhooks(hooks, orders)
            peaks = {
                role: proc.peak_rss_mb() for role, (proc, _) in zip(roles, daemons, strict=True)
            }
            errors = sum(proc.errors_logged() for proc, _ in daemons)
    rows = [
        rss_row(f"{label}: peak RSS", peaks),
        errors_row(f"{label}: errors logged", errors),
    ]
    rate_label = f"{label}: orders/s"
    if sent["statuses"] != {"202": orders}:
        return [failed(rate_label, f"answers {sent['statuses']}", "≥ 300/s"), *rows]
    if arrived["count"] < orders:
        why = f"{arrived['count']:,} of {orders:,} webhooks arrived"
        return [failed(rate_label, why, "≥ 300/s"), *rows]
    return [at_least(rate_label, orders / (arrived["last"] - sent["started"]), 300, "/s"), *rows]


def submit(at: harness.Rig, base: str, key: str, orders: int, prefix: str) -> dict[str, Any]:
    """``bench/clients.py``: ``orders`` orders from CLIENTS clients; its account of them."""
    command = [sys.executable, "-m", "bench.clients", base, key, harness.order_body(prefix)]
    command += [str(orders), str(CLIENTS)]
    done = subprocess.run(
        command,
        cwd=harness.repository(),
        env=at.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return dict(json.loads(done.stdout))


def webhooks(hooks: str, expected: int) -> dict[str, Any]:
    """The receiver's counts once ``expected`` orders' webhooks arrived, or once none has
    arrived for STALL seconds."""
    counts: dict[str, Any] = {"count": 0}
    progressed = time.monotonic()
    while time.monotonic() - progressed < STALL:
        latest = requests.get(f"{hooks}/count", timeout=10).json()
        if latest["count"] > counts["count"]:
            progressed = time.monotonic()
        counts = latest
        if counts["count"] >= expected:
            break
        time.sleep(0.1)
    return counts


def delivery_alone(at: harness.Rig, deliveries: int) -> list[Row]:
    label = "webhooks alone: deliveries/s"
    with harness.helper("receiver", at, "receiver-deliver") as hooks:
        at.add_partner("hooks", f"{hooks}/hooks")
        record(at.url, "hooks", deliveries)
        with harness.daemon(at, "worker", "deliver") as (worker, _):
            arrived = webhooks(hooks, deliveries)
            errors = worker.errors_logged()
    rows = [errors_row("webhooks alone: errors logged", errors)]
    if arrived["count"] < deliveries:
        why = f"{arrived['count']:,} of {deliveries:,} arrived"
        return [failed(label, why, "≥ 500/s"), *rows]
    return [
        at_least(label, (deliveries - 1) / (arrived["last"] - arrived["first"]), 500, "/s"),
        *rows,
    ]


def record(url: str, partner: str, count: int) -> None:
    """``count`` order.fulfilled events for ``partner``, as an order's outcome adds them.
    Before the worker starts: recorded while it ran, they came no faster than it delivered on
    PostgreSQL (about 150/s on two busy cores), and the recording was what got timed."""
    with harness.connected(url):
        partner_id = Partner.get(Partner.name == partner).id
        for first in range(0, count, RECORD_BATCH):
            events = [
                outbox.Event(
                    partner_id,
                    "order.fulfilled",
                    {"orderId": f"D-{n:06d}", "status": "FULFILLED"},
                    order_ref=f"D-{n:06d}",
                )
                for n in range(first, min(first + RECORD_BATCH, count))
            ]
            outbox.record_many(events, occurred_at=clock.now())


def rss_row(label: str, peaks: dict[str, float]) -> Row:
    text = " · ".join(f"{role} {mb:,.0f} MB" for role, mb in peaks.items())
    worst = below(label, max(peaks.values()), 200, "MB")
    return Row(label, text, worst.target, worst.value, worst.meets, peaks)
