"""What one request carries through the web layer: its RequestState (read by the access log, the
metrics and the span), the forwarding's ProxyStats, and the request id rules. A leaf: it imports
nothing of gateway.web, so every web module can read the state without importing another's code.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from aiohttp import web

_REQUEST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


@dataclass(slots=True)
class ProxyStats:
    """Filled in while forwarding; read by the access log."""

    upstream_seconds: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    status: int | None = None
    answer_started: bool = False  # the status line went to the client: no error answer is possible


@dataclass(slots=True)
class RequestState:
    """What the pipeline learns about one request, for the access log, metrics and the span."""

    request_id: str
    started: float
    path: str = ""
    query: str = ""  # raw (still percent-encoded); never logged: it may hold tokens
    route: str = "-"
    mode: str = "-"  # the route's auth mode
    auth: str = "-"  # the credential presented: bearer | session
    user: str | None = None  # the authenticated subject
    decision: str = "-"  # allow | deny (authentication or authorisation), "-" when none was made
    reasons: tuple[str, ...] = ()
    status: int = 500
    trace_id: str | None = None  # when tracing is on: what log lines of the request carry
    stats: ProxyStats = field(default_factory=ProxyStats)


STATE_KEY: web.RequestKey[RequestState] = web.RequestKey("tokengate", RequestState)


def valid_request_id(value: str | None) -> bool:
    """An X-Request-Id worth adopting: short, and only characters safe in a header and a log line."""
    return bool(value) and len(value or "") <= 128 and all(c in _REQUEST_ID_OK for c in value or "")


# Request ids correlate log lines; they are not secrets (a trusted proxy may even choose them). So a
# Mersenne Twister seeded from the OS gives the documented 24 random hex digits without the getrandom
# syscall per request that secrets.token_hex(12) costs; a forked child reseeds (no shared sequence).
_ids = random.Random(os.urandom(32))  # noqa: S311 - correlation ids, not secrets
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_request_id() -> str:
    """24 random hex digits."""
    return f"{_ids.getrandbits(96):024x}"
