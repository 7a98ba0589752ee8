"""``t2ctl serve`` as an operator runs it: a real process, zero config, SIGTERM."""

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


SERVE = [sys.executable, "-m", "t2ctl", "serve"]  # the conftest clears T2CTL_* first


def start(cwd: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start the daemon on a free port and wait until it says where it listens."""
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", *args], cwd=cwd, stderr=subprocess.PIPE, text=True
    )
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = LISTENING.search(line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise AssertionError("the daemon did not start:\n" + "".join(lines))


def serve_once(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a daemon expected to refuse to start."""
    return subprocess.run([*SERVE, *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def test_zero_config_serve_answers_health_in_sandbox_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc, url = start(tmp_path)
    try:
        response = requests.get(f"{url}/t2mobile/health", timeout=5)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["database"] == "ok"
        assert body["mode"] == "sandbox"
        assert body["version"]
        assert (tmp_path / "t2ctl.db").exists()
        key_file = tmp_path / "t2ctl.db.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    rest = proc.stderr.read()
    assert "stopped" in rest


def test_serve_refuses_an_invalid_config_with_the_key_named(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[server]\nthreads = 0\n")
    result = serve_once(tmp_path)
    assert result.returncode == 1
    assert "server.threads: Input should be greater than or equal to 1" in result.stderr


def test_serve_reports_a_port_in_use_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_once(tmp_path, "--port", str(port))
    assert result.returncode == 1
    assert f"t2ctl: error: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
