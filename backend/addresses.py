"""Who is on the other end: the client's address, the one answer every limiter and the access log use.

The socket's peer is the client unless it is one of ``BIRTHCERT_TRUSTED_PROXIES``. Only then is
``X-Forwarded-For`` read, from the right (each proxy appends the address it saw): the first address that
is not a trusted proxy is the client. Anything left of it was written by the client and may be forged;
a header from a peer we do not trust is ignored whole (docs/decisions/0018-rate-limits.md).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable

from aiohttp import web

from backend.components import CONFIG
from backend.config import IpNetwork

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# One IPv6 subscriber holds a whole /64: counting its addresses one by one would give it 2**64 budgets.
IPV6_SUBSCRIBER_PREFIX = 64
# A peer with no IP address (a Unix socket): all such clients share one budget.
UNKNOWN = "unknown"


def client_address(request: web.Request) -> str:
    """The client's address as text (``unknown`` when the socket has none), proxies taken into account."""
    trusted = request.app[CONFIG].trusted_proxies if CONFIG in request.app else ()
    peer = _parse(_peer(request))
    if peer is None:
        return UNKNOWN
    client = forwarded_client(peer, request.headers.getall("X-Forwarded-For", []), trusted)
    return str(_unmapped(client))


def forwarded_client(
    peer: IpAddress, forwarded_for: Iterable[str], trusted: tuple[IpNetwork, ...]
) -> IpAddress:
    """The right-most address of ``peer`` and the ``X-Forwarded-For`` hops that is not a trusted proxy.

    A hop that is not an address (a forged or broken header) ends the walk: nothing left of it can be
    believed, so the last trusted hop seen stands for the client.
    """
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            return client
        client = address
        if not _is_trusted(address, trusted):
            return address
    return client


def client_source(request: web.Request) -> str:
    """What a limiter counts for the client: its address, or its /64 for IPv6."""
    address = _parse(client_address(request))
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_SUBSCRIBER_PREFIX), strict=False))
    return str(address) if address is not None else UNKNOWN


def client_pseudonym(request: web.Request) -> str:
    """A short keyed digest of the client's address for the access log: requests from one client can be
    told apart and followed without the address itself being written down."""
    key = request.app[CONFIG].index_key if CONFIG in request.app else b""
    digest = hmac.new(key, b"client:" + client_address(request).encode(), hashlib.sha256)
    return digest.hexdigest()[:16]


def _peer(request: web.Request) -> str:
    transport = request.transport
    if transport is None:
        return ""
    peername = transport.get_extra_info("peername")
    return peername[0] if isinstance(peername, tuple | list) and peername else ""


def _parse(text: str) -> IpAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:54321"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _unmapped(address: IpAddress) -> IpAddress:
    """``::ffff:203.0.113.7`` (an IPv4 client on a dual-stack socket) as ``203.0.113.7``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IpAddress, trusted: tuple[IpNetwork, ...]) -> bool:
    address = _unmapped(address)
    return any(address in network for network in trusted)
