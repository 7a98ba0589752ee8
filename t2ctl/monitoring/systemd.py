"""The sd_notify protocol: one datagram to ``$NOTIFY_SOCKET`` per state change.

Under ``Type=notify`` systemd counts the daemon started at ``READY=1`` (after migrations, once
it listens), and with ``WatchdogSec=`` restarts it when ``WATCHDOG=1`` stops coming. Outside
systemd there is no socket and every call does nothing.
"""

import logging
import os
import socket
from datetime import timedelta

logger = logging.getLogger(__name__)


def notify(*states: str) -> bool:
    """Send ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``...; False when not under systemd or
    when the message could not be sent (logged: it must not stop the daemon or its drain)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        logger.warning("cannot notify systemd at NOTIFY_SOCKET: %s", exc)
        return False
    return True


def watchdog_timeout() -> timedelta | None:
    """``WatchdogSec=``: how long systemd waits for a ``WATCHDOG=1``; None when it is off (or
    was meant for another process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return timedelta(microseconds=int(usec))
