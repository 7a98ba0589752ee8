"""Real ``t2ctl serve`` processes for tests: started, watched through their log, signalled."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")
WORKER_STARTED = re.compile(r"worker (\S+) started")


class Daemon:
    """A ``t2ctl serve`` subprocess whose stderr (the log) is read continuously."""

    def __init__(
        self,
        cwd: Path,
        *args: str,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
        shell: str | None = None,
    ):
        """``t2ctl ARGS`` with this interpreter, or a ``shell`` command line as a person
        types it (in a session of its own: signal its group to reach the daemon)."""
        # Metrics on a free port unless told otherwise: tests run several daemons at once.
        environment = {**os.environ, "T2CTL_METRICS__PORT": "0", **(env or {})}
        command = ["bash", "-c", shell] if shell else [sys.executable, "-m", "t2ctl", *args]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            preexec_fn=preexec,  # in the child, before t2ctl starts: a resource limit, say
            start_new_session=shell is not None,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self._lines)

    @property
    def records(self) -> list[dict]:
        """The log so far, a JSON object a line (it is not a terminal); fails on any other."""
        return [json.loads(line) for line in list(self._lines)]

    def messages(self, **fields: object) -> list[str]:
        """The messages of the log lines that carry all these fields."""
        return [r["message"] for r in self.records if all(r.get(k) == v for k, v in fields.items())]

    def wait_for(self, pattern: re.Pattern, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.log)
            if found:
                return found
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                break
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"no {pattern.pattern!r} from the daemon; its log:\n{self.log}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, and the exit code once it has drained."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *_exc) -> None:
        if self.proc.poll() is None:
            self.kill()


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One ``t2ctl`` command as an operator runs it, to its end: its stdout and its stderr,
    where the log goes."""
    return subprocess.run(
        [sys.executable, "-m", "t2ctl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def serve(cwd: Path, config: Path | None, *args: str, env: dict[str, str] | None = None) -> Daemon:
    """Start ``t2ctl serve`` (with ``--config`` when given) and wait until it is ready."""
    prefix = ["--config", str(config)] if config is not None else []
    daemon = Daemon(cwd, *prefix, "serve", *args, env=env)
    daemon.wait_for(WORKER_STARTED if "worker" in args else LISTENING)
    return daemon


def wait_until(condition: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)
