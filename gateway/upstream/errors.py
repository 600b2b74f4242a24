"""The one place where foreign upstream errors (aiohttp's, OSError, TimeoutError, httptools parse
errors, this package's own) become the gateway's UpstreamUnavailable (502) and UpstreamTimeout (504)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
import httptools
from yarl import URL

from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable


class UpstreamClosed(ConnectionError):
    """The upstream closed (or reset) the connection before its answer was complete.
    ``before_response``: not one byte of the answer had arrived (a stale pooled connection)."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class UpstreamProtocolError(Exception):
    """The upstream's answer is not HTTP/1.1 we may forward: a framing conflict, a header too large,
    an unexpected status (RFC 9112 §6.3, §11.2: never forward what could split or smuggle)."""


def own_error(exc: BaseException) -> GatewayError | None:
    """The gateway's error behind a client exception: the request body's reader raised it
    (too large, or the client stalled it) while the body was being sent."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 5:
        if isinstance(cause, GatewayError):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


@contextlib.contextmanager
def upstream_errors(url: URL, doing: str = "") -> Iterator[None]:
    """Translate what talking to ``url`` raised. The gateway's own errors (the body reader's 413 and
    408) pass unchanged; a timeout is 504; everything else the upstream or the wire did is 502."""
    where = doing or f"{url.host}:{url.port}"
    try:
        yield
    except GatewayError:
        raise
    except aiohttp.WSServerHandshakeError as exc:
        raise UpstreamUnavailable(detail=f"{where}: websocket handshake refused: {exc.status}") from exc
    except (
        TimeoutError,
        aiohttp.ClientError,
        OSError,
        httptools.HttpParserError,
        UpstreamProtocolError,
    ) as exc:
        own = own_error(exc)
        if own is not None:
            raise own from exc
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(detail=f"{where}: {type(exc).__name__}") from exc
        raise UpstreamUnavailable(detail=f"{where}: {type(exc).__name__}: {exc}") from exc
