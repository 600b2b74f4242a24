"""Which request headers reach the upstream and which response headers reach the client (DESIGN §4).

Hop-by-hop headers (RFC 9110 §7.6.1) and those named in ``Connection`` are dropped both ways; spoofed
identity headers are dropped in every spelling; the gateway's own cookies never leave it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the gateway itself; a client's values are replaced (or appended to, from trusted proxies).
_GATEWAY_SET = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "host"})
_WEBSOCKET_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)
IDENTITY_PREFIX = "x-auth-request-"
ASSERTION = "x-tokengate-assertion"  # DESIGN §8: only the gateway signs it


def is_spoofed_identity(canonical: str) -> bool:
    """``X-Auth-Request-User``, ``x_auth_request_user``, ``X-AUTH_REQUEST-Email``... all count (the
    name given lower-cased with ``_`` as ``-``, see ``canonical_name``)."""
    return canonical.startswith(IDENTITY_PREFIX) or canonical in ("x-auth-request", ASSERTION)


def canonical_name(lowered: str) -> str:
    # Some upstream frameworks read "_" as "-" (CGI-style environments): judge both spellings alike.
    return lowered.replace("_", "-") if "_" in lowered else lowered


def connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    """Header names listed in ``Connection`` (RFC 9110 §7.6.1): hop-by-hop too."""
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


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


def strip_cookies(header: str, names: frozenset[str], prefix: str) -> str | None:
    """Remove the gateway's cookies from a ``Cookie`` header; None when nothing is left."""
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if name in names or name.startswith(prefix):
            continue
        if part.strip():
            kept.append(part.strip())
    return "; ".join(kept) if kept else None


def request_headers_for_upstream(
    incoming: CIMultiDictProxy[str],
    *,
    gateway_cookies: frozenset[str],
    login_cookie_prefix: str,
    drop_authorization: bool,
    websocket: bool = False,
    claim_headers: frozenset[str] = frozenset(),
) -> CIMultiDict[str]:
    """Copy the client's headers minus hop-by-hop, spoofed identity, gateway-set and gateway cookies.
    ``claim_headers``: every route's configured claim header names (canonical), spoofed copies too."""
    hop = connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or (hop and lowered in hop):
            continue
        canonical = canonical_name(lowered)
        if canonical in _GATEWAY_SET or is_spoofed_identity(canonical) or canonical in claim_headers:
            continue
        if websocket and lowered in _WEBSOCKET_HANDSHAKE:
            continue
        if lowered == "authorization" and drop_authorization:
            continue
        if lowered == "cookie" and (any(n in value for n in gateway_cookies) or login_cookie_prefix in value):
            cleaned = strip_cookies(value, gateway_cookies, login_cookie_prefix)
            if cleaned is not None:
                out.add(name, cleaned)
            continue
        out.add(name, value)
    return out


def response_headers_for_client(incoming: CIMultiDictProxy[str], *, keep_length: bool) -> CIMultiDict[str]:
    """The upstream's answer headers minus hop-by-hop ones (and Content-Length when we re-frame)."""
    hop = connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or (hop and lowered in hop):
            continue
        if lowered == "content-length" and not keep_length:
            continue
        out.add(name, value)
    return out
