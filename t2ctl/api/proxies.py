"""The client's address behind reverse proxies: ``X-Forwarded-For`` is believed only from
``server.trusted_proxies``.

Read from the right, each entry is the peer one trusted hop saw; the first that is not itself
a trusted proxy is the client. Whatever a client writes further left is never reached. From a
peer that is not trusted, every ``X-Forwarded-*`` header is dropped before the app sees it.
This replaces waitress's own handling, which trusts one address or a count of hops, not a
list of networks; the servers are started with ``clear_untrusted_proxy_headers=False``.
"""

import ipaddress
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

UNKNOWN = "unknown"  # an entry no address can be read from: in no allow-list

Network = IPv4Network | IPv6Network


class ClientAddress:
    """WSGI middleware setting ``REMOTE_ADDR`` to the client's address; the peer's is kept
    in ``t2ctl.peer_addr``."""

    def __init__(self, app: Callable, trusted: Iterable[Network]):
        self.app = app
        self.trusted = list(trusted)

    def __call__(self, environ: dict, start_response: Callable):
        peer = environ.get("REMOTE_ADDR", "")
        environ["t2ctl.peer_addr"] = peer
        address = _address(peer)
        if self._trusted(address):
            environ["REMOTE_ADDR"] = self.client(peer, environ.get("HTTP_X_FORWARDED_FOR", ""))
            return self.app(environ, start_response)
        # ::ffff:203.0.113.5 on a dual-stack listener is judged as the IPv4 it is.
        environ["REMOTE_ADDR"] = str(address) if address is not None else peer
        for name in [n for n in environ if n.startswith("HTTP_X_FORWARDED_")]:
            del environ[name]
        return self.app(environ, start_response)

    def _trusted(self, address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    def client(self, peer: str, forwarded_for: str) -> str:
        hops = [peer] + [hop.strip() for hop in reversed(forwarded_for.split(",")) if hop.strip()]
        for hop in hops:
            address = _address(hop)
            if address is None:
                return UNKNOWN
            if not self._trusted(address):
                return str(address)
        return str(_address(hops[-1]))  # every hop trusted: the client is one of ours


def _address(text: str) -> IPv4Address | IPv6Address | None:
    """An address from an X-Forwarded-For entry, which some proxies write with a port
    (``203.0.113.7:4711``, ``[2001:db8::1]:4711``)."""
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address
