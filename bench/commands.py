"""Operator commands as whole processes, as an operator waits for them: ``t2ctl --help``,
``t2ctl orders list`` and ``t2ctl status`` on an empty migrated database (hyperfine, after a
warm-up; repeated runs here when hyperfine is missing), and what importing the command line's
entry module costs (``python -X importtime``): the total, and the packages t2ctl imports that
weigh most.
"""

import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter

from bench import harness
from bench.report import Row, below, failed

ENTRY = "t2ctl.cli.main"  # [project.scripts] t2ctl
COMMANDS = {  # label: whether it reads the database (given by --config), its arguments, ms
    "t2ctl --help": (False, ("--help",), 150),
    "t2ctl orders list": (True, ("orders", "list"), 250),
    "t2ctl status": (True, ("status",), 250),
}
WARMUP = 3
IMPORT_TRIES = 3  # the least of these is reported: the others only waited longer for a core
HEAVIEST = 5
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")


def measure(url: str, *, quick: bool) -> list[Row]:
    runs = 5 if quick else 20
    with harness.rig(url) as at:
        rows = [timed(at, label, runs) for label in COMMANDS]
        rows.append(imports(at))
    return rows


def timed(at: harness.Rig, label: str, runs: int) -> Row:
    """min and median wall time of the command, in ms; the target is on the median."""
    reads, args, target = COMMANDS[label]
    command = [*harness.T2CTL, *(("--config", str(at.config)) if reads else ()), *args]
    row_label = f"commands: {label}"
    try:
        times = (
            hyperfine(at, command, runs) if shutil.which("hyperfine") else repeat(at, command, runs)
        )
    except subprocess.CalledProcessError as exc:
        return failed(row_label, f"exit {exc.returncode}: {(exc.stderr or '')[-200:]}")
    low, middle = min(times), statistics.median(times)
    judged = below(row_label, middle, target, "ms")
    text = f"min {low:,.0f} · median {middle:,.0f} ms"
    return Row(row_label, text, f"median {judged.target}", middle, judged.meets, {"min_ms": low})


def hyperfine(at: harness.Rig, command: list[str], runs: int) -> list[float]:
    """Each run's wall time in ms, by hyperfine without a shell in between."""
    export = at.root / "hyperfine.json"
    subprocess.run(
        [
            *("hyperfine", "-N", "--style", "none", "--warmup", str(WARMUP), "--runs", str(runs)),
            *("--export-json", str(export), shlex.join(command)),
        ],
        cwd=at.root,
        env=at.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return [seconds * 1000 for seconds in json.loads(export.read_text())["results"][0]["times"]]


def repeat(at: harness.Rig, command: list[str], runs: int) -> list[float]:
    """The same without hyperfine: each run's wall time in ms, after the warm-up."""
    times = []
    for n in range(WARMUP + runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=at.root, env=at.env, capture_output=True, text=True, check=True)
        if n >= WARMUP:
            times.append((time.perf_counter() - started) * 1000)
    return times


def imports(at: harness.Rig) -> Row:
    """``import ENTRY`` in a fresh interpreter, the least total of IMPORT_TRIES; the note
    names the packages, outside t2ctl, whose import from t2ctl cost most."""
    label = f"commands: import {ENTRY}"
    tries = [import_times(at) for _ in range(IMPORT_TRIES)]
    total_us, heaviest_us = min(tries, key=lambda found: found[0])
    heaviest = {name: us / 1000 for name, us in heaviest_us.most_common(HEAVIEST)}
    named = ", ".join(f"{name} {ms:,.0f}" for name, ms in heaviest.items())
    total = total_us / 1000
    note = f"import {ENTRY}: {total:,.0f} ms; heaviest packages imported by t2ctl, ms: {named}"
    return Row(label, f"{total:,.0f} ms", "", total, None, heaviest, note)


def import_times(at: harness.Rig) -> tuple[int, Counter[str]]:
    """The entry module's import in µs, and per package outside t2ctl the µs of its imports
    made by t2ctl modules (each package's cost falls on its first importer)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {ENTRY}"],
        cwd=at.root,
        env=at.env,
        capture_output=True,
        text=True,
        check=True,
    )
    total, heaviest = 0, Counter[str]()
    importers: dict[int, str] = {}  # depth: the module importing at that depth
    lines = [LINE.match(line) for line in done.stderr.splitlines()]
    for found in reversed([line for line in lines if line is not None]):  # importers first
        cumulative, depth, name = int(found[2]), len(found[3]) // 2, found[4]
        importers[depth] = name
        root = name.split(".")[0]
        if depth == 0 and root == "t2ctl":
            total += cumulative
        elif depth > 0 and root != "t2ctl" and importers[depth - 1].startswith("t2ctl"):
            heaviest[root] += cumulative
    return total, heaviest
