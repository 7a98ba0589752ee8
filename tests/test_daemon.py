"""``t2ctl serve`` as an operator runs it: a real process, zero config, SIGTERM."""

import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from tests.processes import LISTENING, WORKER_STARTED, run, serve


def serve_once(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a daemon expected to refuse to start (the conftest clears T2CTL_* first)."""
    return run(cwd, "serve", *args)


def test_zero_config_serve_answers_health_in_sandbox_and_stops_on_sigterm(tmp_path: Path) -> None:
    with serve(tmp_path, None, "--port", "0") as daemon:
        url = daemon.wait_for(LISTENING).group(1)
        response = requests.get(f"{url}/t2mobile/health", timeout=5)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["database"] == "ok"
        assert body["mode"] == "sandbox"
        assert body["version"]
        assert (tmp_path / "t2ctl.db").exists()
        key_file = tmp_path / "t2ctl.db.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert daemon.stop(timeout=15) == 0
    assert WORKER_STARTED.search(daemon.log), "role all runs the workers too"
    assert daemon.records[-1]["message"] == "stopped"


def test_a_busy_daemon_logs_every_request_once_on_a_whole_line_to_its_stop(
    tmp_path: Path,
) -> None:
    """Request threads format their lines apart and write them in turn: under many requests
    at once none is lost, repeated or cut into another, and the last before exit are there."""
    with serve(tmp_path, None, "--port", "0") as daemon:
        url = daemon.wait_for(LISTENING).group(1)

        def ask(n: int) -> int:  # no API key: a 401, which has an access line
            headers = {"X-Request-ID": f"busy-{n}"}
            return requests.get(f"{url}/t2mobile/orders/X", headers=headers, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert set(pool.map(ask, range(400))) == {401}
        assert daemon.stop(timeout=15) == 0
    records = daemon.records  # every line parses as JSON, or this fails
    asked = [r["request_id"] for r in records if r.get("action") == "http_request"]
    assert sorted(asked) == sorted(f"busy-{n}" for n in range(400))
    assert records[-1]["message"] == "stopped"


def test_serve_refuses_an_invalid_config_with_the_key_named(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[server]\nthreads = 0\n")
    result = serve_once(tmp_path)
    assert result.returncode == 1
    assert "server.threads: Input should be greater than or equal to 1" in result.stderr


def test_serve_refuses_a_config_file_others_can_read_that_holds_a_secret(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    config = tmp_path / "config.toml"
    config.write_text(f'[security]\nmaster_key = "{key}"\n')
    config.chmod(0o644)
    result = serve_once(tmp_path)
    assert result.returncode == 1
    assert "holds security.master_key but is readable by others" in result.stderr
    assert f"chmod o-r {config}" in result.stderr and key not in result.stderr


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
