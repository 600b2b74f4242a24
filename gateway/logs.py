"""Logging: one JSON object per line on stderr (python-json-logger), a millisecond UTC timestamp, and the
``request_id`` of the request being handled on every line logged while it is (a context variable).

The log schema is documented in docs/operations.md ("Log lines"); keep the two in step.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, Protocol

from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "tokengate.access"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class RequestInScope(Protocol):
    """What the log filter reads from the request being handled (the web layer's RequestState).
    Read at log time, so an id adopted from a trusted X-Request-Id mid-request is what lines carry."""

    request_id: str


# Set by the error middleware for the duration of one request. asyncio copies the context into every
# task a request starts, so lines from its provider and Redis calls carry its id too.
CURRENT_REQUEST: ContextVar[RequestInScope | None] = ContextVar("tokengate_request", default=None)


def utc_millis(created: float) -> str:
    """``2026-12-01T09:30:56.123Z``: RFC 3339, UTC, milliseconds (what Loki and Elasticsearch parse)."""
    whole = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((created - whole) * 1000):03d}Z"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = CURRENT_REQUEST.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current.request_id
        return True


class GatewayJsonFormatter(JsonFormatter):
    """``time``, ``level``, ``logger``, ``message`` first, then ``request_id`` and the record's extra
    fields (the access log's are passed as ``extra=``); an exception's text goes to ``traceback``."""

    def __init__(self) -> None:
        super().__init__(rename_fields={"exc_info": "traceback"}, json_ensure_ascii=False)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = utc_millis(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        super().add_fields(log_data, record, message_dict)


def configure_logging(level: str = "info") -> None:
    """Route every logger (the gateway's, aiohttp's, redis-py's, OpenTelemetry's) through one JSON
    handler on stderr at ``level`` (``server.log_level``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(GatewayJsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)
    # aiohttp's own access log would duplicate ours (and logs the query string).
    logging.getLogger("aiohttp.access").disabled = True


def set_level(level: str) -> None:
    """Apply ``server.log_level`` (also on a reload)."""
    logging.getLogger().setLevel(LEVELS.get(level, logging.INFO))
