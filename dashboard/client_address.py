"""Who is asking: the peer's address, or the client named by a trusted reverse proxy.

``X-Forwarded-For`` is believed only when the peer (the TCP connection's other end) is one of
``app.trusted_proxies``; then the right-most address that is not itself a trusted proxy is the
client (anything left of it was written by the client and can be forged).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def _networks(trusted_proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted_proxies)


@lru_cache(maxsize=4096)  # peers repeat: parsing an address is a cost on every request
def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    candidate = text.strip().strip("[]")
    if candidate.count(":") == 1 and "." in candidate:  # "1.2.3.4:5678"
        candidate = candidate.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, nets: Any) -> bool:
    return address is not None and any(address in net for net in nets)


def client_address(request: Any, trusted_proxies: list[str]) -> str:
    """The client's address for ``request`` (a Tornado ``HTTPServerRequest``).

    ``request.remote_ip`` is the peer (Tornado's ``xheaders`` must stay off, so it is never
    taken from a header). Raises ValueError for an entry of ``trusted_proxies`` that is not
    an address or CIDR (config validation should catch that first).
    """
    peer_text = str(request.remote_ip or "")
    peer = _parse(peer_text)
    nets = _networks(tuple(trusted_proxies))
    if not _trusted(peer, nets):
        return str(peer) if peer is not None else peer_text
    forwarded = ",".join(request.headers.get_list("X-Forwarded-For"))
    for hop in reversed([part for part in forwarded.split(",") if part.strip()]):
        address = _parse(hop)
        if address is None:
            break  # garbage from here on: trust nothing further left
        if not _trusted(address, nets):
            return str(address)
    return str(peer)
