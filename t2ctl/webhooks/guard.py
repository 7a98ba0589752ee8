"""The SSRF guard: a partner's webhook URL must never become a way into our own network.

The check is made on the address a connection is about to use, after name resolution, inside
the connection itself: a name that resolved to a public address when the URL was saved (or a
moment ago) and to a private one now is refused, and nothing is sent.
"""

import ipaddress
import socket
from dataclasses import dataclass

from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The URL or the address it resolves to may not be reached; nothing was sent."""


@dataclass(frozen=True)
class Guard:
    """Only public addresses, except those in ``allowed`` (``webhooks.allow_private_networks``)."""

    allowed: tuple[Network, ...] = ()

    def check(self, host: str, port: int) -> str:
        """Resolve ``host`` and return the address to connect to; refuse if any address it
        resolves to is not public, so that no answer of a rebinding name can slip through."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise Refused(f"{host} could not be resolved: {exc.strerror}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for text in addresses:
            kind = self.forbidden(ipaddress.ip_address(text.split("%")[0]))
            if kind is not None:
                named = host if host == text else f"{host} resolves to {text},"
                raise Refused(
                    f"{named} a {kind} address: not allowed outside sandbox mode "
                    "unless webhooks.allow_private_networks lists it"
                )
        return addresses[0]

    def forbidden(self, address: Address) -> str | None:
        """What kind of non-public address this is, or None when it may be reached."""
        forms = [address, getattr(address, "ipv4_mapped", None) or address]
        if any(form in network for form in forms for network in self.allowed):
            return None
        address = forms[1]  # ::ffff:127.0.0.1 is 127.0.0.1
        for kind in ("unspecified", "loopback", "link_local", "private", "multicast"):
            if getattr(address, f"is_{kind}"):
                return kind.replace("_", "-")
        return None if address.is_global else "reserved"


def guarded_adapter(guard: Guard) -> HTTPAdapter:
    """A requests adapter whose every new connection goes through ``guard``."""
    adapter = HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": _pool(HTTPConnectionPool, guard),
        "https": _pool(HTTPSConnectionPool, guard),
    }
    return adapter


def _pool(pool: type, guard: Guard) -> type:
    base = HTTPSConnection if pool is HTTPSConnectionPool else HTTPConnection

    class GuardedConnection(base):
        def _new_conn(self) -> socket.socket:
            name = self._dns_host
            self._dns_host = guard.check(name, self.port)
            try:
                return super()._new_conn()  # TLS still checks the certificate against the name
            finally:
                self._dns_host = name

    return type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": GuardedConnection})
