"""Real processes for ``python -m bench``: a config in a temporary directory, the ``t2ctl`` of
this interpreter (so ``PYTHONPATH`` decides which checkout runs), daemons started and always
stopped, and their readiness read from their logs."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

from t2ctl import db

T2CTL = [sys.executable, "-m", "t2ctl"]
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")
WORKER_STARTED = re.compile(r"worker \S+ started")
READY_TIMEOUT = 60.0
STOP_GRACE = 30.0
PRODUCT = "BENCH-12M"
PRICE_MINOR = 1_500_000  # 15000.00 NGN
# Lifted so that intake, not the partner's limit, is what is measured.
UNLIMITED = 1_000_000_000


@dataclass
class Rig:
    """One database with its config file and the environment every child process gets."""

    root: Path
    url: str
    config: Path
    env: dict[str, str]

    def t2ctl(self, *args: str) -> str:
        """One ``t2ctl --config ... ARGS`` to its end; its stdout. Fails loudly on exit != 0."""
        done = subprocess.run(
            [*T2CTL, "--config", str(self.config), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"t2ctl {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def add_partner(self, name: str, webhook_url: str) -> str:
        """A partner made as the README's walkthrough makes it; its API key."""
        created = json.loads(
            self.t2ctl("partners", "add", name, "--webhook-url", webhook_url, "--json")
        )
        return str(created["apiKey"])

    def add_product(self) -> None:
        catalogue = self.root / "catalogue.csv"
        catalogue.write_text(
            "productId,name,description,price,currency,termMonths,active\n"
            f"{PRODUCT},Bench subscription,Twelve months,{PRICE_MINOR / 100:.2f},NGN,12,true\n"
        )
        self.t2ctl("products", "import", str(catalogue))


def order_body(prefix: str) -> str:
    """A valid fulfilment body (its amount the product's price × quantity) whose orderId is
    ``prefix`` then ``ORDERID``, which the load replaces by a number of its own."""
    quantity = 2
    body = {
        "orderId": f"{prefix}ORDERID",
        "productId": PRODUCT,
        "quantity": quantity,
        "customer": {"id": "CUST-1", "name": "Ada Obi", "email": "ada@example.ng"},
        "amount": {"value": f"{PRICE_MINOR * quantity / 100:.2f}", "currency": "NGN"},
        "metadata": {"channel": "bench"},
    }
    return json.dumps(body)


@contextmanager
def connected(url: str) -> Iterator[None]:
    """This process on the bench's database (to read what the daemons stored), until the end."""
    handle = db.connect(url, max_connections=2)
    try:
        yield
    finally:
        if hasattr(handle, "close_all"):  # PostgreSQL's pool
            handle.close_all()
        else:
            handle.close()


@contextmanager
def rig(url: str, **sections: dict[str, Any]) -> Iterator[Rig]:
    """A migrated database at ``url`` and a config file for it: the defaults, the partners'
    rate limit lifted, and ``sections`` (``sandbox={"provision_delay": "0s"}``). The master key
    is given by environment, as the README advises for production; this shell's own
    ``T2CTL_*`` variables are left out, so that nothing but this file decides."""
    with tempfile.TemporaryDirectory(prefix="t2bench-") as tmp:
        root = Path(tmp)
        config = root / "config.toml"
        settings: dict[str, dict[str, Any]] = {
            "database": {"url": url},
            "server": {"rate_limit_per_minute": UNLIMITED},
        }
        for name, values in sections.items():
            settings.setdefault(name, {}).update(values)
        config.write_text(toml(settings))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("T2CTL_")},
            "T2CTL_SECURITY__MASTER_KEY": Fernet.generate_key().decode(),
            # This checkout's t2ctl and bench, whatever is installed and wherever they run.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(repository()), os.environ.get("PYTHONPATH")])
            ),
        }
        made = Rig(root, url, config, env)
        made.t2ctl("db", "migrate")
        yield made


def toml(settings: dict[str, dict[str, Any]]) -> str:
    """Sections of strings, numbers and booleans, as TOML (JSON's quoting is TOML's)."""
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class Process:
    """A child process whose stderr goes to a log file, read to know when it is ready."""

    def __init__(self, command: list[str], *, log: Path, env: dict[str, str], cwd: Path):
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, pattern: re.Pattern[str], timeout: float = READY_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.log.read_text())
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.log.name}: no {pattern.pattern!r} (exit {self.proc.poll()}); "
            f"its log ends:\n{self.log.read_text()[-3000:]}"
        )

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process has had, in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
        raise RuntimeError(f"no VmHWM for process {self.pid}")

    def errors_logged(self) -> int:
        """Log lines at ERROR or worse, and lines that are not the log's JSON at all (a
        traceback printed past the logging): the log is JSON lines, not being a terminal."""
        return sum(_an_error(line) for line in self.log.read_text().splitlines() if line.strip())

    def stop(self) -> None:
        """SIGTERM (a daemon drains), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _an_error(line: str) -> bool:
    try:
        return json.loads(line).get("level") in ("error", "critical")
    except (ValueError, AttributeError):
        return True


@contextmanager
def running(command: list[str], *, log: Path, env: dict[str, str], cwd: Path) -> Iterator[Process]:
    started = Process(command, log=log, env=env, cwd=cwd)
    try:
        yield started
    finally:
        started.stop()


@contextmanager
def daemon(at: Rig, role: str, name: str) -> Iterator[tuple[Process, str | None]]:
    """``t2ctl serve --role ROLE`` on a free port, its log in ``NAME.log``; once ready, the
    process and its base URL (None for a worker)."""
    command = [*T2CTL, "--config", str(at.config), "serve", "--role", role]
    command += ["--port", "0", "--metrics-port", "0"]
    with running(command, log=at.root / f"{name}.log", env=at.env, cwd=at.root) as proc:
        if role == "worker":
            proc.wait_for(WORKER_STARTED)
            yield proc, None
            return
        if role == "all":
            proc.wait_for(WORKER_STARTED)
        url = proc.wait_for(LISTENING).group(1)
        healthy(url)
        yield proc, url


def healthy(url: str) -> None:
    """The daemon answers its health route: it is serving, not merely listening."""
    answer = requests.get(f"{url}/t2mobile/health", timeout=10)
    answer.raise_for_status()


@contextmanager
def helper(module: str, at: Rig, name: str, *args: str) -> Iterator[str]:
    """``python -m bench.MODULE ARGS`` (the hello app, the receiver); its base URL."""
    command = [sys.executable, "-m", f"bench.{module}", *args]
    with running(command, log=at.root / f"{name}.log", env=at.env, cwd=repository()) as proc:
        yield proc.wait_for(LISTENING).group(1)


def repository() -> Path:
    """The checkout this bench is in: helpers import ``bench`` from there."""
    return Path(__file__).resolve().parent.parent


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every daemon, wrk and temporary directory is cleaned."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
