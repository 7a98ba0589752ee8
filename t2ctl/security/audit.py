"""The audit log: every state-changing CLI action, with who ran it, where and when.

``record`` writes one event in the caller's transaction when there is one, so a change and
its record commit together or not at all. Details name ids, counts and durations; never a
secret, never a customer's contact.
"""

import os
import pwd
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from t2ctl import clock, db
from t2ctl.db.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    os_user: str  # the account the command ran as
    login_user: str | None  # the person behind sudo or su, when it is someone else
    host: str


def actor() -> Actor:
    """Who is running this command: the effective OS account (by uid, not $USER) and, when
    an operator went through sudo or su to reach it, their own login."""
    try:
        os_user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid with no passwd entry, as in some containers
        os_user = f"uid {os.geteuid()}"
    login = os.environ.get("SUDO_USER") or _terminal_login()
    return Actor(os_user, login if login and login != os_user else None, socket.gethostname())


def _terminal_login() -> str | None:
    try:
        return os.getlogin()
    except OSError:  # no controlling terminal: cron, systemd, CI
        return None


def record(action: str, target: str, **details: Any) -> AuditEvent:
    """Record ``action`` on ``target``, inside the caller's transaction if one is open."""
    who = actor()
    with db.transaction():
        return AuditEvent.create(
            at=clock.now(),
            os_user=who.os_user,
            login_user=who.login_user,
            host=who.host,
            action=action,
            target=target,
            details=details,
        )


def listing(
    *,
    since: datetime | None = None,
    action: str | None = None,
    user: str | None = None,
    limit: int = 50,
) -> list[AuditEvent]:
    """Newest first; ``action`` matches a whole command or its group (``keys``)."""
    query = AuditEvent.select().order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if action:
        query = query.where(
            (AuditEvent.action == action) | AuditEvent.action.startswith(action + ".")
        )
    if user:
        query = query.where((AuditEvent.os_user == user) | (AuditEvent.login_user == user))
    return list(query.limit(limit))


def who(event: AuditEvent) -> str:
    """``t2ctl (alice)`` when alice went through sudo to run as t2ctl; else the one name."""
    return f"{event.os_user} ({event.login_user})" if event.login_user else event.os_user
