"""The one place where calls to the provider are made and their failures translated.

aiohttp.ClientError, TimeoutError, 5xx answers and malformed JSON all become ProviderUnavailable here;
4xx answers are handed back (with their JSON body when there is one) for the caller to judge.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.config.tls import ClientTlsConfig, client_context
from gateway.errors import ProviderUnavailable
from gateway.tracing import traced_http_call

# A provider document (JWKS, discovery, token answer) is a few KiB; refuse to buffer without bound.
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """A 2xx answer (``body`` is its JSON object) or a 4xx answer (``body`` is {} unless it was JSON)."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The RFC 6749 §5.2 ``error`` code of a 4xx answer, or ``http_<status>`` when there is none."""
        code = self.body.get("error")
        return code if isinstance(code, str) and code.isascii() and len(code) < 80 else f"http_{self.status}"


class ProviderHttp:
    """Calls one provider through a shared aiohttp session; every call has one deadline for all of
    connect, send, wait and read, so no call can hang past ``timeout`` seconds. With
    ``providers.*.tls`` its connections verify against that CA bundle and present that client
    certificate (the shared session pools them apart: aiohttp keys connections by SSL context)."""

    def __init__(
        self,
        provider: str,
        session: aiohttp.ClientSession,
        timeout: float,
        *,
        tls: ClientTlsConfig | None = None,
    ) -> None:
        self.provider = provider
        self.session = session
        self.timeout = timeout
        self.ssl: ssl.SSLContext | bool = True
        self.load_tls(tls)

    def load_tls(self, tls: ClientTlsConfig | None) -> None:
        """(Re)build the TLS context from its files; the next new connection uses it."""
        ctx = client_context(tls)
        self.ssl = ctx if ctx is not None else True

    @traced_http_call
    async def call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        form: str | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
        expect_json: bool = True,
    ) -> ProviderResponse:
        """Make one request. Raises ProviderUnavailable for transport failures, timeouts, 3xx/5xx
        answers and (with ``expect_json``) 2xx answers whose body is not a JSON object."""
        send_headers = {"Accept": "application/json"}
        if headers:
            send_headers.update(headers)
        if form is not None:
            send_headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.request(
                    method,
                    url,
                    data=form,
                    headers=send_headers,
                    allow_redirects=follow_redirects,
                    ssl=self.ssl,
                ) as resp:
                    status = resp.status
                    if status >= 500 or status < 200 or 300 <= status < 400:
                        raise ProviderUnavailable(detail=f"{self.provider} {what}: HTTP {status}")
                    raw = await _read_capped(resp)
                    if raw is None:
                        raise ProviderUnavailable(detail=f"{self.provider} {what}: answer too large")
        except ProviderUnavailable:
            raise
        except TimeoutError as exc:
            raise ProviderUnavailable(
                detail=f"{self.provider} {what}: no answer within {self.timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(detail=f"{self.provider} {what}: {type(exc).__name__}") from exc
        body = _json_object(raw)
        if body is None and expect_json and status < 300:
            raise ProviderUnavailable(detail=f"{self.provider} {what}: malformed JSON answer")
        return ProviderResponse(status, body or {})


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY_BYTES."""
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None
