"""What one request tells the operator in its access-log line, and the real client address behind
trusted proxies (docs/operations.md lists every field).

Values come from the request state and a few request headers (Host, User-Agent, X-Forwarded-For);
never the query string, a cookie, an Authorization header or a claim other than the subject.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from gateway.runtime import TrustedProxies
from gateway.web.context import RequestState

_MAX_HEADER_FIELD = 256  # Host and User-Agent in a log line or span: enough to read, bounded in size


def _bounded(value: str | None) -> str | None:
    return value[:_MAX_HEADER_FIELD] if value else None


def _address(item: str) -> str | None:
    """An X-Forwarded-For element as an address (``[::1]:80`` and ``1.2.3.4:80`` forms too), or None."""
    item = item.strip()
    if item.startswith("["):
        item = item[1:].partition("]")[0]
    elif item.count(":") == 1:
        item = item.partition(":")[0]
    try:
        return str(ipaddress.ip_address(item))
    except ValueError:
        return None


def real_client(request: web.Request, trusted: TrustedProxies | None) -> str | None:
    """The client's address: from a peer in ``trusted_proxies``, the right-most X-Forwarded-For entry
    that is not itself a trusted proxy (what nginx's ``real_ip_recursive`` finds); otherwise the peer.
    Entries left of the first untrusted one are the client's own claims and are never believed."""
    peer = request.remote
    if trusted is None or not trusted or not trusted.contains(peer):
        return peer
    hops = ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")
    client = peer
    for item in reversed(hops):
        address = _address(item)
        if address is None:
            break  # garbage is not an address: the last hop we could read is the best we know
        client = address
        if not trusted.contains(address):
            break
    return client


def access_fields(
    request: web.Request, state: RequestState, duration: float, client: str | None
) -> dict[str, Any]:
    """The access-log line's fields (besides time, level, logger and message)."""
    upstream = state.stats.upstream_seconds
    fields: dict[str, Any] = {
        "request_id": state.request_id,
        "method": request.method,
        "path": state.path or request.raw_path.partition("?")[0],
        "host": _bounded(request.headers.get("Host")),
        "route": state.route,
        "status": state.status,
        "duration_ms": round(duration * 1000, 3),
        "upstream_ms": None if upstream is None else round(upstream * 1000, 3),
        "bytes_in": state.stats.bytes_in,
        "bytes_out": state.stats.bytes_out,
        "client": client,
        "peer": request.remote,
        "user": state.user,
        "user_agent": _bounded(request.headers.get("User-Agent")),
        "auth": state.auth,
        "decision": state.decision,
    }
    if state.reasons:
        fields["reasons"] = list(state.reasons)
    if state.trace_id is not None:
        fields["trace_id"] = state.trace_id
    return fields
