"""One ``wrk`` run with ``bench/load.lua``: keep-alive clients, each request's status checked."""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("load.lua")
TIMEOUT = "10s"  # a request slower than this is one of wrk's socket errors, not a latency


@dataclass(frozen=True)
class Run:
    """What one run saw: answers with the expected status (``matched``) and without."""

    clients: int
    requests: int
    seconds: float
    matched: int
    unmatched: int
    others: str  # "status:count ..." of the unmatched
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Expected answers a second: an error is never counted as throughput."""
        return self.matched / self.seconds

    @property
    def problem(self) -> str | None:
        """Why the run cannot stand as a measurement, or None when every answer was right."""
        found = []
        if self.unmatched:
            found.append(f"{self.unmatched:,} wrong status ({self.others})")
        if self.socket_errors:
            found.append(f"{self.socket_errors:,} socket errors")
        if not self.matched:
            found.append("no answer")
        return ", ".join(found) or None


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, clients: int, seconds: int, mode: str, expected: int, *args: str) -> Run:
    """``clients`` connections from one wrk thread for ``seconds``; ``mode`` and ``args`` as
    ``load.lua`` takes them."""
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", TIMEOUT]
    command += ["-s", str(SCRIPT), url, "--", mode, str(expected), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    found = json.loads(lines[-1].removeprefix("BENCH "))
    return Run(
        clients=clients,
        requests=found["requests"],
        seconds=found["duration_us"] / 1e6,
        matched=found["matched"],
        unmatched=found["unmatched"],
        others=found["others"],
        socket_errors=sum(found[kind] for kind in ("connect", "read", "write", "timeout")),
        p50_ms=found["p50_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
    )
