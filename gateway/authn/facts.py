"""The values authentication reads from a request: the request to decide on (``Original``), and the
received request behind a Protocol that aiohttp's request satisfies as it is (no per-request copy):
headers as they arrived, cookies and a form body parsed only on demand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDictProxy


@dataclass(frozen=True, slots=True)
class Original:
    """The request to decide on: the one received, or the one a forward-auth proxy describes."""

    method: str
    host: str | None  # as in a Host header (a port is ignored by routing)
    raw_path: str  # still percent-encoded, as on the wire
    query: str
    proto: str | None = None  # the scheme a forward-auth proxy reports (X-Forwarded-Proto)


#: Request headers as they arrived: case-insensitive, repeated lines kept.
Headers = CIMultiDictProxy[str]


class Connection(Protocol):
    """The received request as authentication reads it (aiohttp's web.Request is one): its headers as
    they arrived, and parts parsed only when a credential needs them (cookies, a form body)."""

    @property
    def headers(self) -> Headers: ...
    @property
    def method(self) -> str: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def secure(self) -> bool: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content_length(self) -> int | None: ...
    async def read(self) -> bytes: ...


class Record(Protocol):
    """Where a request's authentication outcome is written for the access log, metrics and the span
    (web's RequestState)."""

    route: str
    mode: str
    auth: str
    user: str | None
    decision: str
    reasons: tuple[str, ...]
