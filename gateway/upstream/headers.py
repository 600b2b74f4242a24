"""Which request headers reach the upstream and which response headers reach the client (DESIGN §4).

Hop-by-hop headers (RFC 9110 §7.6.1) and those named in ``Connection`` are dropped both ways; spoofed
identity headers are dropped in every spelling; the gateway's own cookies never leave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
# DESIGN §7: headers by which a proxy tells the next hop who the client is, which scheme, host, port,
# path or method it used. Symfony, IIS URL Rewrite, Spring, Express and Rails route, build URLs or
# authorise on them, so they are believed only from server.trusted_proxies.
PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-rewrite-url",
        "true-client-ip",
        "x-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "front-end-https",
        "x-url-scheme",
        "x-forwarded",
        "x-original",
    }
)
# Every X-Forwarded-* (-Port, -Prefix, -Uri, ...) and X-Original-* (-URL, -URI, -Method, and
# ingress-nginx's -Forwarded-For): frameworks keep inventing members of both families.
_PROXY_PREFIXES = ("x-forwarded-", "x-original-")
ASSERTION = "x-tokengate-assertion"  # DESIGN §8: only the gateway signs it
# Method overrides (Express method-override, Rails, Laravel, ASP.NET): an upstream that honours one runs
# DELETE for a request the gateway authorised as POST; they never pass, from anyone (DESIGN §7).
METHOD_OVERRIDES = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})


def is_spoofed_identity(canonical: str) -> bool:
    """``X-Auth-Request-User``, ``x_auth_request_user``, ``X-AUTH_REQUEST-Email``... all count (the
    name given lower-cased with ``_`` as ``-``, see ``canonical_name``)."""
    return canonical.startswith(IDENTITY_PREFIX) or canonical in ("x-auth-request", ASSERTION)


def is_proxy_header(canonical: str) -> bool:
    """A header of DESIGN §7's proxy set (the name lower-cased with ``_`` as ``-``)."""
    return canonical in PROXY_HEADERS or canonical.startswith(_PROXY_PREFIXES)


def canonical_name(lowered: str) -> str:
    # Some upstream frameworks read "_" as "-" (CGI-style environments): judge both spellings alike.
    return lowered.replace("_", "-") if "_" in lowered else lowered


def connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    """Header names listed in ``Connection`` (RFC 9110 §7.6.1): hop-by-hop too."""
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def cookie_key(name: str) -> str:
    """A cookie name as lenient upstream frameworks and browsers may equate it: letter case and the
    ``__Host-``/``__Secure-`` prefixes (RFC 6265bis §4.1.3) do not make it another cookie."""
    key = name.strip().lower()
    for prefix in ("__host-", "__secure-"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def mentions_cookies(header: str, names: frozenset[str], prefix: str) -> bool:
    """Cheap pre-check: may ``header`` hold one of the gateway's cookies, in any spelling?"""
    lowered = header.lower()
    return cookie_key(prefix) in lowered or any(cookie_key(n) in lowered for n in names)


def strip_cookies(header: str, names: frozenset[str], prefix: str) -> str | None:
    """Remove the gateway's cookies, in every spelling of their names, from a ``Cookie`` header; None
    when nothing is left."""
    keys = {cookie_key(n) for n in names}
    login_key = cookie_key(prefix)
    kept = []
    for part in header.split(";"):
        key = cookie_key(part.split("=", 1)[0])
        if key in keys or key.startswith(login_key):
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
    trusted_peer: bool = False,
    claim_headers: frozenset[str] = frozenset(),
) -> CIMultiDict[str]:
    """Copy the client's headers minus hop-by-hop, spoofed identity, gateway-set and gateway cookies,
    and minus every proxy header unless the peer is a trusted proxy (DESIGN §7). ``claim_headers``:
    every route's configured claim header names (canonical), spoofed copies too."""
    hop = connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or (hop and lowered in hop):
            continue
        canonical = canonical_name(lowered)
        if canonical in _GATEWAY_SET or is_spoofed_identity(canonical) or canonical in claim_headers:
            continue
        if canonical in METHOD_OVERRIDES:
            continue
        # From a trusted proxy only the '-' spelling passes: a proxy writes its own headers that way,
        # so an '_' spelling is a client's that the proxy did not know to remove.
        if is_proxy_header(canonical) and not (trusted_peer and canonical == lowered):
            continue
        if websocket and lowered in _WEBSOCKET_HANDSHAKE:
            continue
        if lowered == "authorization" and drop_authorization:
            continue
        if lowered == "cookie" and mentions_cookies(value, gateway_cookies, login_cookie_prefix):
            cleaned = strip_cookies(value, gateway_cookies, login_cookie_prefix)
            if cleaned is not None:
                out.add(name, cleaned)
            continue
        out.add(name, value)
    return out


_COOKIE_PREFIXES = ("__host-", "__secure-")


def _cookie_base(name: str) -> str:
    # Browsers match the __Host- / __Secure- prefixes case-insensitively (RFC 6265bis §4.1.3), and some
    # servers read cookie names case-insensitively: compare names folded and without those prefixes.
    base = name.strip().lower()
    while base.startswith(_COOKIE_PREFIXES):
        base = base.split("-", 1)[1]
    return base


@dataclass(frozen=True, slots=True)
class OwnCookies:
    """The gateway's cookie names (session, and login cookies by prefix), as browsers compare them."""

    session: frozenset[str]
    login: str

    def claimed_by(self, set_cookie: str) -> bool:
        """Would this ``Set-Cookie`` value set one of the gateway's cookies in some browser or server?"""
        pair = set_cookie.split(";", 1)[0]
        name, eq, value = pair.partition("=")
        if not eq:
            name = pair  # no "=": a nameless cookie, sent back as its bare value
        elif not name.strip():
            name = value.partition("=")[0]  # "=n=v": nameless, sent back as "n=v" (RFC 6265bis §5.7)
        base = _cookie_base(name)
        return base in self.session or base.startswith(self.login)


@lru_cache(maxsize=16)
def own_cookies(names: frozenset[str], login_prefix: str) -> OwnCookies:
    return OwnCookies(frozenset(_cookie_base(n) for n in names), _cookie_base(login_prefix))


def response_headers_for_client(
    incoming: CIMultiDictProxy[str], *, keep_length: bool, own: OwnCookies | None = None
) -> CIMultiDict[str]:
    """The upstream's answer headers minus hop-by-hop ones (and Content-Length when we re-frame), and
    minus any ``Set-Cookie`` for the gateway's own cookies (DESIGN §7: no session fixation by upstreams)."""
    hop = connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or (hop and lowered in hop):
            continue
        if lowered == "content-length" and not keep_length:
            continue
        if lowered == "set-cookie" and own is not None and own.claimed_by(value):
            continue
        out.add(name, value)
    return out
