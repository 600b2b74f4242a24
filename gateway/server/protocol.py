"""The HTTP/1 connection handler of the public listener: request heads that aiohttp's parser refuses get
the exact status (431 for header fields, 414 for the request line, 400 otherwise) as JSON (DESIGN §5).

aiohttp's own answer is 400 text/plain quoting the refused bytes, and it logs them: a Cookie or an
Authorization header over the limit would be echoed to the client and written to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.web.responses import json_error

log = logging.getLogger("tokengate")

# aiohttp's defaults, named here so the request line and a header field can be told apart.
MAX_LINE_SIZE = 8190


class HeadErrorHandler(RequestHandler):
    """A connection whose unparsable request heads are answered as above; the public listener's
    connection class (gateway/server/listener.py) builds on it."""

    def __init__(self, manager: Any, *, max_line_size: int = MAX_LINE_SIZE, **kwargs: Any) -> None:
        super().__init__(manager, max_line_size=max_line_size, **kwargs)
        self._line_limit = max_line_size

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, BadHttpMessage) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong) and exc.args[1] == self._line_limit:
            answer = (414, "uri_too_long", "the request line is too long")  # RFC 9110 §15.5.15
        elif isinstance(exc, LineTooLong) or "Too many headers" in str(exc):
            answer = (431, "request_header_fields_too_large", "the request header fields are too large")
        else:
            answer = (400, "invalid_request", "the request could not be parsed")
        # The reason only: the refused bytes may hold a cookie or a token.
        log.info("request head from %s refused: %s (%s)", request.remote, answer[1], type(exc).__name__)
        response = json_error(*answer)
        response.force_close()
        return response
