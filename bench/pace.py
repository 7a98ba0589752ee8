"""The machine's pace, taken before and after the runs: on a shared VM it moves every number of
the table from one hour to the next, and two tables compare only beside it.

- hand-over: two threads of one process taking turns through two locks, µs a round trip
  (two hand-overs): a request crosses threads several times (waitress's loop to a request
  thread and back), and this price is what changed most between this machine's fast and
  slow hours (the hello at one client 8,000 requests a second, then 2,000).
- start: ``python -c pass`` as a whole process, ms (the least of a few runs): what every
  command pays before its first import, this install's ``site`` (its .pth files) included.
- loop: a pure Python loop of ten million steps, s: the interpreter's own speed.

``python -m bench.pace`` prints the hand-over and the loop, taken in a process of their own,
as one JSON line; ``measure()`` adds the start.
"""

import json
import statistics
import subprocess
import sys
import threading
import time

ROUND_TRIPS = 5_000
STEPS = 10_000_000
STARTS = 5


def measure() -> dict[str, float]:
    """``{"handover_us", "start_ms", "loop_s"}``, from fresh processes."""
    found = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.pace"], capture_output=True, text=True, check=True
        ).stdout
    )
    return {**found, "start_ms": start_ms()}


def shown(pace: dict[str, float]) -> str:
    return (
        f"hand-over {pace['handover_us']:.0f} µs, python start {pace['start_ms']:.0f} ms, "
        f"loop {pace['loop_s']:.2f} s"
    )


def start_ms() -> float:
    times = []
    for _ in range(STARTS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def handover_us() -> float:
    """The median of three runs of ``ROUND_TRIPS`` round trips between two threads."""
    return statistics.median(_round_trips() for _ in range(3))


def _round_trips() -> float:
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()

    def other() -> None:
        for _ in range(ROUND_TRIPS):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other)
    thread.start()
    started = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        ping.release()
        pong.acquire()
    elapsed = time.perf_counter() - started
    thread.join()
    return elapsed / ROUND_TRIPS * 1e6


def loop_s() -> float:
    started = time.perf_counter()
    for _ in range(STEPS):
        pass
    return time.perf_counter() - started


if __name__ == "__main__":
    print(json.dumps({"handover_us": handover_us(), "loop_s": loop_s()}))
