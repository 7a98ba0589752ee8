"""The SSRF guard: a partner's webhook URL must never become a way into our own network.

The check is made on the address a connection is about to use, after name resolution, inside
the connection itself: a name that resolved to a public address when the URL was saved (or a
moment ago) and to a private one now is refused, and nothing is sent.
"""

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The URL or the address it resolves to may not be reached; nothing was sent."""


# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052 / 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


@dataclass(frozen=True)
class Guard:
    """Only public addresses, except those in ``allowed`` (``webhooks.allow_private_networks``)."""

    allowed: tuple[Network, ...] = ()

    def check(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and return the addresses to connect to; refuse if any of them is
        not public, so that no answer of a rebinding name can slip through."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"{host} could not be resolved: {exc}") from None
        # An IP address as text: the int form is only for IPv6 on a Python built without it.
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for text in addresses:
            kind = self.forbidden(ipaddress.ip_address(text.split("%")[0]))
            if kind is not None:
                named = host if host == text else f"{host} resolves to {text},"
                raise Refused(
                    f"{named} a {kind} address: not allowed outside sandbox mode "
                    "unless webhooks.allow_private_networks lists it"
                )
        return addresses

    def forbidden(self, address: Address) -> str | None:
        """What kind of non-public address this is, or None when it may be reached. An
        IPv4-mapped address is its IPv4 address; one that carries an IPv4 address on to a
        gateway (6to4, Teredo, NAT64) is judged by that address too."""
        unmapped = getattr(address, "ipv4_mapped", None) or address
        if self._allows(address) or self._allows(unmapped):
            return None
        address = unmapped
        for form in (*_embedded(address), address):
            kind = None if self._allows(form) else _kind(form)
            if kind is not None:
                return kind
        return None

    def _allows(self, address: Address) -> bool:
        return any(address in network for network in self.allowed)


def _kind(address: Address) -> str | None:
    for kind in ("unspecified", "loopback", "link_local", "site_local", "private", "multicast"):
        if getattr(address, f"is_{kind}", False):
            return kind.replace("_", "-")
    return None if address.is_global else "reserved"


def _embedded(address: Address) -> list[ipaddress.IPv4Address]:
    if address.version == 4:
        return []
    found = [address.sixtofour, *(address.teredo or ())]
    compatible = int(address) >> 32 == 0 and int(address) > 1  # the old ::a.b.c.d
    if compatible or any(address in prefix for prefix in _NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [form for form in found if form is not None]


def pool_manager(guard: Guard | None, **settings: Any) -> PoolManager:
    """urllib3's pools of kept-alive connections (``settings`` as ``PoolManager`` takes them),
    every new connection going through ``guard`` when there is one. A ``PoolManager`` never
    goes through a proxy, which would connect on our behalf, out of the guard's sight."""
    manager = PoolManager(**settings)
    if guard is not None:
        manager.pool_classes_by_scheme = {
            "http": _pool(HTTPConnectionPool, guard),
            "https": _pool(HTTPSConnectionPool, guard),
        }
    return manager


class _GuardedConnection(HTTPConnection):
    """Put before HTTPConnection or HTTPSConnection, with ``guard`` set, by ``_pool``."""

    guard: ClassVar[Guard]

    def _new_conn(self) -> socket.socket:
        """Connect to the first checked address that answers; TLS still checks the
        certificate against the URL's name."""
        name = self._dns_host
        failure: Exception | None = None
        try:
            for address in self.guard.check(name, self.port):
                self._dns_host = address
                try:
                    return super()._new_conn()
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    failure = exc
        finally:
            self._dns_host = name
        if failure is None:  # not expected: getaddrinfo gives an address or raises
            raise NewConnectionError(self, f"{name} resolved to no address")
        raise failure


def _pool(pool: type[HTTPConnectionPool], guard: Guard) -> type[HTTPConnectionPool]:
    base = HTTPSConnection if pool is HTTPSConnectionPool else HTTPConnection
    connection = type("GuardedConnection", (_GuardedConnection, base), {"guard": guard})
    return type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": connection})
