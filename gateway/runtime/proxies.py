"""Which peers are trusted proxies (``server.trusted_proxies``, DESIGN §7): the one answer that lets
forwarding headers, an incoming request id and a trace context be believed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache


class TrustedProxies:
    """Is a peer address inside ``server.trusted_proxies``? Answers are cached per address."""

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self._networks = tuple(networks)
        self.contains = lru_cache(maxsize=4096)(self._contains)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def _contains(self, peer: str | None) -> bool:
        if not peer or not self._networks:
            return False
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)
