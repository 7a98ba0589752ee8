"""Secrets at rest: Fernet tokens under the master key list (MultiFernet).

The first key of ``security.master_key`` encrypts; every listed key decrypts, so a new key is
added in front and the old one removed after ``secrets rotate-master-key``. In sandbox mode on
SQLite with no key configured, one is generated beside the database file (mode 0600).
"""

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from t2ctl.config import Settings
from t2ctl.errors import ConfigError, T2Error
from t2ctl.security import redaction

logger = logging.getLogger(__name__)


class Undecryptable(T2Error):
    """A stored token that none of the configured master keys opens."""


class SecretBox:
    """Encrypts and decrypts short texts (secrets, emails, phone numbers)."""

    def __init__(self, keys: list[str]):
        problems = []
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                problems.append(
                    f"security.master_key: key {position} is not a Fernet key "
                    "(generate one with `t2ctl secrets generate-master-key`)"
                )
        if problems or not fernets:
            raise ConfigError(problems or ["security.master_key: no key given"])
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise Undecryptable(
                "stored data cannot be decrypted with security.master_key: "
                "is the right key configured (and the old one kept until rotation finished)?"
            ) from None

    def rotate(self, token: str) -> str:
        """The same text encrypted under the first key (MultiFernet.rotate)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise Undecryptable("a stored token opens with none of the master keys") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()


def sandbox_key_file(settings: Settings) -> Path | None:
    """The key file beside the SQLite database that sandbox mode keeps its master key in;
    None when ``security.master_key`` is configured (then no file is read or made)."""
    if settings.security.master_keys:
        return None
    path = settings.database.sqlite_path
    assert path is not None, "settings require security.master_key off SQLite"
    return path.with_name(path.name + ".key")


def box_for(settings: Settings) -> SecretBox:
    """The box for these settings, generating the sandbox key file on first use."""
    path = sandbox_key_file(settings)
    if path is None:
        return SecretBox(settings.security.master_keys)
    if not path.exists():
        _write_private(path, generate_key())
        logger.warning(
            "sandbox mode: generated a master key at %s (mode 0600); "
            "set security.master_key before going live",
            path,
        )
    key = path.read_text().strip()
    redaction.protect([key])
    return SecretBox([key])


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, failing if another process made it first."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
