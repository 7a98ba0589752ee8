"""`t2ctl sandbox` as an operator runs it: a real process whose printed [zoho] section a
config can use as it is, and a receiver that accepts only deliveries signed with the
partner's secret (checked with the standardwebhooks package)."""

import json
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from standardwebhooks import Webhook

from t2ctl import partners
from t2ctl.config import Settings
from t2ctl.security.crypto import SecretBox
from tests.conftest import Cli, write_config
from tests.processes import wait_until

LISTENING = re.compile(r"stand-in and webhook receiver at (http://\S+)")


class Sandbox:
    """A `t2ctl sandbox --port 0` process, its stdout and stderr read as they come."""

    def __init__(self, cwd: Path, *options: str, config: Path | None = None):
        root = ["--config", str(config)] if config is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "t2ctl", *root, "sandbox", "--port", "0", *options],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=lines: k.extend(s), daemon=True).start()

    def url(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = LISTENING.search("".join(self.err))
            if found:
                return found.group(1)
            time.sleep(0.05)
        raise AssertionError("".join(self.err))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


def test_the_printed_zoho_section_is_a_working_config(migrated: Settings, tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    try:
        sandbox.url()
        wait_until(lambda: "api_url" in "".join(sandbox.out), timeout=10, what="the section")
        section = "".join(sandbox.out)
        assert section.startswith("[zoho]\nenabled = true\n")
        cli = Cli(write_config(tmp_path / "config.toml", migrated, "\n" + section))
        result = cli("config", "check")
        assert result.exit_code == 0, result.stderr
        assert "Zoho organization 10234695 (IconTech (sandbox)) is reachable" in result.stderr
        synced = cli("products", "sync", "--json")
        assert json.loads(synced.stdout)["added"] == ["M365-BASIC-12M"]
    finally:
        assert sandbox.stop() == 0
    assert "zoho stand-in: GET /items -> 200" in "".join(sandbox.err)


def test_the_receiver_accepts_only_deliveries_signed_with_the_partners_secret(
    migrated: Settings, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", migrated)
    box = SecretBox(migrated.security.master_keys)
    secret = partners.add("t2mobile", "http://127.0.0.1:9/hook", box=box, sandbox=True)
    sandbox = Sandbox(tmp_path, "--partner", "t2mobile", config=config)
    try:
        hooks = sandbox.url() + "/hooks"
        body = json.dumps(
            {"type": "order.fulfilled", "timestamp": "2026-11-27T09:00:00Z", "data": {}}
        )
        now = datetime.now(UTC)
        for webhook_id, signer in (
            ("msg_good", Webhook(secret.webhook_secret)),
            ("msg_forged", Webhook(partners.new_webhook_secret())),
        ):
            headers = {
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(webhook_id, now, body),
                "content-type": "application/json",
            }
            answer = requests.post(hooks, data=body, headers=headers, timeout=10)
            assert answer.status_code == (204 if webhook_id == "msg_good" else 401)
    finally:
        assert sandbox.stop() == 0
    printed = "".join(sandbox.out)
    assert "webhook msg_good order.fulfilled: verified" in printed
    assert "webhook msg_forged order.fulfilled: REJECTED (bad signature)" in printed
    assert secret.webhook_secret not in printed + "".join(sandbox.err)
