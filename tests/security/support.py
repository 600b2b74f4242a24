"""Shared pieces of the attack-class modules (no tests here): a gateway config with public, bearer and
session routes on the real provider, readiness, raw HTTP/1.1 requests, and upstream-content checks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from devtools.idp import IdP
from gateway.web.state import RUNTIME
from tests.support.clients import Client

READ = "openid profile email api:read"
# What the loopback upstream puts in every answer (tests/support/upstream.py): none may leak out of a refusal.
UPSTREAM_MARKERS = ("X-Hop", "Keep-Alive")


async def ready(client: Client) -> Client:
    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


async def tokens_for(idp: IdP, validate: str, login: str = "alice") -> dict[str, Any]:
    """Tokens bound to the resource, so that opaque ones introspect with aud = the resource too."""
    extra = {"resource": idp.resource_indicator} if validate == "introspection" else None
    return await idp.obtain_tokens(login, READ, extra=extra)


async def raw_request(client: Client, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send one HTTP/1.1 request exactly as written (no client library tidying it); (status, raw answer),
    status 0 when the server reset the connection without an answer."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    answer = b""
    try:
        writer.write(head + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(1 << 20), timeout=10)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server cut the connection while we were still sending: status 0 unless it answered
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer


def assert_nothing_from_upstream(status: int, headers: Any, body: str) -> None:
    """A refusal carries none of the upstream's answer: no upstream headers, no echo body."""
    for marker in UPSTREAM_MARKERS:
        assert marker not in headers, (status, marker)
    assert "up=1" not in " ".join(headers.getall("Set-Cookie", [])), status
    assert '"body_length"' not in body, (status, body[:200])
