"""``t2ctl serve`` as an operator runs it: a real process, zero config, SIGTERM."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


def start(cwd: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("T2CTL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "t2ctl", "serve", "--port", "0", *args],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("T2CTL_")}
    result = subprocess.run(
        [sys.executable, "-m", "t2ctl", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "server.threads: Input should be greater than or equal to 1" in result.stderr


def test_serve_reports_a_port_in_use_plainly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("T2CTL_")}
        result = subprocess.run(
            [sys.executable, "-m", "t2ctl", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"t2ctl: error: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
