"""How one route talks to its upstream: timeouts and TLS (DESIGN §8), built once per route and runtime."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """How one route talks to its upstream (DESIGN §8), built once per route and runtime.

    ``timeout`` is aiohttp's: ``sock_connect`` = upstream_connect_timeout, ``sock_read`` = the route's
    upstream_timeout, which aiohttp counts from the end of the request body to the first answer
    bytes; once the answer's headers are in, the read limit becomes ``idle`` (None: none), so a quiet
    SSE stream is not cut by a limit meant for the first byte."""

    timeout: aiohttp.ClientTimeout
    idle: float | None = None
    ssl: ssl.SSLContext | bool = True
    server_hostname: str | None = None


def upstream_options(
    *,
    connect: float,
    headers: float,
    idle: float,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> UpstreamOptions:
    return UpstreamOptions(
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect, sock_read=headers),
        idle=idle or None,
        ssl=ssl_context if ssl_context is not None else True,
        server_hostname=server_hostname,
    )
