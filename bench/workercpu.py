"""A worker daemon's CPU per order and per delivery: steadier than a rate on a shared machine.

    python -m bench.workercpu [--orders 1000] [--deliveries 2000] [--on sqlite,postgres]

On each database: ``--orders`` orders taken by an api daemon (which is then stopped), then a
``--role worker`` daemon started and timed from its start-up line to the last order's
``order.fulfilled`` at the receiver (``bench/receiver.py``, its own process); then
``--deliveries`` events recorded beforehand, drained by a fresh worker daemon the same way.
CPU is the worker daemon's own (utime + stime of all its threads, from ``/proc/<pid>/stat``)
over that span, start-up excluded: processing and delivering, its idle polling included. The
rate is the worker's alone (orders were stored before it started), not end to end.
"""

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import common, e2e, harness

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of every thread of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def drained(at: harness.Rig, hooks: str, count: int, name: str) -> dict[str, float]:
    """A worker daemon started, then timed until ``count`` orders' webhooks arrived."""
    with harness.daemon(at, "worker", name) as (worker, _):
        (user, system), started = cpu_seconds(worker.pid), time.monotonic()
        arrived = e2e.webhooks(hooks, count)
        seconds = time.monotonic() - started
        user, system = (
            after - before
            for after, before in zip(cpu_seconds(worker.pid), (user, system), strict=True)
        )
        errors = worker.errors_logged()
    assert arrived["count"] >= count, f"{arrived['count']} of {count} arrived"
    return {
        "user_ms": user * 1000 / count,
        "system_ms": system * 1000 / count,
        "per_s": count / seconds,
        "errors": errors,
    }


def measure(url: str, orders: int, deliveries: int) -> dict[str, dict[str, float]]:
    with harness.rig(url, sandbox={"provision_delay": "0s"}) as at:
        at.add_product()
        with harness.helper("receiver", at, "receiver-orders") as hooks:
            key = at.add_partner("cpu-orders", f"{hooks}/hooks")
            with harness.daemon(at, "api", "api") as (_, base):
                sent = e2e.submit(at, str(base), key, orders, "C-")
            assert sent["statuses"] == {"202": orders}, sent
            result = {"orders": drained(at, hooks, orders, "worker-orders")}
        with harness.helper("receiver", at, "receiver-hooks") as hooks:
            at.add_partner("cpu-hooks", f"{hooks}/hooks")
            e2e.record(at.url, "cpu-hooks", deliveries)
            result["deliveries"] = drained(at, hooks, deliveries, "worker-hooks")
    return result


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgres":
        with common.postgres_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="t2bench-") as tmp:
        yield f"sqlite:///{tmp}/cpu.db"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--on", default="sqlite,postgres")
    args = parser.parse_args()
    for kind in args.on.split(","):
        with database(kind) as url:
            for what, found in measure(url, args.orders, args.deliveries).items():
                cpu = found["user_ms"] + found["system_ms"]
                print(
                    f"{kind:8} {what:10} {cpu:.2f} ms CPU each (user {found['user_ms']:.2f}, "
                    f"system {found['system_ms']:.2f}), {found['per_s']:.0f}/s, "
                    f"{found['errors']:.0f} errors",
                    flush=True,
                )


if __name__ == "__main__":
    main()
