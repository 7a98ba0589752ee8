"""The README's set-up as a newcomer follows it, and the release as a host installs it.

In a copy of the checkout: the README's first command, as written (a virtual environment,
``pip install .``, ``t2ctl serve``), then its five-minute walkthrough in a second shell,
word for word but for the port. Then ``python -m build`` makes the sdist and the wheel, and
the wheel alone, in a fresh virtual environment, serves from an empty directory.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import requests

from tests.processes import LISTENING, Daemon, wait_until

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def readme_block(heading: str) -> str:
    """The first ``sh`` block of the README section under ``heading``."""
    section = README[README.index(f"\n{heading}\n") :]
    return re.findall(r"```sh\n(.*?)```", section, re.S)[0]


def checkout_copy(target: Path) -> Path:
    """The checkout's files as a fresh clone has them: tracked and new, never ignored ones
    (no .venv, database or build output comes along)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment less t2ctl's and any virtual environment's, with a config
    directory of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("T2CTL_", "VIRTUAL_ENV"))}
    return {**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **extra}


def test_the_readme_set_up_and_walkthrough_run_as_written_in_a_fresh_checkout(
    tmp_path: Path,
) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    first = readme_block("## Set-up")
    assert first.strip() == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && t2ctl serve"
    )
    # Free ports instead of 8080 and 9464, by environment: the command stays as written.
    ports = {"T2CTL_SERVER__PORT": "0", "T2CTL_METRICS__PORT": "0"}
    daemon = Daemon(checkout, env=environment(tmp_path, **ports), shell=first)
    try:
        url = daemon.wait_for(LISTENING, timeout=300).group(1)
        health = requests.get(f"{url}/t2mobile/health", timeout=5).json()
        sample = re.search(r"# (\{\"status\".*\})\n", README)
        assert sample, "the README shows a health answer"
        assert health.keys() == json.loads(sample[1]).keys()
        assert health["mode"] == "sandbox" and health["migrations"] == "ok"

        walk = readme_block("## Five minutes with curl").replace("localhost:8080", url)
        ran = subprocess.run(
            ["bash", "-e", "-c", walk],
            cwd=checkout,
            env=environment(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "202 ACCEPTED" in ran.stdout.upper() and "Traceback" not in ran.stderr
        t2ctl = checkout / ".venv" / "bin" / "t2ctl"

        def cli(*args: str) -> list[dict]:
            done = subprocess.run(
                [t2ctl, *args, "--json"],
                cwd=checkout,
                env=environment(tmp_path),
                capture_output=True,
                text=True,
            )
            return json.loads(done.stdout)

        wait_until(lambda: cli("orders", "list")[0]["status"] == "FULFILLED", what="fulfilled")
        assert [k["partner"] for k in cli("keys", "list")] == ["t2mobile"]  # one key, no spare
    finally:
        os.killpg(daemon.proc.pid, signal.SIGTERM)
        assert daemon.proc.wait(timeout=30) == 0


def test_the_built_wheel_installs_into_a_fresh_venv_and_serves_from_an_empty_directory(
    tmp_path: Path,
) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(checkout)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (sdist,) = dist.glob("t2ctl-*.tar.gz")
    (wheel,) = dist.glob("t2ctl-*-py3-none-any.whl")
    with tarfile.open(sdist) as archive:
        shipped = {Path(*Path(n).parts[1:]).as_posix() for n in archive.getnames()}
    assert {"config.toml.example", "daemon/t2ctl.service", "README.md"} <= shipped
    assert "daemon/monitoring/t2ctl-alerts.yml" in shipped
    with zipfile.ZipFile(wheel) as archive:
        inside = set(archive.namelist())
    assert "t2ctl/db/migrations/0001_initial.py" in inside and "t2ctl/py.typed" in inside

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [venv / "bin" / "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = environment(tmp_path, T2CTL_METRICS__PORT="0")
    daemon = Daemon(empty, env=env, shell=f"exec {venv}/bin/t2ctl serve --port 0")
    try:
        url = daemon.wait_for(LISTENING, timeout=60).group(1)
        health = requests.get(f"{url}/t2mobile/health", timeout=5).json()
        assert (health["status"], health["mode"], health["migrations"]) == ("ok", "sandbox", "ok")
        docs = requests.get(f"{url}/t2mobile/docs", timeout=5)
        assert docs.status_code == 200 and "swagger-ui" in docs.text
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=30) == 0
    assert sorted(p.name for p in empty.iterdir()) == ["t2ctl.db", "t2ctl.db.key"]
